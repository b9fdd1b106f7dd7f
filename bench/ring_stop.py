"""Ring stop: how fast every ringing callee stops when the door opens, against an answer.

Run: ``.venv/bin/python bench/ring_stop.py [--rounds 10]``. Prints one JSON object.

A door station (``DoorStation`` on a simulated board, a relay pulse of 100 ms) rings four
callees at once over a real mosquitto on loopback; each callee is an endpoint in
a process of its own (tests/harness/ring_callee.py), as units and phones are separate
devices, and reports its times on CLOCK_MONOTONIC, which every process of the machine
shares. Each round measures both, in the same run:

- door opened: the exit button's pin is pressed while all four ring (1 s after the last
  began: a person's reaction); from the relay pulse
  (``ReleaseRecord.monotonic_at``, taken once the relay is energised) to each callee's
  ringtone having stopped, and to the last of them (``*_stop_ms``); and to each callee's
  call having ended, media closed too (``*_ended_ms``);
- answer (the baseline, the path that existed before): one callee answers while all four
  ring (as long after); from the moment it is told to answer to each of the three others
  having stopped ringing, and ended ("answered elsewhere": the accept travels to the door,
  which cancels the others).

All rounds run twice, one series after the other: ``video`` (the door's preview to all four
while they ring, as a real ring: each callee process decodes it) and ``audio_only`` (the same
without video: the signaling path alone, with less CPU taken from the shared machine).

The target (issue 19): every unit and phone stops within 200 ms of the relay pulse.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import tests_path  # noqa: F401 - puts tests/ on sys.path for the harness imports
from harness.bench_cli import run_and_print
from harness.peer_process import spawn_peer
from harness.simsite import EndpointSpec, SimSite, start_site

from hal.board import build_sim_io
from hal.io_devices import SIM_PINS, sim_io_spec
from services.callapi import Call
from services.intercom.door import DoorStation
from services.intercom.settings import IntercomSettings

CALLEES = ("unit1", "unit2", "phone1", "phone2")
TARGET_MS = 200.0
REACTION_S = 1.0
"""How long after every callee rings the door opens or one answers: a person's reaction, so
both act on calls that ring steadily (media connected, preview flowing), not in the burst of
four DTLS handshakes and first key frames right after the invites."""
TIMEOUT_S = 10.0


class Callee:
    """A callee process and what it reported of the current round."""

    def __init__(self, address: str, process: asyncio.subprocess.Process) -> None:
        self.address = address
        self.process = process
        self.ringing = asyncio.Event()
        self.ended = asyncio.Event()
        self.ended_at = 0.0
        self.stopped_at = 0.0
        self.outcome = ""
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, site: SimSite, address: str, directory: Path) -> Callee:
        """Start ``address`` in its own process (pinned both ways with the door); once online."""
        process = await spawn_peer(site, address, directory, "harness.ring_callee", stdin=True)
        return cls(address, process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            word, *rest = line.decode().split()
            if word == "ringing":
                self.ringing.set()
            elif word == "stopped" and self.ringing.is_set() and not self.stopped_at:
                self.stopped_at = float(rest[0])
            elif word == "ended":
                self.ended_at = float(rest[0])
                self.outcome = " ".join(rest[1:])
                self.ended.set()

    def reset(self) -> None:
        """Forget the last round."""
        self.ringing.clear()
        self.ended.clear()
        self.stopped_at = 0.0

    async def answer(self) -> None:
        """Tell the process to answer its ringing call."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"answer\n")
        await self.process.stdin.drain()

    async def close(self) -> None:
        """Close its standard input (it hangs up and leaves) and wait for it."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), TIMEOUT_S)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        await self._reader


async def ring_all(door: DoorStation, apps: dict[str, Callee]) -> Call:
    """Press the doorbell and wait until every callee rings."""
    for app in apps.values():
        app.reset()
    call = await door.ring()
    assert call is not None, "the door did not ring"
    await asyncio.wait_for(asyncio.gather(*(a.ringing.wait() for a in apps.values())), TIMEOUT_S)
    await asyncio.sleep(REACTION_S)  # the person's reaction: the input, not a wait
    return call


Stops = tuple[list[float], list[float]]
"""Per callee: ms to its ringtone stopping, ms to its call having ended."""


async def door_opened_round(door: DoorStation, apps: dict[str, Callee]) -> Stops:
    """One round: the exit button while all ring; ms from the relay pulse to each stop."""
    call = await ring_all(door, apps)
    before = len(door.opener.records)
    pin = door.io.pin_factory.pin(SIM_PINS["door_release"])
    pin.drive_low()
    await asyncio.wait_for(asyncio.gather(*(a.ended.wait() for a in apps.values())), TIMEOUT_S)
    pin.drive_high()
    record = door.opener.records[before]
    assert record.opened, record.reason
    await asyncio.wait_for(call.ended.wait(), TIMEOUT_S)
    await door.opener.wait_idle()
    assert all(a.outcome == "CANCEL door-opened" for a in apps.values()), [
        a.outcome for a in apps.values()
    ]
    at = record.monotonic_at
    return (
        [(a.stopped_at - at) * 1000 for a in apps.values()],
        [(a.ended_at - at) * 1000 for a in apps.values()],
    )


async def answer_round(door: DoorStation, apps: dict[str, Callee]) -> Stops:
    """One round: one callee answers while all ring; ms from its answer to each other's stop."""
    call = await ring_all(door, apps)
    answering, *others = apps.values()
    answered_at = time.monotonic()
    await answering.answer()
    await asyncio.wait_for(asyncio.gather(*(a.ended.wait() for a in others)), TIMEOUT_S)
    stops = (
        [(a.stopped_at - answered_at) * 1000 for a in others],
        [(a.ended_at - answered_at) * 1000 for a in others],
    )
    await call.hangup()
    await asyncio.wait_for(answering.ended.wait(), TIMEOUT_S)
    return stops


