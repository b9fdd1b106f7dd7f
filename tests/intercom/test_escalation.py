"""Staged ring groups and the door opening, between real endpoints.

A door station (``DoorStation`` on the door's Call API and its MockFactory pins) rings two
indoor units, two phones (Python endpoints announcing role "web") and a caretaker's unit
through a real mosquitto, with real aiortc sessions. Stages use short delays; every
check waits on what a callee's app saw.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from harness.simsite import EndpointSpec, SimSite
from support import TIMEOUT, Answering, MakeSite, place_call, props_for, wait_for

from hal.io_devices import SIM_PINS
from services.callapi import DOOR_OPENED, Bell, Call, CallStatus, NotifyKind
from services.intercom.dnd import DndSchedule
from services.intercom.door import DoorStation
from services.intercom.settings import IntercomSettings, PanelSettings

UNITS = ("unit1", "unit2")
PHONES = ("phone1", "phone2")
CALLEES = (*UNITS, *PHONES, "caretaker")
NIGHTS = DndSchedule.from_config(True, ["22:00-07:00"], ["mon", "tue", "wed", "thu", "fri"])
MONDAY = datetime.datetime(2026, 12, 7)


@dataclass
class Panel:
    """The site, the door station on it, and each callee's app."""

    site: SimSite
    apps: dict[str, Answering]
    stations: list[DoorStation] = field(default_factory=list)

    async def door(
        self, panel: PanelSettings, targets: tuple[str, ...] = (*UNITS, *PHONES)
    ) -> DoorStation:
        """Start the door station with ``panel`` ringing ``targets`` on its default bell."""
        settings = IntercomSettings(
            role="door", targets=targets, doorbell_label="Front door", panel=panel
        )
        station = DoorStation(self.site["door"].calls, self.site["door"].board.io, settings)
        await station.start()
        self.stations.append(station)
        return station

    def callee(self, address: str) -> Call:
        """The call ``address``'s app took (it rang)."""
        return self.apps[address].calls[-1]

    def rang(self, address: str) -> bool:
        """True once ``address`` rang."""
        return bool(self.apps[address].calls)


MakePanel = Callable[[], Awaitable[Panel]]


@pytest.fixture
async def make_panel(make_site: MakeSite) -> AsyncIterator[MakePanel]:
    panels: list[Panel] = []

    async def make() -> Panel:
        site = await make_site(
            EndpointSpec("door", role="door", name="Front door"),
            *(EndpointSpec(u, role="indoor") for u in UNITS),
            *(EndpointSpec(p, role="web") for p in PHONES),
            EndpointSpec("caretaker", role="indoor"),
        )
        apps = {a: Answering(site[a].calls) for a in CALLEES}
        for address, app in apps.items():
            site[address].calls.set_listener(app)
        door = site["door"]
        for phone in PHONES:  # the door tells phones from units by their announced role
            await wait_for(
                lambda phone=phone: door.calls.profile_of(phone).role == "web",  # type: ignore[misc]
                f"{phone}'s profile",
            )
        await door.board.io.start()
        panel = Panel(site, apps)
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        for station in panel.stations:
            await station.close()


def spy_on_invites(site: SimSite) -> dict[str, dict[str, Any]]:
    """The body of every invite the door sends from now on, by callee (a spy at the seam)."""
    signaling = site["door"].signaling
    sent: dict[str, dict[str, Any]] = {}
    send = signaling.send

    async def recording(
        recipient: str, message_type: str, call_id: str, body: dict[str, Any]
    ) -> None:
        if message_type == "invite":
            sent[recipient] = body
        await send(recipient, message_type, call_id, body)

    signaling.send = recording  # type: ignore[method-assign]
    return sent


async def press_exit_button(site: SimSite) -> None:
    """Press the door's inside exit button (its door-release input) like a person."""
    pin = site["door"].board.io.pin_factory.pin(SIM_PINS["door_release"])
    pin.drive_low()
    await asyncio.sleep(0.1)  # holding the button is the input, not a wait
    pin.drive_high()


