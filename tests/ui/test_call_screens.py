"""Every screen of the default call UI, drawn from real calls between device apps.

A door station and an indoor unit (sim boards, real mosquitto, real aiortc) run as
``callbox run`` would; the test presses GPIO pins and touches the indoor unit's
in-memory display, and looks at what the UI drew there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import wait_for
from ui_site import (
    active_call,
    changed_fraction,
    crop,
    display_of,
    fresh_frame,
    non_uniform,
    press,
    save,
    screen,
    shown_frame,
    text_box,
    ui_of,
)

from device.config import load_config
from device.daemon import DeviceApp
from device.simulator import IntercomSite, Unit, start_intercom_site
from hal.io_devices import SIM_PINS
from services.callapi import CallStatus
from services.media.session import MediaSession
from services.ui import Rect
from services.ui.layout import fit

SIZES = {"800x480": "", "1280x720": "[display]\nwidth = 1280\nheight = 720\n"}
ENDED_SHOW_S = 3.0


async def start(directory: Path, *units: Unit) -> IntercomSite:
    site = await start_intercom_site(directory, list(units))
    for address, app in site.apps.items():
        if app.endpoint is not None and app.endpoint.ui is not None:
            ui_of(site, address).ended_show_s = ENDED_SHOW_S
    return site


@pytest.fixture(params=list(SIZES))
async def site(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[IntercomSite]:
    """A door and an indoor unit "flat" whose display is 800x480 or 1280x720."""
    size = SIZES[request.param]
    site = await start(tmp_path, Unit("door", "door"), Unit("flat", "indoor", extra_toml=size))
    yield site
    await site.close()


@pytest.fixture
async def small_site(tmp_path: Path) -> AsyncIterator[IntercomSite]:
    """A door and an indoor unit "flat" at 800x480."""
    site = await start(tmp_path, Unit("door", "door"), Unit("flat", "indoor"))
    yield site
    await site.close()


def size_name(site: IntercomSite) -> str:
    width, height = display_of(site, "flat").size
    return f"{width}x{height}"


def video_area(site: IntercomSite) -> Rect:
    """Where the remote video shows in a call, between the chips and the PiP."""
    ui = ui_of(site, "flat")
    lay = ui.layout
    video = fit(640, 480, lay.full)
    top = lay.top_bar.h + lay.px(50)
    return Rect(video.x, top, lay.pip.x - video.x - lay.margin, lay.pip.y - top)


async def test_incoming_answer_by_touch_in_call_door_release_and_ended(
    site: IntercomSite,
) -> None:
    ui, display = ui_of(site, "flat"), display_of(site, "flat")
    size = size_name(site)
    assert display.size == {"800x480": (800, 480), "1280x720": (1280, 720)}[size]
    await screen(ui, "idle")

    await press(site, "door", "doorbell")
    await screen(ui, "incoming")
    assert ui.status_text == "Door is calling"
    call = active_call(site, "flat")
    await wait_for(call.remote_frame.is_set, "the visitor preview")
    first = await fresh_frame(display, "a preview frame")
    later = await fresh_frame(display, "later preview frames", frames=10)
    preview = ui.layout.preview
    assert changed_fraction(crop(first, preview), crop(later, preview)) > 0.001, "live preview"
    state = ui.state()
    name_box = text_box(ui, state, within=ui.layout.side, peer_name="")
    assert non_uniform(crop(later, name_box)), "the caller's name is drawn"
    buttons = ui.buttons()
    assert list(buttons) == ["decline", "answer"]
    for rect in buttons.values():
        assert non_uniform(crop(later, rect)), "the buttons say what they do"
    save(later, f"incoming-{size}")

    display.touch(*buttons["answer"].center)  # the finger: the same answer as the button
    await screen(ui, "in_call")
    door_call = active_call(site, "door")
    await wait_for(lambda: door_call.status == CallStatus.CONNECTED, "the door to connect")
    assert call.is_answered() and not call.get_mute_status(audio=True, video=False)
    area = video_area(site)
    first = await fresh_frame(display, "an in-call frame")
    later = await fresh_frame(display, "later in-call frames", frames=10)
    assert changed_fraction(crop(first, area), crop(later, area)) > 0.001, "remote video moves"
    assert non_uniform(crop(later, ui.layout.pip)), "our own camera picture-in-picture"
    assert ui.state().pip
    timer_box = text_box(ui, ui.state(), timer="")
    assert non_uniform(crop(later, timer_box)), "the call timer is drawn"
    assert list(ui.buttons()) == ["mute", "door_release", "hangup"]

    display.touch(*ui.buttons()["mute"].center)
    await wait_for(lambda: call.get_mute_status(audio=True, video=False), "the mute")
    await wait_for(lambda: door_call.get_mute_status(True, False, remote=True), "the door told")
    relay = site.pin("door", SIM_PINS["relay"])
    display.touch(*ui.buttons()["door_release"].center)
    await wait_for(lambda: ui.state().door_text == "Door opened", "the door's answer on screen")
    assert any(s.state for s in relay.states), "the relay pulsed"
    shot = await fresh_frame(display, "the in-call screen with the door opened", frames=2)
    assert ui.state().muted
    save(shot, f"in-call-{size}")

    await press(site, "flat", "decline")  # the GPIO button still hangs up
    await screen(ui, "ended")
    assert ui.status_text == "Call ended"
    assert ui.state().detail == "You hung up"
    shot = await shown_frame(ui, display, "ended")
    assert non_uniform(crop(shot, text_box(ui, ui.state(), status_text="")))
    save(shot, f"ended-{size}")
    await screen(ui, "idle")


async def test_idle_screen_counts_missed_calls_and_the_badge_clears(
    small_site: IntercomSite,
) -> None:
    site = small_site
    ui, display = ui_of(site, "flat"), display_of(site, "flat")
    await wait_for(lambda: ui.status_text == "Ready", "the idle screen, connected")
    idle = await shown_frame(ui, display, "idle")
    state = ui.state()
    assert non_uniform(crop(idle, text_box(ui, state, name=""))), "the unit's name"
    assert non_uniform(crop(idle, text_box(ui, state, clock=""))), "the clock"
    assert non_uniform(crop(idle, text_box(ui, state, online=False))), "the connection state"
    assert "clear_missed" not in ui.buttons()

    for missed in (1, 2):
        await press(site, "door", "doorbell")
        await screen(ui, "incoming")
        await active_call(site, "door").hangup()  # the visitor gives up
        await screen(ui, "ended")
        assert ui.status_text == "Missed call"
        await screen(ui, "idle")
        assert ui.missed == missed
    assert ui.status_text == "Ready, 2 missed calls"
    await wait_for(lambda: ui.shown is not None and ui.shown.missed == 2, "the badge drawn")
    shot = await shown_frame(ui, display, "idle")
    badge = ui.buttons()["clear_missed"]
    red = crop(shot, badge).reshape(-1, 3)
    assert ((red[:, 0] > 150) & (red[:, 1] < 90)).mean() > 0.3, "a red badge"
    assert non_uniform(crop(shot, text_box(ui, ui.state(), missed=1))), "the count changes"
    save(shot, "idle-missed-800x480")

    display.touch(*badge.center)
    await wait_for(lambda: ui.missed == 0, "the badge to clear")
    assert ui.status_text == "Ready"


async def test_proximity_blanks_the_screen_and_stops_drawing(small_site: IntercomSite) -> None:
    site = small_site
    ui, display = ui_of(site, "flat"), display_of(site, "flat")
    await press(site, "door", "doorbell")
    await screen(ui, "incoming")
    site.pin("flat", SIM_PINS["hook"]).drive_low()  # lift the handset: answers
    await screen(ui, "in_call")
    call = active_call(site, "flat")
    await fresh_frame(display, "in-call frames", frames=5)

    site.pin("flat", SIM_PINS["proximity"]).drive_low()  # the handset at the face
    await screen(ui, "blank")
    await wait_for(lambda: site.bl_power("flat") == "1", "the backlight off")
    assert display.blank and display.last_frame() is None
    shown = display.frames_shown
    received: list[object] = []
    stop = call.watch_remote_video(received.append)
    try:
        await wait_for(lambda: len(received) >= 15, "the door's video to keep coming")
    finally:
        stop()
    assert display.frames_shown == shown, "nothing is drawn while the screen is blank"

    site.pin("flat", SIM_PINS["proximity"]).drive_high()
    await screen(ui, "in_call")
    await wait_for(lambda: site.bl_power("flat") == "0", "the backlight on")
    await fresh_frame(display, "drawing again", frames=5)
    assert not display.blank
    site.pin("flat", SIM_PINS["hook"]).drive_high()  # hang up
    await screen(ui, "ended")


async def test_call_ui_shows_the_outgoing_call_and_the_callee_declines_by_touch(
    tmp_path: Path,
) -> None:
    site = await start(
        tmp_path, Unit("door", "door"), Unit("flat", "indoor"), Unit("flat2", "indoor")
    )
    try:
        caller, callee = ui_of(site, "flat"), ui_of(site, "flat2")
        endpoint = site["flat"].endpoint
        assert endpoint is not None
        call = await endpoint.calls.call_ui("flat2", video=True)
        assert call is not None and caller.call is call
        await screen(callee, "incoming")
        await wait_for(lambda: caller.status_text == "Ringing…", "ringing at the caller")
        assert caller.screen == "outgoing"
        assert caller.state().detail == "ringback tone playing"
        await wait_for(lambda: caller.shown == caller.state(), "the ringing screen drawn")
        shot = await shown_frame(caller, display_of(site, "flat"), "outgoing")
        assert non_uniform(crop(shot, text_box(caller, caller.state(), status_text="")))
        assert list(caller.buttons()) == ["hangup"]
        save(shot, "outgoing-800x480")

        display_of(site, "flat2").touch(*callee.buttons()["decline"].center)
        await screen(caller, "ended")
        assert caller.status_text == "Line busy"
        await screen(callee, "ended")
        assert callee.status_text == "Call declined"
    finally:
        await site.close()


def cut_network(session: MediaSession) -> None:
    """Drop every datagram this session's ICE sockets send: the path is gone, signaling is not."""
    for transceiver in session._pc.getTransceivers():
        connection = transceiver.sender.transport.transport.iceGatherer._connection
        for protocol in connection._protocols:
            protocol.transport.sendto = lambda *args, **kwargs: None  # type: ignore[method-assign]


