"""Ring groups, who may open the door, do-not-disturb and monitor calls, through the pins."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from intercom_site import IntercomSite, Unit, start_intercom_site, wait_for

from device.simulator import IntercomSite as Site
from hal.io_devices import SIM_PINS
from hal.leds import LedPattern
from services.callapi import CallStatus
from services.intercom.calllog import read_call_log
from services.signaling.errors import RejectReason

SiteMaker = Callable[..., Awaitable[IntercomSite]]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[SiteMaker]:
    sites: list[Site] = []

    async def start(*units: Unit) -> IntercomSite:
        site = await start_intercom_site(tmp_path / f"site{len(sites)}", list(units))
        sites.append(site)
        return site

    yield start
    for site in sites:
        await site.close()


async def press(site: IntercomSite, address: str, role: str) -> None:
    """Press and release a button for longer than the 50 ms minimum (a person's press)."""
    pin = site.pin(address, SIM_PINS[role])
    pin.drive_low()
    await asyncio.sleep(0.1)  # holding the button is the input, not a wait
    pin.drive_high()


def pulses(site: IntercomSite) -> int:
    """How many times the door relay went on."""
    states = [s.state for s in site.pin("door", SIM_PINS["relay"]).states]
    return sum(1 for before, after in itertools.pairwise(states) if after and not before)


def call_of(site: IntercomSite, address: str) -> Any:
    endpoint = site[address].endpoint
    assert endpoint is not None
    return endpoint.calls.active_call


def endpoint(site: IntercomSite, address: str) -> Any:
    endpoint = site[address].endpoint
    assert endpoint is not None
    return endpoint


async def answered_doorbell_call(site: IntercomSite, answering: str) -> tuple[Any, Any]:
    await press(site, "door", "doorbell")
    await wait_for(lambda: call_of(site, answering) is not None, f"{answering} to ring")
    callee = call_of(site, answering)
    await press(site, answering, "answer")
    door_call = call_of(site, "door")
    await wait_for(lambda: door_call.status == CallStatus.CONNECTED, "the call to connect")
    return door_call, callee


async def test_ring_group_first_answer_wins_the_other_stops_ringing(make: SiteMaker) -> None:
    site = await make(Unit("door", "door"), Unit("flat1", "indoor"), Unit("flat2", "indoor"))
    await press(site, "door", "doorbell")
    await wait_for(
        lambda: call_of(site, "flat1") is not None and call_of(site, "flat2") is not None,
        "both indoor units to ring",
    )
    loser = call_of(site, "flat1")
    await press(site, "flat2", "answer")
    await wait_for(loser.is_ended, "flat1 to stop ringing")
    assert loser.status == CallStatus.CANCEL
    await wait_for(
        lambda: endpoint(site, "flat1").board.io.led().pattern == LedPattern.IDLE, "flat1's LED"
    )
    assert call_of(site, "door").status == CallStatus.CONNECTED
    assert endpoint(site, "flat2").board.io.led().pattern == LedPattern.IN_CALL

    await press(site, "flat2", "decline")
    await wait_for(lambda: call_of(site, "door") is None, "the door to be idle")
    log = Path(site["flat1"].config.state_dir) / "calls.sqlite"
    await wait_for(lambda: bool(read_call_log(log)), "flat1's log entry")
    (record,) = await asyncio.to_thread(read_call_log, log)
    assert not record.missed, "answered elsewhere is not a missed call"


async def test_replayed_and_foreign_unlocks_leave_the_relay_alone(make: SiteMaker) -> None:
    site = await make(Unit("door", "door"), Unit("flat1", "indoor"), Unit("flat2", "indoor"))
    await press(site, "door", "doorbell")
    await wait_for(lambda: call_of(site, "flat2") is not None, "flat2 to ring")
    stray = call_of(site, "flat2")
    challenge, call_id = stray.unlock_challenge, stray.call_id
    await wait_for(lambda: call_of(site, "flat1") is not None, "flat1 to ring")
    callee = call_of(site, "flat1")
    await press(site, "flat1", "answer")
    await wait_for(stray.is_ended, "flat2 to stop ringing")

    sent: list[bytes] = []
    flat1 = endpoint(site, "flat1").signaling.transport
    original = flat1.publish_inbox

    async def recording(recipient: str, payload: bytes, timeout: float = 5.0) -> None:
        sent.append(payload)
        await original(recipient, payload, timeout)

    flat1.publish_inbox = recording
    assert await callee.unlock()
    await wait_for(lambda: pulses(site) == 1, "one relay pulse")

    rejected = endpoint(site, "door").signaling.rejected
    await flat1.publish_inbox("door", sent[-1])  # the recorded unlock, replayed as is
    await wait_for(lambda: rejected[RejectReason.REPLAY] == 1, "the replay to be refused")
    # flat2 lost the race: its copy of the challenge opens nothing
    await endpoint(site, "flat2").signaling.send(
        "door", "unlock", call_id, {"challenge": challenge}
    )
    callee.unlock_challenge = challenge  # and the used challenge, signed anew, neither
    assert await callee.unlock() is False
    assert pulses(site) == 1


async def test_a_ring_group_member_cannot_spoil_the_answering_residents_door_release(
    make: SiteMaker,
) -> None:
    site = await make(Unit("door", "door"), Unit("flat1", "indoor"), Unit("flat2", "indoor"))
    await press(site, "door", "doorbell")
    await wait_for(
        lambda: call_of(site, "flat1") is not None and call_of(site, "flat2") is not None,
        "both indoor units to ring",
    )
    callee, member = call_of(site, "flat1"), call_of(site, "flat2")
    assert callee.unlock_challenge != member.unlock_challenge, "every invite has its own"
    own = member.unlock_challenge
    flat2 = endpoint(site, "flat2").signaling
    # while both ring, flat2 tells the door a challenge of its choosing...
    await flat2.send(
        "door", "unlock_result", member.call_id, {"opened": False, "challenge": "flat2-chose-it"}
    )
    # ...and asks with a wrong one (its answer also says the door took the message above)
    member.unlock_challenge = "a-guess"
    assert await member.unlock() is False
    await press(site, "flat1", "answer")
    await wait_for(member.is_ended, "flat2 to stop ringing")

    assert await callee.unlock(), "the answering resident's first release works"
    await wait_for(lambda: pulses(site) == 1, "one relay pulse")
    # the member's door messages after the answer: its own challenge, another result
    await flat2.send("door", "unlock", member.call_id, {"challenge": own})
    await flat2.send("door", "unlock_result", member.call_id, {"opened": True, "challenge": "x"})
    door = endpoint(site, "door").calls
    await wait_for(lambda: door.dropped_messages().get("door_other_leg") == 3, "3 drops")
    assert pulses(site) == 1
    await endpoint(site, "door").service.opener.wait_idle()
    assert await callee.unlock(), "and the next one, with the challenge the door sent back"


async def test_door_release_is_rate_limited(make: SiteMaker) -> None:
    site = await make(
        Unit("door", "door", call_toml="unlock_per_minute = 1"), Unit("flat", "indoor")
    )
    _, callee = await answered_doorbell_call(site, "flat")
    assert await callee.unlock()
    await wait_for(lambda: not endpoint(site, "door").board.io.relay.is_active, "the pulse end")
    assert await callee.unlock() is False
    assert pulses(site) == 1
    opener = endpoint(site, "door").service.opener
    assert [r.reason for r in opener.records] == ["", "rate limited"]


async def test_do_not_disturb_refuses_and_logs_a_missed_call(make: SiteMaker) -> None:
    site = await make(
        Unit("door", "door"), Unit("flat", "indoor", extra_toml="[dnd]\nenabled = true\n")
    )
    await press(site, "door", "doorbell")
    door_log = Path(site["door"].config.state_dir) / "calls.sqlite"
    await wait_for(lambda: bool(read_call_log(door_log)), "the door's call to end")
    (door_record,) = await asyncio.to_thread(read_call_log, door_log)
    assert door_record.status == CallStatus.NOTALLOWED.name
    log = Path(site["flat"].config.state_dir) / "calls.sqlite"
    await wait_for(lambda: bool(read_call_log(log)), "the missed call in the log")
    (record,) = await asyncio.to_thread(read_call_log, log)
    assert record.missed and record.note == "do not disturb"
    led = site.pin("flat", SIM_PINS["status_led"])
    assert [s.state for s in led.states][-1], "the indoor LED never left idle (steady on)"
    assert endpoint(site, "flat").calls.missed_calls == 1


async def test_a_manual_do_not_disturb_refuses_until_switched_off(make: SiteMaker) -> None:
    site = await make(Unit("door", "door"), Unit("flat", "indoor"))
    flat = endpoint(site, "flat").service
    assert flat.manual_dnd is site["flat"].manual_dnd, "the app keeps it across rebuilds"
    flat.set_manual_dnd(True)  # Home Assistant's switch
    assert flat.dnd_active()
    await press(site, "door", "doorbell")
    await wait_for(lambda: endpoint(site, "flat").calls.missed_calls == 1, "a refused call")
    assert call_of(site, "flat") is None or call_of(site, "flat").is_ended()
    flat.set_manual_dnd(False)
    assert not flat.dnd_active(), "the schedule ([dnd] off) alone decides again"
    await wait_for(lambda: not endpoint(site, "door").calls.is_call_in_progress(), "idle door")
    await press(site, "door", "doorbell")
    await wait_for(
        lambda: call_of(site, "flat") is not None and not call_of(site, "flat").is_ended(),
        "the flat to ring again",
    )


async def test_monitor_button_shows_the_door_without_ringing_there(make: SiteMaker) -> None:
    site = await make(Unit("door", "door"), Unit("flat", "indoor"))
    await press(site, "flat", "monitor")
    await wait_for(lambda: call_of(site, "flat") is not None, "the monitor call")
    call = call_of(site, "flat")
    await wait_for(lambda: call.status == CallStatus.CONNECTED, "the door to answer by itself")
    await wait_for(call.remote_frame.is_set, "video from the door")
    door_speaker = endpoint(site, "door").board.speaker("speaker")
    assert door_speaker.rms() < 1e-3 or door_speaker.dominant_frequency(200) != 880.0
    door_rx = call_of(site, "door").session.stats
    assert door_rx.video_frames == 0, "monitoring sends no picture of the resident"
    assert door_rx.audio_samples == 0, "the resident's microphone starts muted"
    await press(site, "flat", "mute")  # talk to the visitor
    await wait_for(lambda: door_rx.audio_samples > 0, "the resident's voice at the door")
    await press(site, "flat", "door_release")
    await wait_for(lambda: pulses(site) == 1, "the relay to pulse")


async def test_exit_button_at_the_door_opens_it(make: SiteMaker) -> None:
    site = await make(Unit("door", "door"), Unit("flat", "indoor"))
    await press(site, "door", "door_release")
    await wait_for(lambda: pulses(site) == 1, "the relay to pulse")
    await wait_for(lambda: not site.pin("door", SIM_PINS["relay"]).state, "the relay to release")


async def test_an_untrusted_target_does_not_silence_the_others(make: SiteMaker) -> None:
    site = await make(Unit("door", "door"), Unit("flat", "indoor"))
    service = endpoint(site, "door").service
    service.apply_settings(dataclasses.replace(service.settings, targets=("ghost", "flat")))
    await press(site, "door", "doorbell")
    await wait_for(lambda: call_of(site, "flat") is not None, "the trusted unit to ring")
    assert list(call_of(site, "door").legs) == ["flat"]