async def test_units_ring_first_then_the_phones_then_the_fallback(make_panel: MakePanel) -> None:
    panel = await make_panel()
    door = await panel.door(
        PanelSettings(phones_after_s=0.8, fallback=("caretaker",), fallback_after_s=1.6)
    )
    invites = spy_on_invites(panel.site)
    pressed = time.monotonic()
    call = await door.ring()
    assert call is not None
    assert call.props.bell == Bell("doorbell", "Front door", "button")
    for address in CALLEES:
        await wait_for(lambda a=address: panel.rang(a), f"{address} to ring")  # type: ignore[misc]
    rang_at = {a: panel.callee(a).created_at - pressed for a in CALLEES}
    assert max(rang_at[u] for u in UNITS) < min(rang_at[p] for p in PHONES)
    assert min(rang_at[p] for p in PHONES) >= 0.8, rang_at
    assert rang_at["caretaker"] >= 1.6, rang_at
    assert {panel.callee(a).call_id for a in CALLEES} == {call.call_id}, "one call, many legs"
    ring_ms = call.props.ring_timeout_s * 1000
    stage_at = {"unit1": 0.0, "unit2": 0.0, "phone1": 0.8, "phone2": 0.8, "caretaker": 1.6}
    for address in CALLEES:  # each invite: what is left of the ring timeout, from the press
        body = invites[address]  # sent at its stage's time, before the callee rang
        left = body["ring_timeout_ms"]
        assert ring_ms - rang_at[address] * 1000 <= left <= ring_ms - stage_at[address] * 1000
        assert body["bell"] == {"name": "doorbell", "label": "Front door", "via": "button"}
    assert set(call.legs) == set(CALLEES)
    assert door.panel.escalation is not None and door.panel.escalation.pending == []

    await panel.callee("caretaker").answer()  # the last stage answers: it wins
    await wait_for(call.is_answered, "the door to hear the answer")
    for address in CALLEES[:-1]:
        callee = panel.callee(address)
        await asyncio.wait_for(callee.ended.wait(), TIMEOUT)
        assert callee.status == CallStatus.CANCEL and callee.end_reason == "answered_elsewhere"
    assert door.panel.escalation is None
    await call.hangup()


async def test_a_target_in_its_dnd_hours_is_skipped_and_an_empty_stage_too(
    make_panel: MakePanel,
) -> None:
    panel = await make_panel()
    site = panel.site
    await site["unit2"].calls.close()  # offline: with unit1 in DND, the first stage is empty
    await site["door"].signaling.wait_presence("unit2", False, timeout=TIMEOUT)
    door = await panel.door(PanelSettings(phones_after_s=5.0, target_dnd={"unit1": NIGHTS}))
    doorbell = door.panel.bell("doorbell")
    door.panel.clock = lambda: MONDAY.replace(hour=12)
    assert [s.targets for s in door.panel.stages(doorbell)] == [UNITS, PHONES], "by day"
    door.panel.clock = lambda: MONDAY.replace(hour=23)
    assert [s.targets for s in door.panel.stages(doorbell)] == [("unit2",), PHONES], "at night"
    pressed = time.monotonic()
    call = await door.ring()
    assert call is not None
    for phone in PHONES:
        await wait_for(lambda p=phone: panel.rang(p), f"{phone} to ring")  # type: ignore[misc]
        assert panel.callee(phone).created_at - pressed < 5.0, "at once, not after 5 s"
    assert "unit1" not in call.legs and not panel.apps["unit1"].incoming, "DND: never invited"
    assert call.waits_for("unit2"), "the offline unit would still join if it came back"
    await call.hangup()


async def test_the_first_answer_stops_every_other_leg_and_the_pending_stages(
    make_panel: MakePanel,
) -> None:
    panel = await make_panel()
    door = await panel.door(
        PanelSettings(phones_after_s=3.0, fallback=("caretaker",), fallback_after_s=4.0)
    )
    call = await door.ring()
    assert call is not None
    for unit in UNITS:
        await wait_for(lambda u=unit: panel.rang(u), f"{unit} to ring")  # type: ignore[misc]
    escalation = door.panel.escalation
    assert escalation is not None and [s.name for s in escalation.pending] == [
        "phones",
        "fallback",
    ]
    await panel.callee("unit1").answer()
    await wait_for(call.is_answered, "the door to hear the answer")
    await asyncio.wait_for(panel.callee("unit2").ended.wait(), TIMEOUT)
    assert panel.callee("unit2").end_reason == "answered_elsewhere"
    assert door.panel.escalation is None and escalation.pending == [], "pending stages dropped"
    assert set(call.legs) == {"unit1"}
    assert not any(panel.apps[a].incoming for a in (*PHONES, "caretaker"))
    await call.hangup()


