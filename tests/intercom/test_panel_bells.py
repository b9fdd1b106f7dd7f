"""An entrance panel's bells: buttons on MockFactory pins and dial codes, from callbox.toml.

Device apps built from real configuration files (``[[bells]]`` with their own pins), a
real mosquitto, aiortc calls and the SQLite call logs of both sides.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from intercom_site import TIMEOUT, IntercomSite, Unit, start_intercom_site, wait_for

from hal.io_devices import SIM_PINS
from services.callapi import DOOR_OPENED, Bell, Call
from services.intercom.calllog import CallRecord, read_call_log
from services.intercom.door import DoorStation

BELLS = """
[[bells]]
name = "jones"
label = "Flat 1 - Jones"
targets = ["flat1"]
code = "1"
pin = "GPIO20"

[[bells]]
name = "smith"
label = "Flat 12 - Smith"
targets = ["flat12"]
code = "12"
pin = "GPIO21"
"""


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[IntercomSite]:
    site = await start_intercom_site(
        tmp_path,
        [Unit("door", "door", extra_toml=BELLS), Unit("flat1", "indoor"), Unit("flat12", "indoor")],
    )
    yield site
    await site.close()


def active_call(site: IntercomSite, address: str) -> Call | None:
    endpoint = site[address].endpoint
    assert endpoint is not None
    return endpoint.calls.active_call


def door_station(site: IntercomSite) -> DoorStation:
    endpoint = site["door"].endpoint
    assert endpoint is not None and isinstance(endpoint.service, DoorStation)
    return endpoint.service


async def press_pin(site: IntercomSite, pin_name: str) -> None:
    """Press the door's button on ``pin_name`` for longer than the 50 ms minimum."""
    pin = site.pin("door", pin_name)
    pin.drive_low()
    await asyncio.sleep(0.1)  # holding the button is the input, not a wait
    pin.drive_high()


async def rings(site: IntercomSite, address: str) -> Call:
    """Wait until ``address`` rings; its call."""
    await wait_for(lambda: active_call(site, address) is not None, f"{address} to ring")
    call = active_call(site, address)
    assert call is not None
    return call


async def hang_up_at_the_door(site: IntercomSite, callee: Call) -> None:
    door_call = active_call(site, "door")
    assert door_call is not None
    await door_call.hangup()
    await asyncio.wait_for(callee.ended.wait(), TIMEOUT)


async def last_logged(site: IntercomSite, address: str, count: int) -> CallRecord:
    """The newest record of ``address``'s call log once it has ``count`` of them."""
    log_file = Path(site[address].config.state_dir) / "calls.sqlite"

    def logged() -> bool:
        return len(read_call_log(log_file)) >= count

    await wait_for(logged, f"{address}'s call log entry {count}")
    return (await asyncio.to_thread(read_call_log, log_file))[0]


async def test_two_bell_buttons_ring_their_own_flats_and_the_logs_keep_the_bell(
    site: IntercomSite,
) -> None:
    for number, (pin, flat, bell) in enumerate(
        (
            ("GPIO20", "flat1", Bell("jones", "Flat 1 - Jones", "button")),
            ("GPIO21", "flat12", Bell("smith", "Flat 12 - Smith", "button")),
        ),
        start=1,
    ):
        await press_pin(site, pin)
        callee = await rings(site, flat)
        door_call = active_call(site, "door")
        assert door_call is not None and set(door_call.legs) == {flat}, "only its flat rings"
        assert callee.props.bell == bell
        await hang_up_at_the_door(site, callee)
        assert (await last_logged(site, "door", number)).bell == bell.label
        assert (await last_logged(site, flat, 1)).bell == bell.label


async def test_dial_codes_a_bell_a_directory_flat_and_an_unknown_code(
    site: IntercomSite,
) -> None:
    door = door_station(site)
    assert await door.dial("12")
    callee = await rings(site, "flat12")
    assert callee.props.bell == Bell("smith", "Flat 12 - Smith", "code")
    await hang_up_at_the_door(site, callee)

    assert not await door.dial("99"), "an unknown code rings nobody"
    assert not await door.dial("1#"), "not a code"
    assert active_call(site, "door") is None

    # what the site directory says of flat1's unit: it belongs to flat 7
    contacts = door.calls.signaling.contacts
    contact = contacts.get("flat1")
    assert contact is not None
    contacts.add(dataclasses.replace(contact, flat="7"))
    assert await door.dial("7")
    callee = await rings(site, "flat1")
    assert callee.props.bell == Bell("flat:7", "Flat 7", "code")
    await hang_up_at_the_door(site, callee)

    panel = dataclasses.replace(door.settings.panel, dial_directory=False)
    door.apply_settings(dataclasses.replace(door.settings, panel=panel))
    assert not await door.dial("7"), "dial_directory = false: only the bells' codes"


async def test_a_bell_while_a_call_rings_is_ignored(site: IntercomSite) -> None:
    await press_pin(site, "GPIO20")
    callee = await rings(site, "flat1")
    door = door_station(site)
    await press_pin(site, "GPIO21")
    await wait_for(lambda: len(door.presses) == 2, "the second bell to be handled")
    assert door.presses[1][1] is False
    assert active_call(site, "flat12") is None
    call: Any = active_call(site, "door")
    assert set(call.legs) == {"flat1"}
    await hang_up_at_the_door(site, callee)


async def test_the_exit_button_stops_the_ring_and_both_logs_say_so(site: IntercomSite) -> None:
    await press_pin(site, "GPIO21")
    callee = await rings(site, "flat12")
    await press_pin(site, SIM_PINS["door_release"])
    await asyncio.wait_for(callee.ended.wait(), TIMEOUT)
    assert callee.end_reason == DOOR_OPENED
    door_record = await last_logged(site, "door", 1)
    assert door_record.status == "CANCEL" and door_record.bell == "Flat 12 - Smith"
    assert "door opened by exit button" in door_record.note
    flat_record = await last_logged(site, "flat12", 1)
    assert flat_record.status == "CANCEL" and not flat_record.missed, "not a missed call"
    assert flat_record.bell == "Flat 12 - Smith"
