"""The indoor unit's screens for an entrance panel: which bell rang, and "Door opened".

A door station with a dial code per flat and an indoor unit (sim boards, real mosquitto,
real aiortc) run as ``callbox run`` would. The bell travels in the door's invite
(``call.props.bell``); the door stops a ringing call with the signed ``cancel`` reason
``"door-opened"`` when its door opens, here by its exit button (docs/protocol.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import wait_for
from ui_site import (
    Pixels,
    active_call,
    crop,
    display_of,
    non_uniform,
    press,
    save,
    screen,
    text_box,
    ui_of,
)

from device.simulator import IntercomSite, Unit, start_intercom_site
from services.callapi import DOOR_OPENED, Bell, CallStatus
from services.intercom.door import DoorStation
from services.ui.model import bell_words, caller_words, ended_words

ENDED_SHOW_S = 3.0


DOOR_TOML = """
[[bells]]
name = "flat12"
label = "Flat 12 - Smith"
targets = ["flat"]
code = "12"
"""


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[IntercomSite]:
    """A door whose code 12 rings the indoor unit "flat" (800x480)."""
    units = [Unit("door", "door", extra_toml=DOOR_TOML), Unit("flat", "indoor")]
    site = await start_intercom_site(tmp_path, units)
    ui_of(site, "flat").ended_show_s = ENDED_SHOW_S
    yield site
    await site.close()


def test_ok__bell_words() -> None:
    assert bell_words(None) == ""
    assert bell_words(Bell("flat12", "Flat 12 - Smith")) == "Flat 12 - Smith"
    assert bell_words(Bell("flat12", "Flat 12 - Smith", "code")) == "Flat 12 - Smith (dialled)"
    assert bell_words(Bell("flat12")) == "flat12", "no label: the name"
    assert bell_words(Bell("doorbell", "Door")) == "", "the default bell: the door's name"
    assert caller_words("Door", "Flat 12 - Smith") == "Door · Flat 12 - Smith"
    assert caller_words("Door", "") == "Door"
    assert caller_words("Door", "Door") == "Door"


def test_ok__door_opened_is_not_a_missed_call() -> None:
    words = ended_words(
        CallStatus.CANCEL, incoming=True, answered=False, reason=None, peer="Door",
        end_reason=DOOR_OPENED,
    )  # fmt: skip
    assert words == ("Door opened", "Door: the door was opened while it rang")
    missed = ended_words(
        CallStatus.CANCEL, incoming=True, answered=False, reason=None, peer="Door",
        end_reason="caller",
    )  # fmt: skip
    assert missed[0] == "Missed call"


async def test_the_ringing_screen_names_the_bell_and_door_opened_is_no_missed_call(
    site: IntercomSite,
) -> None:
    ui, display = ui_of(site, "flat"), display_of(site, "flat")
    await wait_for(lambda: ui.status_text == "Ready", "the idle screen, connected")
    assert await station(site).dial("12")  # a visitor keys 12 then # on the keypad
    await screen(ui, "incoming")
    call = active_call(site, "flat")
    assert call.props.bell == Bell("flat12", "Flat 12 - Smith", "code")
    assert ui.status_text == "Door · Flat 12 - Smith (dialled) is calling"
    state = ui.state()
    assert state.bell == "Flat 12 - Smith (dialled)"
    await wait_for(lambda: ui.shown == ui.state(), "the ringing screen with the bell drawn")
    shot = display.last_frame()
    assert shot is not None
    bell_box = text_box(ui, state, within=ui.layout.side, bell="")
    assert non_uniform(crop(shot.copy(), bell_box)), "the bell's label is drawn"
    save(shot.copy(), "incoming-bell-800x480")

    door_call = active_call(site, "door")
    await press(site, "door", "door_release")  # someone leaves: the exit button opens the door
    await screen(ui, "ended")
    assert call.status == CallStatus.CANCEL and call.end_reason == DOOR_OPENED
    assert ui.status_text == "Door opened"
    detail = "Door · Flat 12 - Smith (dialled): the door was opened while it rang"
    assert ui.state().detail == detail
    shot = await wait_ended_drawn(site)
    save(shot, "ended-door-opened-800x480")
    await screen(ui, "idle")
    assert ui.missed == 0 and ui.status_text == "Ready", "not a missed call"
    endpoint = site["flat"].endpoint
    assert endpoint is not None
    records = await endpoint.call_log.recent(1)
    assert records and records[0].call_id == call.call_id and not records[0].missed
    assert records[0].bell == "Flat 12 - Smith"

    assert door_call.is_ended() and door_call.end_reason == DOOR_OPENED
    await press(site, "door", "doorbell")  # the next visitor gives up: a missed call
    await screen(ui, "incoming")
    assert active_call(site, "flat").props.bell == Bell("doorbell", "Door", "button")
    assert ui.status_text == "Door is calling", "the default bell: no label of its own"
    await active_call(site, "door").hangup()
    await screen(ui, "ended")
    assert ui.status_text == "Missed call"
    await wait_for(lambda: ui.missed == 1, "the missed call counted")


def station(site: IntercomSite) -> DoorStation:
    """The door's call service."""
    endpoint = site["door"].endpoint
    assert endpoint is not None and isinstance(endpoint.service, DoorStation)
    return endpoint.service


async def wait_ended_drawn(site: IntercomSite) -> Pixels:
    """The frame of the ended screen, once drawn, after checking its headline is drawn."""
    ui, display = ui_of(site, "flat"), display_of(site, "flat")
    await wait_for(lambda: ui.shown == ui.state(), "the ended screen drawn")
    frame = display.last_frame()
    assert frame is not None
    shot = frame.copy()
    assert non_uniform(crop(shot, text_box(ui, ui.state(), status_text="")))
    return shot