async def test_the_exit_button_stops_every_ring_with_reason_door_opened(
    make_panel: MakePanel,
) -> None:
    panel = await make_panel()
    site = panel.site
    door = await panel.door(
        PanelSettings(phones_after_s=0.3, fallback=("caretaker",), fallback_after_s=20.0)
    )
    call = await door.ring()
    assert call is not None
    ringing = (*UNITS, *PHONES)
    for address in ringing:
        await wait_for(lambda a=address: panel.rang(a), f"{address} to ring")  # type: ignore[misc]

    await press_exit_button(site)
    await asyncio.wait_for(call.ended.wait(), TIMEOUT)
    for address in ringing:
        await asyncio.wait_for(panel.callee(address).ended.wait(), TIMEOUT)
    (record,) = door.opener.records
    assert record.opened and record.requester == "exit button"
    assert call.status == CallStatus.CANCEL and call.end_reason == DOOR_OPENED
    for address in ringing:
        callee = panel.callee(address)
        assert callee.status == CallStatus.CANCEL, address
        assert callee.end_reason == DOOR_OPENED, address
        assert site[address].calls.missed_calls == 0, f"{address}: not a missed call"
        assert NotifyKind.MISSED not in [k for k, _ in panel.apps[address].notified]
        stopped = panel.apps[address].progress[-1].times[CallStatus.CANCEL]
        assert stopped - record.monotonic_at < 1.0, f"{address} stopped ringing late"
    assert door.panel.escalation is None and not panel.apps["caretaker"].incoming, "no fallback"


async def test_an_answered_call_goes_on_when_the_door_opens(make_panel: MakePanel) -> None:
    panel = await make_panel()
    door = await panel.door(PanelSettings(), targets=UNITS)
    call = await door.ring()
    assert call is not None
    await wait_for(lambda: panel.rang("unit1"), "unit1 to ring")
    await panel.callee("unit1").answer()
    await wait_for(call.is_answered, "the door to hear the answer")
    await asyncio.wait_for(panel.callee("unit2").ended.wait(), TIMEOUT)

    await press_exit_button(panel.site)
    await wait_for(lambda: len(door.opener.records) == 1, "the door to open")
    assert door.opener.records[0].opened
    assert await call.cancel_ring(DOOR_OPENED) is False, "an answered call is not cancelled"
    assert not call.is_ended() and not panel.callee("unit1").is_ended()
    await call.hangup()


async def test_the_bell_reaches_the_callee_and_a_malformed_one_is_ignored(
    make_panel: MakePanel, caplog: pytest.LogCaptureFixture
) -> None:
    panel = await make_panel()
    door_calls = panel.site["door"].calls
    props = props_for(door_calls, "unit1")
    props.bell = Bell("flat12", "Flat 12 - Smith", "code")
    call, _ = await place_call(door_calls, props)
    await wait_for(lambda: panel.rang("unit1"), "unit1 to ring")
    assert panel.callee("unit1").props.bell == Bell("flat12", "Flat 12 - Smith", "code")
    await call.hangup()
    await asyncio.wait_for(panel.callee("unit1").ended.wait(), TIMEOUT)

    props = props_for(door_calls, "unit2")
    props.bell = Bell("flat12", "Flat 12", "carrier pigeon")  # not a way to ring a bell
    with caplog.at_level(logging.WARNING, logger="services.callapi.calls"):
        call, _ = await place_call(door_calls, props)
        await wait_for(lambda: panel.rang("unit2"), "unit2 to ring despite its bell")
    assert panel.callee("unit2").props.bell is None
    assert "ignored its bell: bell.via must be one of button, code" in caplog.text
    await call.hangup()


async def test_a_callee_opening_from_its_ringing_screen_stops_every_ring(
    make_panel: MakePanel,
) -> None:
    panel = await make_panel()
    door = await panel.door(PanelSettings(), targets=(*UNITS, *PHONES))
    call = await door.ring()
    assert call is not None
    for address in (*UNITS, *PHONES):
        await wait_for(lambda a=address: panel.rang(a), f"{address} to ring")  # type: ignore[misc]
    phone = panel.callee("phone1")
    assert await phone.unlock() is True, "a contact with the unlock right opens while it rings"
    for address in (*UNITS, *PHONES):
        callee = panel.callee(address)
        await asyncio.wait_for(callee.ended.wait(), TIMEOUT)
        assert (callee.status, callee.end_reason) == (CallStatus.CANCEL, DOOR_OPENED), address
    assert call.status == CallStatus.CANCEL and call.end_reason == DOOR_OPENED
    (record,) = door.opener.records
    assert record.opened and record.requester == "phone1"


async def test_when_every_unit_declines_the_phones_ring_at_once(make_panel: MakePanel) -> None:
    panel = await make_panel()
    for unit in UNITS:
        panel.apps[unit].accept = False  # the units' filter refuses: they decline
    door = await panel.door(PanelSettings(phones_after_s=5.0))
    pressed = time.monotonic()
    call = await door.ring()
    assert call is not None
    for phone in PHONES:
        await wait_for(lambda p=phone: panel.rang(p), f"{phone} to ring")  # type: ignore[misc]
        assert panel.callee(phone).created_at - pressed < 5.0, "at once, not after 5 s"
    assert all(call.legs[u].outcome == CallStatus.NOTALLOWED for u in UNITS)
    assert not call.is_ended(), "the call rings on, at the phones"
    await call.hangup()
