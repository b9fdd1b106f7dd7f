"""A UDP probe that measures what a :class:`harness.netlab.NetLab` path does to packets.

``python -m harness.udp_probe send HOST PORT --count N --interval-ms T --size B`` sends N
datagrams, each carrying its sequence number and its CLOCK_MONOTONIC send time;
``python -m harness.udp_probe receive PORT --count N`` prints ``ready`` once bound, then,
after the sender's last packet (or a quiet second), one JSON line: :func:`summarize` of what
arrived. All namespaces of the lab share the machine's monotonic clock, so the one-way delay
is exact. :func:`probe` runs both ends in the lab's sides and returns the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import socket
import statistics
import struct
import sys
import time
from typing import Any

from harness.impairment import Impairment
from harness.netlab import SIDES, NetLab

HEADER = struct.Struct("!IQ")
"""Sequence number and send time (ns of CLOCK_MONOTONIC)."""


def summarize(
    records: list[tuple[int, int, int, int]], count: int, interval_ms: float
) -> dict[str, Any]:
    """Loss, one-way delay, jitter, reordering and goodput of ``(seq, sent_ns, recv_ns, size)``."""
    received = len(records)
    result: dict[str, Any] = {"sent": count, "received": received}
    result["loss"] = round(1 - received / count, 4) if count else 0.0
    seqs = {seq for seq, *_ in records}
    bursts, run = [], 0
    for seq in range(count):
        if seq in seqs:
            if run:
                bursts.append(run)
            run = 0
        else:
            run += 1
    if run:
        bursts.append(run)
    result["loss_bursts"] = len(bursts)
    result["mean_burst_packets"] = round(statistics.fmean(bursts), 2) if bursts else 0.0
    if received < 2:
        return result
    delays = [(recv - sent) / 1e6 for _, sent, recv, _ in records]
    result["delay_ms"] = {
        "mean": round(statistics.fmean(delays), 2),
        "median": round(statistics.median(delays), 2),
        "min": round(min(delays), 2),
        "max": round(max(delays), 2),
        "stdev": round(statistics.stdev(delays), 2),
    }
    transit = [d for d in delays]
    rfc3550 = 0.0
    for previous, current in itertools.pairwise(transit):
        rfc3550 += (abs(current - previous) - rfc3550) / 16
    result["jitter_rfc3550_ms"] = round(rfc3550, 2)
    ordered = [seq for seq, *_ in records]
    result["reordered"] = sum(1 for a, b in itertools.pairwise(ordered) if b < a)
    span_s = (records[-1][2] - records[0][2]) / 1e9
    total_bits = sum(size for *_, size in records[1:]) * 8
    result["goodput_kbps"] = round(total_bits / span_s / 1000, 1) if span_s > 0 else None
    result["offered_kbps"] = round(records[0][3] * 8 / interval_ms, 1) if interval_ms else None
    return result


def send(host: str, port: int, count: int, interval_ms: float, size: int) -> None:
    """Send ``count`` probe datagrams of ``size`` bytes, one every ``interval_ms``."""
    padding = b"\0" * max(0, size - HEADER.size)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        for seq in range(count):
            due = start + seq * interval_ms / 1000
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sock.sendto(HEADER.pack(seq, time.monotonic_ns()) + padding, (host, port))


def receive(port: int, count: int, interval_ms: float, quiet_s: float) -> dict[str, Any]:
    """Receive probe datagrams until the last one or ``quiet_s`` without any; the summary."""
    records: list[tuple[int, int, int, int]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", port))
        sock.settimeout(30.0)  # the first packet: the sender starts after "ready"
        print("ready", flush=True)
        while True:
            try:
                data = sock.recv(65535)
            except TimeoutError:
                break
            now = time.monotonic_ns()
            seq, sent = HEADER.unpack_from(data)
            records.append((seq, sent, now, len(data)))
            sock.settimeout(quiet_s)
            if seq == count - 1:
                break
    return summarize(records, count, interval_ms)


async def probe(
    lab: NetLab,
    *,
    count: int = 1000,
    interval_ms: float = 5.0,
    size: int = 200,
    port: int = 47000,
    quiet_s: float = 1.0,
) -> dict[str, Any]:
    """Send ``count`` datagrams from side A to side B through ``lab``; B's summary."""
    common = ["--count", str(count), "--interval-ms", str(interval_ms)]
    receiver = await lab.spawn(
        "b",
        [
            sys.executable,
            "-m",
            "harness.udp_probe",
            "receive",
            str(port),
            *common,
            "--quiet-s",
            str(quiet_s),
        ],
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert receiver.stdout is not None
        ready = await asyncio.wait_for(receiver.stdout.readline(), 20)
        if ready.strip() != b"ready":
            raise RuntimeError(f"the probe receiver did not start: {ready!r}")
        sender = await lab.spawn(
            "a",
            [
                sys.executable,
                "-m",
                "harness.udp_probe",
                "send",
                SIDES["b"][0],
                str(port),
                *common,
                "--size",
                str(size),
            ],
        )
        if await sender.wait() != 0:
            raise RuntimeError("the probe sender failed")
        line = await asyncio.wait_for(receiver.stdout.readline(), 60)
        summary: dict[str, Any] = json.loads(line)
        return summary
    finally:
        if receiver.returncode is None:
            receiver.kill()
        await receiver.wait()


def expected(impairment: Impairment, offered_kbps: float) -> dict[str, float]:
    """What a probe should measure through ``impairment`` at ``offered_kbps``."""
    burst = 0.0
    if impairment.burst_p > 0:
        burst = (
            impairment.burst_loss * impairment.burst_p / (impairment.burst_p + impairment.burst_r)
        )
    loss = 1 - (1 - impairment.loss) * (1 - burst)
    result = {
        "loss": round(loss, 4),
        "delay_mean_ms": impairment.delay_ms,
        "delay_min_ms": max(0.0, impairment.delay_ms - impairment.jitter_ms),
        "delay_max_ms": impairment.delay_ms + impairment.jitter_ms,
    }
    if impairment.rate_kbps > 0:
        result["goodput_kbps"] = min(offered_kbps * (1 - loss), impairment.rate_kbps)
    return result


def compare(
    want: dict[str, float], got: dict[str, Any], *, loss_tol: float, delay_tol_ms: float
) -> dict[str, bool]:
    """Which measured figures are within tolerance of the expected ones.

    Loss within ``loss_tol`` (absolute); the mean delay within ``delay_tol_ms`` (the
    forwarder's own scheduling adds a little); no packet earlier than the smallest delay; the
    goodput within 15 % of a rate limit. A rate limit queues and drops what overflows its
    queue: neither its mean delay nor its loss is checked.
    """
    checks: dict[str, bool] = {}
    delay = got.get("delay_ms")
    if "goodput_kbps" in want:  # the queue drops what exceeds the rate: no loss check
        goodput = got.get("goodput_kbps") or 0.0
        checks["goodput"] = abs(goodput - want["goodput_kbps"]) <= 0.15 * want["goodput_kbps"]
    else:
        checks["loss"] = abs(got["loss"] - want["loss"]) <= loss_tol
        if delay is not None:
            checks["delay_mean"] = abs(delay["mean"] - want["delay_mean_ms"]) <= delay_tol_ms
    if delay is not None:
        checks["delay_min"] = delay["min"] >= want["delay_min_ms"] - 1.0
    return checks


async def check_profile(
    lab: NetLab,
    impairment: Impairment,
    *,
    count: int = 1000,
    interval_ms: float = 5.0,
    size: int = 200,
    loss_tol: float = 0.02,
    delay_tol_ms: float = 5.0,
) -> dict[str, Any]:
    """Impair A -> B with ``impairment``, probe it, and say how the figures compare."""
    await lab.set_profile(dataclasses.asdict(impairment), {})
    got = await probe(lab, count=count, interval_ms=interval_ms, size=size)
    want = expected(impairment, size * 8 / interval_ms)
    checks = compare(want, got, loss_tol=loss_tol, delay_tol_ms=delay_tol_ms)
    return {"expected": want, "measured": got, "checks": checks, "ok": all(checks.values())}


async def check_outage(lab: NetLab, seconds: float = 1.0) -> dict[str, Any]:
    """Probe for 5 x ``seconds`` with an outage of ``seconds`` inside: that much is lost.

    The outage starts 2.5 x ``seconds`` after the probe's processes are launched, well after
    the sender starts (under a second) and well before it stops.
    """
    await lab.set_profile({}, {})
    count, interval_ms = 1000, 5.0 * seconds
    running = asyncio.create_task(
        probe(lab, count=count, interval_ms=interval_ms, quiet_s=seconds + 2.0)
    )
    await asyncio.sleep(2.5 * seconds)
    await lab.outage(seconds)
    got = await running
    lost_s = got["loss"] * count * interval_ms / 1000
    ok = abs(lost_s - seconds) <= 0.15 * seconds
    return {"outage_s": seconds, "measured_lost_s": round(lost_s, 3), "measured": got, "ok": ok}


def main() -> None:
    """``send`` or ``receive`` (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("send", "receive"))
    parser.add_argument("target", nargs="+", help="HOST PORT to send, PORT to receive")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--quiet-s", type=float, default=1.0)
    args = parser.parse_args()
    if args.mode == "send":
        host, port = args.target
        send(host, int(port), args.count, args.interval_ms, args.size)
    else:
        summary = receive(int(args.target[0]), args.count, args.interval_ms, args.quiet_s)
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
