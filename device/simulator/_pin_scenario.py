"""The doorbell call of ``callbox demo --scripted``, driven only through GPIO pins.

A door station and an indoor unit run as ``callbox run`` builds them (config files,
keys, simulated boards on gpiozero MockFactory pins, mosquitto). The script presses the
doorbell pin, lifts the handset (hook pin) to answer, presses door release, and puts the
handset back; each step is timed from the pin edge to the event that proves it
happened. Pin-driven times include the 50 ms minimum press that filters phantom rings.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.simulator._devicesite import IntercomSite
from device.simulator._scenario import Timeline, ms_between, run_steps
from hal.io_devices import SIM_PINS
from services.callapi import Call, CallStatus

PRESS_S = 0.1


@dataclass
class PinTimeline(Timeline):
    """The Call API timeline's figures, from the pins, plus the door release."""

    release_to_relay_ms: float | None = None
    relay_pulse_ms: float | None = None
    relay_pulse_configured_ms: float | None = None


class StatusTimes:
    """When each endpoint's service saw each status (its observer)."""

    def __init__(self) -> None:
        self.times: dict[tuple[str, CallStatus], float] = {}
        self.calls: dict[str, Call] = {}
        self.changed = asyncio.Event()
        self.handlers: dict[str, Callable[[Call, CallStatus], None]] = {}

    def observer(self, address: str) -> Callable[[Call, CallStatus], None]:
        def seen(call: Call, status: CallStatus) -> None:
            self.times.setdefault((address, status), time.monotonic())
            self.calls[address] = call
            self.changed.set()

        self.handlers[address] = seen
        return seen

    def watch(self, site: IntercomSite, *addresses: str) -> None:
        """Observe the call services of ``addresses``."""
        for address in addresses:
            endpoint = site[address].endpoint
            assert endpoint is not None
            endpoint.service.observers.append(self.observer(address))

    async def stop_watching(self, site: IntercomSite) -> None:
        """Remove the observers and hang up a call still on: ready for the next run."""
        for address, handler in self.handlers.items():
            endpoint = site[address].endpoint
            assert endpoint is not None
            endpoint.service.observers.remove(handler)
            call = endpoint.calls.active_call
            if call is not None:
                await call.hangup()

    async def wait(self, address: str, status: CallStatus) -> float:
        while (address, status) not in self.times:
            self.changed.clear()
            await self.changed.wait()
        return self.times[(address, status)]


async def _hold(pin: Any) -> float:
    """Drive a button pin active (low) for a person's press; returns the edge time."""
    pressed = time.monotonic()
    pin.drive_low()
    await asyncio.sleep(PRESS_S)  # the press itself
    pin.drive_high()
    return pressed


async def run_pin_doorbell_call(site: IntercomSite, door: str, indoor: str) -> PinTimeline:
    """Ring ``indoor`` from ``door``'s doorbell pin, answer, open, hang up; time each step."""
    timeline = PinTimeline()
    watch = StatusTimes()
    watch.watch(site, door, indoor)
    try:
        await run_steps(timeline, _steps(site, door, indoor, watch, timeline))
    finally:
        site.pin(indoor, SIM_PINS["hook"]).drive_high()  # the handset back on the hook
        await watch.stop_watching(site)
    return timeline


async def _steps(
    site: IntercomSite, door: str, indoor: str, watch: StatusTimes, timeline: PinTimeline
) -> None:
    timeline.step = "the indoor unit to ring"
    pressed = await _hold(site.pin(door, SIM_PINS["doorbell"]))
    rang = await watch.wait(indoor, CallStatus.INCOMING)
    timeline.press_to_ringing_ms = ms_between(pressed, rang)
    incoming = watch.calls[indoor]
    timeline.step = "the visitor preview"
    await incoming.remote_frame.wait()
    session = incoming.session
    assert session is not None and session.stats.first_video_at is not None
    timeline.press_to_preview_ms = ms_between(pressed, session.stats.first_video_at)

    timeline.step = "the answer (handset lifted)"
    hook = site.pin(indoor, SIM_PINS["hook"])
    lifted = time.monotonic()
    hook.drive_low()  # stays off the hook for the call
    await watch.wait(door, CallStatus.ANSWER)
    outgoing = watch.calls[door].session
    assert outgoing is not None
    timeline.step = "audio both ways"
    await asyncio.gather(outgoing.first_audio.wait(), session.first_audio.wait())
    assert outgoing.stats.first_audio_at and session.stats.first_audio_at
    timeline.answer_to_audio_ms = ms_between(
        lifted, max(outgoing.stats.first_audio_at, session.stats.first_audio_at)
    )

    await _open_door(site, door, indoor, timeline)

    timeline.step = "both sides idle (handset back on the hook)"
    hung_up = time.monotonic()
    hook.drive_high()
    ended = await asyncio.gather(
        watch.wait(door, CallStatus.COMPLETE), watch.wait(indoor, CallStatus.COMPLETE)
    )
    timeline.hangup_to_idle_ms = ms_between(hung_up, max(ended))


async def _open_door(site: IntercomSite, door: str, indoor: str, timeline: PinTimeline) -> None:
    endpoint = site[door].endpoint
    assert endpoint is not None
    relay = endpoint.board.io.relay
    opener = getattr(endpoint.service, "opener", None)
    assert opener is not None, f"{door} is not a door station"
    timeline.step = "the door relay"
    relay_pin = site.pin(door, SIM_PINS["relay"])
    history = len(relay_pin.states)
    recorded = asyncio.Event()
    chained = opener.on_record

    def seen(record: Any) -> None:
        if chained is not None:
            chained(record)
        recorded.set()

    opener.on_record = seen
    try:
        pressed = await _hold(site.pin(indoor, SIM_PINS["door_release"]))
        await recorded.wait()
    finally:
        opener.on_record = chained
    record = opener.records[-1]
    assert record.opened, f"the door refused: {record.reason}"
    timeline.release_to_relay_ms = ms_between(pressed, record.monotonic_at)
    timeline.step = "the end of the relay pulse"
    await opener.wait_idle()
    states = relay_pin.states[history - 1 :]
    highs = [b.timestamp for a, b in itertools.pairwise(states) if a.state and not b.state]
    assert len(highs) == 1, f"the relay pulsed {len(highs)} times"
    timeline.relay_pulse_ms = round(highs[0] * 1000, 1)
    timeline.relay_pulse_configured_ms = round(relay.pulse_s * 1000, 1)
