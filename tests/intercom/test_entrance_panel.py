"""A whole entrance panel, one path after another, from one callbox.toml.

A door station with a keypad, a Wiegand reader, `[access]`, a bell with a dial code and a
tamper switch, and an indoor unit, as device apps on simulated boards from real
configuration files, a real mosquitto and aiortc calls. The keypad and the reader are the
sim board's (`SimKeypad`, `SimCardReader`, what the HAL builds from `[keypad]` and
`[[card_readers]]` on a sim board); the tamper switch is a MockFactory pin. Each step goes
through every part between the key or the card and what the resident notices.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from intercom_site import TIMEOUT, IntercomSite, Unit, start_intercom_site, wait_for

from device.simulator import ENTRANCE_TOML
from hal.cards import SimCardReader
from hal.keypad import SimKeypad
from services.access import AccessStore, EntryKind
from services.access.enroll import Enrollment, add_entry
from services.callapi import DOOR_OPENED, Bell, Call, CallStatus
from services.intercom.door import DoorStation

PANEL = (
    """
[[bells]]
name = "smith"
label = "Flat 12 - Smith"
targets = ["flat12"]
code = "12"

[tamper]
pin = "GPIO7"
"""
    + ENTRANCE_TOML
)

CARD = ("wiegand26", "12:34567")


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[IntercomSite]:
    site = await start_intercom_site(
        tmp_path, [Unit("door", "door", extra_toml=PANEL), Unit("flat12", "indoor")]
    )
    yield site
    await site.close()


def door_station(site: IntercomSite) -> DoorStation:
    endpoint = site["door"].endpoint
    assert endpoint is not None and isinstance(endpoint.service, DoorStation)
    return endpoint.service


def keypad(site: IntercomSite) -> SimKeypad:
    endpoint = site["door"].endpoint
    assert endpoint is not None and isinstance(endpoint.board.io.keypad, SimKeypad)
    return endpoint.board.io.keypad


def reader(site: IntercomSite) -> SimCardReader:
    endpoint = site["door"].endpoint
    assert endpoint is not None
    card_reader = endpoint.board.io.card_readers["entrance"]
    assert isinstance(card_reader, SimCardReader)
    return card_reader


async def rings(site: IntercomSite, address: str) -> Call:
    """Wait until ``address`` rings; its call."""

    def ringing() -> Call | None:
        endpoint = site[address].endpoint
        assert endpoint is not None
        return endpoint.calls.active_call

    await wait_for(lambda: ringing() is not None, f"{address} to ring")
    call = ringing()
    assert call is not None
    return call


async def test_a_dialled_code_rings_the_flat_and_a_card_opens_the_door_and_stops_the_ring(
    site: IntercomSite, caplog: pytest.LogCaptureFixture
) -> None:
    door = door_station(site)
    state_dir = Path(site["door"].config.state_dir)
    card = Enrollment(EntryKind.CARD, "Smith", ":".join(CARD), flat="12")
    await asyncio.to_thread(add_entry, AccessStore(state_dir), card)

    keypad(site).press("12#")
    callee = await rings(site, "flat12")
    assert callee.props.bell == Bell("smith", "Flat 12 - Smith", "code"), "the flat sees who rang"

    reader(site).present("wiegand26", "99:1")  # not on the list: refused, nothing opens
    await wait_for(lambda: "99:1" in caplog.text, "the unknown card refused")
    assert not callee.is_ended(), "a refused card leaves the flat ringing"
    reader(site).present(*CARD)
    await asyncio.wait_for(callee.ended.wait(), TIMEOUT)
    assert (callee.status, callee.end_reason) == (CallStatus.CANCEL, DOOR_OPENED)
    opened = [record for record in door.opener.records if record.opened]
    assert [record.requester for record in opened] == ["card:Smith (flat 12)"], "one pulse"


async def test_a_wrong_code_opens_nothing_and_the_keypad_locks_after_three(
    site: IntercomSite, caplog: pytest.LogCaptureFixture
) -> None:
    door = door_station(site)
    state_dir = Path(site["door"].config.state_dir)
    code = Enrollment(EntryKind.PIN, "Smith", "2580", flat="12")
    await asyncio.to_thread(add_entry, AccessStore(state_dir), code)
    endpoint = site["door"].endpoint
    assert endpoint is not None and endpoint.entrance is not None

    keypad(site).press("2580#")  # the code without its "*": a dial code no bell has
    await wait_for(lambda: "no such bell" in caplog.text, "the unknown dial code")
    for wrong in ("1111", "2581", "9999"):
        keypad(site).press(f"*{wrong}#")
    await wait_for(
        lambda: site["door"].status()["access"]["keypad_locked_until"], "the keypad to lock"
    )
    keypad(site).press("*2580#")  # right, but locked: refused without a check
    await wait_for(
        lambda: len(site["door"].status()["access"]["last_attempts"]) >= 4, "the fourth attempt"
    )
    assert not any(record.opened for record in door.opener.records), "nothing opened"
    for typed in ("2580", "1111", "2581", "9999"):
        assert typed not in caplog.text, "no code typed at the keypad is ever logged"


async def test_tamper_at_the_panel_reaches_the_indoor_unit(site: IntercomSite) -> None:
    def alarms() -> set[str]:
        return {alarm["kind"] for alarm in site["flat12"].status()["alarms"]}

    tamper = site.pin("door", "GPIO7")  # a switch to ground, held closed by the housing
    tamper.drive_low()
    await wait_for(lambda: site["door"].status()["hardware"]["tampered"] is False, "closed")
    await wait_for(lambda: not alarms(), "no alarm while the housing is shut")
    tamper.drive_high()  # the housing is opened: the switch opens, the pull-up wins
    await wait_for(lambda: "tamper" in alarms(), "the tamper alarm at the indoor unit")
    tamper.drive_low()
    await wait_for(lambda: not alarms(), "the alarm cleared at the indoor unit")