async def test_a_lost_link_shows_reconnecting_then_the_call_again(
    small_site: IntercomSite,
) -> None:
    site = small_site
    ui, display = ui_of(site, "flat"), display_of(site, "flat")
    await press(site, "door", "doorbell")
    await screen(ui, "incoming")
    await press(site, "flat", "answer")
    await screen(ui, "in_call")
    door_call, call = active_call(site, "door"), active_call(site, "flat")
    await wait_for(lambda: door_call.status == CallStatus.CONNECTED, "the door to connect")
    assert door_call.session is not None and call.session is not None
    # a loaded machine may have replaced a session with a fresh path already: cut each one
    # the calls use until the screen says reconnecting; the path tried after that works
    cut: list[MediaSession] = []

    def cut_until_reconnecting() -> bool:
        for session in (door_call.session, call.session):
            if session is not None and not any(session is done for done in cut):
                cut_network(session)
                cut.append(session)
        return ui.screen == "reconnecting"

    await wait_for(cut_until_reconnecting, "the reconnecting screen")
    assert ui.status_text == "Reconnecting…"
    shot = await shown_frame(ui, display, "reconnecting")
    assert non_uniform(crop(shot, text_box(ui, ui.state(), timer="")))
    save(shot, "reconnecting-800x480")
    await screen(ui, "in_call")
    await fresh_frame(display, "video again", frames=5)
    await press(site, "flat", "decline")
    await screen(ui, "ended")


