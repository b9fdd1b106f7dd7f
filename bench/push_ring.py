"""Doorbell pin -> Web Push requests sent (the ring, then its picture), and the indoor unit's ring.

Run: ``.venv/bin/python bench/push_ring.py [--rings 10]``. Prints one JSON object.

One site (tests/harness/push_site.py): a door station with ``[push]`` and an indoor unit, device
apps from callbox.toml files on MockFactory pins, a phone (a Call API endpoint) subscribed
with the door through a signed ``push_subscribe``, all on a real mosquitto; the pushes go to
the local push service on loopback (tests/harness/push_endpoint.py), which checks the VAPID
token and decrypts every push. Per ring: pin low -> the request's headers written
(``PushResult.sent_at``), pin low -> the push service has decrypted it, pin low -> the second
push's headers written (the same ring with the visitor's picture from the door's camera,
encoded on a worker thread), pin low -> the indoor unit rings. The baseline, in the same run
and on the same site: the same rings with the phone unsubscribed (no push), for the indoor
unit's ring.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import tests_path  # noqa: F401 - puts tests/ on sys.path for the harness imports
from call_setup import summary
from harness.bench_cli import run_and_print
from harness.push_endpoint import PushEndpoint, Subscriber
from harness.push_site import FLAT, PHONE, PushSite, start_push_site, vapid_on_disk
from support import wait_for

from services.callapi import Call, CallStatus

FIGURES = (
    "pin_to_push_sent_ms",
    "pin_to_push_received_ms",
    "pin_to_snapshot_push_sent_ms",
    "pin_to_indoor_ringing_ms",
)


async def one_ring(site: PushSite, sub: Subscriber | None) -> dict[str, float]:
    """Press, wait for the indoor unit to ring (and the push, if any), hang up; the times."""
    rang: list[float] = []

    def seen(call: Call, status: CallStatus) -> None:
        if status == CallStatus.INCOMING and not rang:
            rang.append(time.monotonic())

    flat = site.site[FLAT].endpoint
    assert flat is not None
    flat.service.observers.append(seen)
    notifier = site.push.notifier
    rings_before, pictures_before = notifier.rings, notifier.snapshots
    pictures_sent = len(notifier.snapshot_results)
    try:
        pressed = await site.press()
        # the times come from the observer and the results; this only waits for them
        await wait_for(lambda: rang and notifier.rings > rings_before, "the ring")
        if sub is not None:
            await wait_for(lambda: notifier.snapshots > pictures_before, "the picture push")
    finally:
        flat.service.observers.remove(seen)
    figures = {"pin_to_indoor_ringing_ms": (rang[0] - pressed) * 1000}
    if sub is not None:
        result = site.push.notifier.results[-1]
        delivery = [d for d in site.endpoint.deliveries(sub) if "snapshot" not in d.payload][-1]
        assert result.sent_at is not None
        figures["pin_to_push_sent_ms"] = (result.sent_at - pressed) * 1000
        figures["pin_to_push_received_ms"] = (delivery.at - pressed) * 1000
        assert len(notifier.snapshot_results) > pictures_sent, "no picture push"
        picture = notifier.snapshot_results[-1]
        assert picture.sent_at is not None
        figures["pin_to_snapshot_push_sent_ms"] = (picture.sent_at - pressed) * 1000
    await site.hang_up()
    for call in (c.active_call for c in (site.flat_calls(), site.phones[PHONE].calls)):
        if call is not None:
            await call.ended.wait()
    await site.door.prewarm()  # idle again, offers ready: as before a press
    return figures


async def run(rings: int) -> dict[str, Any]:
    """``rings`` rings with the phone subscribed, then as many without; medians and ratio."""
    with tempfile.TemporaryDirectory(prefix="callbox-bench-") as name:
        directory = Path(name)
        key, key_path = await vapid_on_disk(directory)
        endpoint = PushEndpoint(key.application_server_key)
        await endpoint.start()
        site = await start_push_site(directory / "site", key_path, endpoint)
        logging.getLogger().setLevel(logging.ERROR)  # the door's reload set its own level
        try:
            flat = site.site[FLAT].endpoint
            assert flat is not None
            # a benchmark rings more often than a visitor: lift the invite limits
            flat.signaling.invite_limit.count = 10 * rings
            site.phones[PHONE].calls.signaling.invite_limit.count = 10 * rings
            sub = endpoint.new_subscriber()
            await site.phones[PHONE].subscribe(sub)
            await site.door.prewarm()
            pushed = [await one_ring(site, sub) for _ in range(rings)]
            await site.phones[PHONE].request("push_unsubscribe", {})
            plain = [await one_ring(site, None) for _ in range(rings)]
            notifier = site.push.notifier
            results = [*notifier.results, *notifier.snapshot_results]
            outcomes = sorted({r.outcome.value for r in results})
        finally:
            await site.close()
            await endpoint.close()
    ours = {f: summary([r[f] for r in pushed]) for f in FIGURES}
    base = summary([r["pin_to_indoor_ringing_ms"] for r in plain])
    with_push, without = ours["pin_to_indoor_ringing_ms"]["median"], base["median"]
    return {
        "rings": rings,
        "with_push": ours,
        "baseline_without_push": {"pin_to_indoor_ringing_ms": base},
        "ratio_indoor_ringing_with_to_without_push_median": (
            round(with_push / without, 2) if with_push and without else None
        ),
        "push_outcomes": outcomes,
    }


def main() -> None:
    """Parse arguments, run, print JSON."""
    run_and_print(__doc__, run, "rings", 10)


if __name__ == "__main__":
    main()
