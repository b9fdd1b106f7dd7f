"""The impairment forwarder of bench/impaired_call.py does what its profile says.

Its decisions, per packet and seeded (no network); and the whole path: a network namespace
this test creates (``unshare -rn``) with two namespaces joined through the forwarder, probed
with UDP (tests/netns/impairment_check.py). Nothing leaves the namespaces. Tolerances are
generous: the figures are statistics of a thousand packets on a shared machine.
"""

from __future__ import annotations

import random

import pytest
from harness.impairment import Direction, Impairment
from private_netns import run_lab_script

# it measures the delays the forwarder adds: with the machine otherwise idle
pytestmark = pytest.mark.alone


def decisions(impairment: Impairment, count: int, gap_s: float = 0.01) -> list[float | None]:
    direction = Direction(impairment=impairment)
    rng = random.Random(7)
    return [direction.departure(200, i * gap_s, rng) for i in range(count)]


def test_random_loss_drops_its_share_and_delay_stays_within_the_jitter() -> None:
    due = decisions(Impairment(loss=0.05, delay_ms=50, jitter_ms=20), 20000)
    kept = [(d, i * 0.01) for i, d in enumerate(due) if d is not None]
    assert 0.04 < 1 - len(kept) / len(due) < 0.06
    delays = [d - sent for d, sent in kept]
    assert min(delays) >= 0.030 - 1e-9 and max(delays) <= 0.070 + 1e-9
    assert abs(sum(delays) / len(delays) - 0.050) < 0.002


def test_gilbert_elliott_loses_in_bursts_of_the_expected_length() -> None:
    due = decisions(Impairment(burst_p=0.01, burst_r=0.3), 50000)
    lost = [d is None for d in due]
    bursts, run = [], 0
    for gone in lost:
        if gone:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    assert 0.025 < sum(lost) / len(lost) < 0.04  # 0.01 / (0.01 + 0.3) = 3.2 %
    assert 2.5 < sum(bursts) / len(bursts) < 4.2  # 1 / 0.3 = 3.3 packets


def test_a_rate_limit_serialises_and_drops_what_overflows_its_queue() -> None:
    # 200-byte packets every 1 ms (1.6 Mbit/s) into 400 kbit/s with a 100 ms queue
    due = decisions(Impairment(rate_kbps=400, queue_ms=100), 2000, gap_s=0.001)
    kept = [d for d in due if d is not None]
    span = kept[-1] - kept[0]
    assert abs(len(kept) * 200 * 8 / span - 400_000) < 20_000
    assert all(d - i * 0.001 <= 0.1 + 0.004 for i, d in enumerate(due) if d is not None)


def test_the_path_between_two_namespaces_loses_delays_and_cuts_as_configured() -> None:
    result = run_lab_script("impairment_check.py")
    assert result["clean"]["loss"] == 0.0
    lossy = result["lossy"]["measured"]
    assert 0.06 <= lossy["loss"] <= 0.14, lossy
    assert lossy["delay_ms"]["min"] >= 19.0, lossy
    assert 25.0 <= lossy["delay_ms"]["mean"] <= 45.0, lossy
    assert lossy["reordered"] > 0  # ±10 ms jitter on packets 5 ms apart reorders some
    assert abs(result["outage"]["measured_lost_s"] - 1.0) <= 0.3, result["outage"]
    directions = result["stats"]["directions"]
    assert directions["a_to_b"]["stats"]["lost_outage"] > 0