async def restart_with_new_key(site: IntercomSite, address: str) -> None:
    """Restart ``address`` after its key file is lost: it comes back with a new identity."""
    await site[address].close()
    await asyncio.to_thread(shutil.rmtree, Path(site[address].config.state_dir) / "keys")
    app = DeviceApp(await asyncio.to_thread(load_config, site.config_paths[address]))
    await app.start()
    site.apps[address] = app


async def test_a_changed_key_is_shown_until_a_person_confirms_it(
    small_site: IntercomSite,
) -> None:
    site = small_site
    ui, display = ui_of(site, "flat"), display_of(site, "flat")
    flat = site["flat"].endpoint
    assert flat is not None
    pinned = flat.signaling.contacts.get("door")
    assert pinned is not None
    await restart_with_new_key(site, "door")
    contacts = flat.signaling.contacts
    await wait_for(
        lambda: contacts.advertised.get("door") not in (None, pinned.keys), "the new profile"
    )

    await press(site, "door", "doorbell")
    await screen(ui, "key_changed")
    assert ui.status_text == "Security key of Door changed: confirm it"
    assert flat.calls.active_call is None, "the call with the unconfirmed key is refused"
    shot = await shown_frame(ui, display, "key_changed")
    assert non_uniform(crop(shot, text_box(ui, ui.state(), peer_name="")))
    assert list(ui.buttons()) == ["confirm_key"]
    save(shot, "key-changed-800x480")
    await active_call(site, "door").hangup()  # the visitor gives up
    assert ui.screen == "key_changed", "the screen stays until confirmed"

    display.touch(*ui.buttons()["confirm_key"].center)
    await screen(ui, "idle")
    confirmed = contacts.get("door")
    assert confirmed is not None and confirmed.keys == contacts.advertised["door"]
    await press(site, "door", "doorbell")
    await screen(ui, "incoming")


def test_screens_have_their_buttons_in_the_layout_at_both_sizes() -> None:
    from services.ui import Layout, UiState

    for width, height in ((800, 480), (1280, 720)):
        layout = Layout(width, height)
        state = UiState(screen="in_call", status_text="", can_open_door=True)
        buttons = layout.buttons(state)
        assert list(buttons) == ["mute", "door_release", "hangup"]
        for name, rect in buttons.items():
            assert layout.button_at(state, *rect.center) == name
            assert rect.y + rect.h <= height and rect.x + rect.w <= width
        assert layout.button_at(state, width // 2, height // 3) is None
        no_door = dataclasses.replace(state, can_open_door=False)
        assert list(layout.buttons(no_door)) == ["mute", "hangup"]