def summary(values: list[float]) -> dict[str, float | int]:
    """Median, 95th percentile and maximum of ``values`` in ms."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median": round(statistics.median(ordered), 1),
        "p95": round(p95, 1),
        "max": round(ordered[-1], 1),
        "n": len(values),
    }


async def measure(site: SimSite, apps: dict[str, Callee], rounds: int) -> dict[str, Any]:
    """Both measurements, alternating round by round: calls with video, then audio-only."""
    spec = sim_io_spec()
    assert spec.relay is not None
    io = build_sim_io(
        dataclasses.replace(spec, relay=dataclasses.replace(spec.relay, pulse_ms=100))
    )
    settings = IntercomSettings(role="door", targets=CALLEES, unlock_per_minute=60)
    door = DoorStation(site["door"].calls, io, settings)
    await io.start()
    await door.start()
    report: dict[str, Any] = {"rounds": rounds, "callees": len(CALLEES), "target_ms": TARGET_MS}
    try:
        for name, video in (("video", True), ("audio_only", False)):
            door.apply_settings(dataclasses.replace(settings, video=video))
            opened: list[Stops] = []
            answered: list[Stops] = []
            for _ in range(rounds):
                opened.append(await door_opened_round(door, apps))
                answered.append(await answer_round(door, apps))
            report[name] = figures(opened, answered)
    finally:
        await door.close()
        await io.close()
    return report


def figures(opened: list[Stops], answered: list[Stops]) -> dict[str, Any]:
    """The summaries of both paths, their ratio and the rounds within the target."""
    report: dict[str, Any] = {}
    for name, kept in (("door_opened_relay_to", opened), ("baseline_answer_to", answered)):
        for index, what in enumerate(("stop", "ended")):
            rounds_ms = [stops[index] for stops in kept]
            report[f"{name}_each_{what}_ms"] = summary([ms for each in rounds_ms for ms in each])
            report[f"{name}_last_{what}_ms"] = summary([max(each) for each in rounds_ms])
    last_open = [max(stops[0]) for stops in opened]
    last_answer = [max(stops[0]) for stops in answered]
    report["ratio_last_stop_door_opened_to_answer_median"] = round(
        statistics.median(last_open) / statistics.median(last_answer), 2
    )
    report["rounds_within_target"] = sum(ms <= TARGET_MS for ms in last_open)
    return report


async def run(rounds: int) -> dict[str, Any]:
    """Start the site (a door here, four callee processes), measure, stop."""
    with tempfile.TemporaryDirectory(prefix="callbox-bench-") as directory:
        site = await start_site(
            Path(directory),
            [EndpointSpec("door", role="door")],
            site="bench",
            extra_accounts=CALLEES,
            invites_per_10s=10 * rounds,  # rings back to back, far above a doorbell's rate
        )
        apps: dict[str, Callee] = {}
        try:
            for address in CALLEES:
                apps[address] = await Callee.start(site, address, Path(directory))
            return await measure(site, apps, rounds)
        finally:
            for app in apps.values():
                await app.close()
            await site.close()


def main() -> None:
    """Parse arguments, run, print JSON."""
    run_and_print(__doc__, run, "rounds", 10)


if __name__ == "__main__":
    main()
