"""A door station and an indoor unit driven only through their GPIO pins and sysfs files.

Everything between the pins is real: the device apps built from callbox.toml files,
gpiozero devices on MockFactory pins, mosquitto, aiortc calls, the SQLite call logs.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from intercom_site import IntercomSite, Unit, start_intercom_site, wait_for

from hal.audio import RecordingSpeaker
from hal.io_devices import SIM_PINS
from services.callapi import CallStatus
from services.intercom.calllog import read_call_log

MIN_PRESS_S = 0.05  # the default minimum press (50 ms)
PULSE_S = 0.3  # relay.pulse_ms in the test config


async def press(site: IntercomSite, address: str, role: str) -> None:
    """Press and release the button ``role`` of ``address`` for longer than the minimum."""
    pin = site.pin(address, SIM_PINS[role])
    pin.drive_low()
    await hold(MIN_PRESS_S * 2)
    pin.drive_high()


async def hold(seconds: float) -> None:
    """A person holding a button: the only sleep, and it is the input, not a wait."""
    await asyncio.sleep(seconds)


def transitions(pin: Any) -> int:
    """How often a mock pin changed level."""
    states = [s.state for s in pin.states]
    return sum(1 for a, b in itertools.pairwise(states) if a != b)


def high_periods(pin: Any) -> list[float]:
    """The lengths of every finished high period of a mock pin.

    gpiozero's mock pin records each change with the time since the previous change.
    """
    states = pin.states
    return [
        after.timestamp
        for before, after in itertools.pairwise(states)
        if before.state and not after.state
    ]


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[IntercomSite]:
    site = await start_intercom_site(tmp_path, [Unit("door", "door"), Unit("flat", "indoor")])
    yield site
    await site.close()


def active_call(site: IntercomSite, address: str) -> Any:
    endpoint = site[address].endpoint
    assert endpoint is not None
    return endpoint.calls.active_call


@pytest.mark.alone  # the relay pulse's length within 0.2 s: not on a loaded machine
async def test_doorbell_to_door_release_through_the_pins(site: IntercomSite) -> None:
    door_relay = site.pin("door", SIM_PINS["relay"])
    indoor_led = site.pin("flat", SIM_PINS["status_led"])
    flat = site["flat"].endpoint
    assert flat is not None
    ring_speaker = flat.board.speaker("speaker")
    assert isinstance(ring_speaker, RecordingSpeaker)

    await press(site, "door", "doorbell")

    await wait_for(lambda: active_call(site, "flat") is not None, "the indoor unit to ring")
    call = active_call(site, "flat")
    await wait_for(lambda: transitions(indoor_led) >= 4, "the status LED to blink")
    await ring_speaker.wait_for_samples(48000 // 2, timeout=10)
    assert abs(ring_speaker.dominant_frequency(300) - 880.0) < 20, "the ringtone plays"
    await wait_for(call.remote_frame.is_set, "the visitor preview before answering")
    assert not call.is_answered()

    site.pin("flat", SIM_PINS["hook"]).drive_low()  # lift the handset: answers
    await wait_for(lambda: call.status == CallStatus.CONNECTED, "the call to connect")
    door_call = active_call(site, "door")
    # the flat connects as it sends its accept; the door is answered once that arrives
    await wait_for(door_call.is_answered, "the door to hear the answer")
    assert indoor_led.state, "steady LED in a call"

    proximity = site.pin("flat", SIM_PINS["proximity"])
    proximity.drive_low()  # the handset at the face
    await wait_for(lambda: site.bl_power("flat") == "1", "the screen to blank")
    proximity.drive_high()
    await wait_for(lambda: site.bl_power("flat") == "0", "the screen to come back")

    assert high_periods(door_relay) == [] and not door_relay.state
    await press(site, "flat", "door_release")
    await wait_for(lambda: len(high_periods(door_relay)) == 1, "one relay pulse")
    (pulse,) = high_periods(door_relay)
    assert PULSE_S * 0.9 <= pulse <= PULSE_S + 0.2, f"pulse of {pulse:.3f} s"

    await press(site, "flat", "decline")
    await wait_for(lambda: door_call.is_ended() and call.is_ended(), "both to hang up")
    site.pin("flat", SIM_PINS["hook"]).drive_high()
    assert door_call.status == CallStatus.COMPLETE

    for address, direction in (("door", "out"), ("flat", "in")):
        log_file = Path(site[address].config.state_dir) / "calls.sqlite"
        await wait_for(partial(read_call_log, log_file), f"{address}'s call log entry")
        (record,) = await asyncio.to_thread(read_call_log, log_file)
        assert record.direction == direction and record.answered_at is not None
        assert record.status == "COMPLETE" and not record.missed
    door_log = Path(site["door"].config.state_dir) / "calls.sqlite"
    (door_record,) = await asyncio.to_thread(read_call_log, door_log)
    assert "door opened" in door_record.note
    assert len(high_periods(door_relay)) == 1 and not door_relay.state


async def test_a_phantom_press_rings_nobody(site: IntercomSite) -> None:
    pin = site.pin("door", SIM_PINS["doorbell"])
    pin.drive_low()
    pin.drive_high()  # microseconds: what a long cable picks up
    await press(site, "flat", "monitor")  # a real event after it, to have something to wait on
    await wait_for(lambda: active_call(site, "door") is not None, "the monitor call")
    assert active_call(site, "door").is_incoming(), "the only call is the monitor call"


async def test_a_second_press_while_ringing_starts_no_second_call(site: IntercomSite) -> None:
    await press(site, "door", "doorbell")
    await wait_for(lambda: active_call(site, "flat") is not None, "the indoor unit to ring")
    first = active_call(site, "door")
    await press(site, "door", "doorbell")
    door = site["door"].endpoint
    assert door is not None
    service: Any = door.service
    await wait_for(lambda: len(service.presses) == 2, "the second press to be handled")
    assert service.presses[1][1] is False
    assert active_call(site, "door") is first
