"""Door left open, forced open and tamper: from the door's pins to the indoor unit's screen.

Real DeviceApps built from callbox.toml files (``device.simulator``) on a real mosquitto;
the door contact and the tamper switch are MockFactory pins driven like the wiring would
(``pull_up = false`` here: the sim pin idles low, a closed door; high is open / tampered).
``left_open_s`` is short and every check waits for its event, never for a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from intercom_site import IntercomSite, Unit, start_intercom_site, wait_for

from device.config import load_config
from device.daemon import DeviceApp
from device.simulator import IntercomSite as Site
from hal.display import SimDisplay
from hal.io_devices import SIM_PINS
from services.intercom.alarm_inbox import AlarmInbox
from services.intercom.door import DoorStation
from services.intercom.indoor import IndoorUnit

DOOR = SIM_PINS["door_contact"]
TAMPER = SIM_PINS["tamper"]
SENSORS = f"""
[door_contact]
pin = "{DOOR}"
pull_up = false
left_open_s = {{left_open_s}}
forced_grace_s = 0.5

[tamper]
pin = "{TAMPER}"
pull_up = false
"""

SiteMaker = Callable[..., Awaitable[IntercomSite]]


def door_unit(left_open_s: float = 0.4, sensors: str = SENSORS) -> Unit:
    """The door station with its contact and tamper switch."""
    return Unit("door", "door", extra_toml=sensors.format(left_open_s=left_open_s))


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


def door(site: IntercomSite) -> DoorStation:
    endpoint = site["door"].endpoint
    assert endpoint is not None and isinstance(endpoint.service, DoorStation)
    return endpoint.service


def indoor(site: IntercomSite, address: str = "flat") -> IndoorUnit:
    endpoint = site[address].endpoint
    assert endpoint is not None and isinstance(endpoint.service, IndoorUnit)
    return endpoint.service


def kinds(site: IntercomSite, address: str) -> set[str]:
    """The kinds of alarm ``callbox status`` of ``address`` lists."""
    return {alarm["kind"] for alarm in site[address].status()["alarms"]}


async def test_a_door_left_open_alarms_the_indoor_unit_and_closing_clears_it(
    make: SiteMaker, caplog: pytest.LogCaptureFixture
) -> None:
    site = await make(door_unit(), Unit("flat", "indoor"))
    caplog.set_level(logging.INFO)
    site.pin("door", DOOR).drive_high()  # opened by hand: no release before it

    await wait_for(lambda: kinds(site, "door") == {"door_forced_open"}, "forced open at once")
    await wait_for(lambda: "door_left_open" in kinds(site, "door"), "left open after 0.4 s")
    await wait_for(
        lambda: kinds(site, "flat") == {"door_forced_open", "door_left_open"},
        "both alarms at the indoor unit",
    )
    door_status = site["door"].status()
    assert door_status["hardware"]["door_open"] is True
    assert door_status["hardware"]["tampered"] is False
    assert all(alarm["door"] == "door" for alarm in site["flat"].status()["alarms"])
    raised = [r for r in caplog.records if "alarm raised" in r.getMessage()]
    assert {r.levelno for r in raised} == {logging.WARNING} and len(raised) == 2

    site.pin("door", DOOR).drive_low()
    await wait_for(lambda: not kinds(site, "flat"), "both alarms cleared at the indoor unit")
    assert not kinds(site, "door")
    cleared = [r for r in caplog.records if "alarm cleared" in r.getMessage()]
    assert {r.levelno for r in cleared} == {logging.INFO} and len(cleared) == 2


async def test_a_door_opened_during_a_release_pulse_is_not_forced(make: SiteMaker) -> None:
    site = await make(door_unit(left_open_s=30.0), Unit("flat", "indoor"))
    station = door(site)
    await station.opener.open("test")  # what the exit button, a code or a callee does
    assert station.io.relay.is_active
    site.pin("door", DOOR).drive_high()
    await wait_for(lambda: station.io.door_contact.is_active, "the door seen open")
    assert not station.alarms.active, "opened while the strike was released: not forced"
    site.pin("door", DOOR).drive_low()
    await wait_for(lambda: not station.io.door_contact.is_active, "the door seen closed")

    await station.opener.wait_idle()  # the pulse is over, then the grace of 0.5 s ...
    await wait_for(lambda: not station.opener.releasing(0.5), "the grace over")
    site.pin("door", DOOR).drive_high()  # ... after it, an opening is forced
    await wait_for(lambda: "door_forced_open" in kinds(site, "flat"), "forced at the unit")


async def test_a_door_already_open_at_start_counts_as_open(make: SiteMaker) -> None:
    # the usual NC wiring with the pull-up: the sim pin idles high, an open door at boot
    wired = SENSORS.replace("pull_up = false\nleft_open_s", "left_open_s")
    site = await make(door_unit(sensors=wired), Unit("flat", "indoor"))
    assert door(site).io.door_contact.is_active, "read from the pin at start, with no edge"
    await wait_for(lambda: kinds(site, "flat") == {"door_left_open"}, "left open, not forced")


async def test_tamper_is_raised_and_cleared_at_the_indoor_unit(make: SiteMaker) -> None:
    site = await make(door_unit(), Unit("flat", "indoor"))
    site.pin("door", TAMPER).drive_high()
    await wait_for(lambda: kinds(site, "flat") == {"tamper"}, "tamper at the indoor unit")
    assert kinds(site, "door") == {"tamper"}
    assert site["door"].status()["hardware"]["tampered"] is True
    site.pin("door", TAMPER).drive_low()
    await wait_for(lambda: not kinds(site, "flat"), "tamper cleared at the indoor unit")


async def test_an_indoor_unit_offline_during_the_raise_gets_it_when_it_comes_online(
    make: SiteMaker,
) -> None:
    site = await make(door_unit(), Unit("flat", "indoor"), Unit("flat2", "indoor"))
    await site["flat2"].close()
    await site["door"].endpoint.signaling.wait_presence("flat2", False, timeout=10)  # type: ignore[union-attr]
    site.pin("door", TAMPER).drive_high()
    await wait_for(lambda: kinds(site, "flat") == {"tamper"}, "tamper at the online unit")

    app = DeviceApp(await asyncio.to_thread(load_config, site.config_paths["flat2"]))
    site.apps["flat2"] = app
    await app.start()
    await wait_for(lambda: kinds(site, "flat2") == {"tamper"}, "tamper told on coming online")

    await site["flat2"].close()  # offline again while the alarm clears ...
    door_signaling = site["door"].endpoint.signaling  # type: ignore[union-attr]
    await door_signaling.wait_presence("flat2", False, timeout=10)
    site.pin("door", TAMPER).drive_low()
    await wait_for(lambda: not kinds(site, "flat"), "cleared at the online unit")
    app = DeviceApp(await asyncio.to_thread(load_config, site.config_paths["flat2"]))
    site.apps["flat2"] = app
    await app.start()
    await door_signaling.wait_presence("flat2", True, timeout=10)
    told = door(site).alarms.sent
    site.pin("door", TAMPER).drive_high()  # ... a new alarm reaches it: it is online
    await wait_for(lambda: kinds(site, "flat2") == {"tamper"}, "a new alarm at the unit")
    assert door(site).alarms.sent > told


async def test_an_alarm_from_anyone_but_a_door_station_is_refused(make: SiteMaker) -> None:
    site = await make(door_unit(), Unit("flat", "indoor"), Unit("flat2", "indoor"))
    inbox: AlarmInbox = indoor(site).alarms
    neighbour = site["flat2"].endpoint
    assert neighbour is not None
    body: dict[str, Any] = {"kind": "tamper", "active": True, "since": 1_700_000_000}
    await neighbour.signaling.send("flat", "alarm", "alarm-tamper", body)
    await wait_for(lambda: inbox.refused == 1, "the neighbour's alarm refused")

    door_signaling = site["door"].endpoint.signaling  # type: ignore[union-attr]
    for bad in (
        {**body, "kind": "fire"},
        {**body, "active": "yes"},
        {**body, "since": -1},
        {**body, "extra": 1},
        {"kind": "tamper"},
    ):
        await door_signaling.send("flat", "alarm", "alarm-tamper", bad)
    await wait_for(lambda: inbox.refused == 6, "every malformed alarm from the door refused")
    assert not inbox.active and not kinds(site, "flat")

    await door_signaling.send("flat", "alarm", "alarm-tamper", body)  # the door's own: taken
    await wait_for(lambda: kinds(site, "flat") == {"tamper"}, "the door's alarm taken")


async def test_the_indoor_screen_shows_the_alarm_until_the_door_clears_it(
    make: SiteMaker,
) -> None:
    site = await make(door_unit(), Unit("flat", "indoor"))
    endpoint = site["flat"].endpoint
    assert endpoint is not None and endpoint.ui is not None
    ui, display = endpoint.ui, endpoint.board.display
    assert isinstance(display, SimDisplay)
    await wait_for(lambda: ui.screen == "idle", "the idle screen")

    site.pin("door", TAMPER).drive_high()
    await wait_for(lambda: ui.screen == "alarm", "the alarm notice")
    assert ui.status_text.startswith("Alarm: Door: tamper alarm (since ")
    await wait_for(lambda: ui.shown is not None and ui.shown.screen == "alarm", "drawn")
    shot = display.last_frame()
    assert shot is not None and shot.reshape(-1, 3).std(axis=0).max() > 8, "text on it"
    site.pin("door", DOOR).drive_high()
    await wait_for(lambda: len(ui.state().alarms) == 2, "forced open listed too")

    site.pin("door", TAMPER).drive_low()
    site.pin("door", DOOR).drive_low()
    await wait_for(lambda: ui.screen == "idle", "the notice gone once the door cleared both")


async def test_a_flood_of_alarm_messages_keeps_the_inbox_bounded_and_the_unit_working(
    make: SiteMaker,
) -> None:
    """A door (or whoever holds its keys) floods a unit with valid and malformed alarms.

    The unit keeps at most one alarm per door and kind, the signaling's per-sender limit
    drops most of the flood, and another door's real alarm still gets through at once.
    """
    back_door = Unit("back", "door", extra_toml=SENSORS.format(left_open_s=0.4))
    site = await make(door_unit(), back_door, Unit("flat", "indoor"))
    inbox: AlarmInbox = indoor(site).alarms
    door_signaling = site["door"].endpoint.signaling  # type: ignore[union-attr]
    kinds_sent = ("door_left_open", "door_forced_open", "tamper")
    for number in range(300):
        body: dict[str, Any] = {
            "kind": kinds_sent[number % 3],
            "active": number % 2 == 0,
            "since": 1_700_000_000 + number,
        }
        if number % 5 == 0:
            body["extra"] = "x" * 200  # malformed: refused
        await door_signaling.send("flat", "alarm", f"alarm-{number}", body)
        assert len(inbox.active) <= len(kinds_sent), "one alarm per door and kind, at most"
    flat = site["flat"].endpoint
    assert flat is not None
    await wait_for(
        lambda: flat.signaling.counters()["rejected"].get("rate_limited", 0) > 0,
        "the flood cut by the per-sender limit",
    )
    site.pin("back", TAMPER).drive_high()  # another door's real alarm during the flood's wake
    await wait_for(lambda: ("back", "tamper") in alarm_keys(inbox), "the back door's tamper")
    assert {door for door, _ in alarm_keys(inbox)} <= {"door", "back"}
    assert len(inbox.active) <= 2 * len(kinds_sent)


def alarm_keys(inbox: AlarmInbox) -> set[tuple[str, str]]:
    """The (door, kind) of every active alarm at the unit."""
    return {(door, kind.value) for door, kind in inbox.active}
