"""A door station and an indoor unit seen and driven from a real Home Assistant 2024.3.3.

Everything is real: HA from its own venv (`make homeassistant-venv`) with a generated
configuration and its MQTT entry made through its public APIs, HA's own mosquitto with
accounts, the device apps built from callbox.toml files on simulated boards, the site's
mosquitto, aiortc calls. The tests drive the units through their pins and HA through its
REST API, and read what HA shows there. An entrance panel (two named bells, the sim board's
keypad and card reader, access codes) shows which bell rang and every access attempt.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from hass import HaBroker, HomeAssistant, ha_installed, ha_venv
from support import need, wait_for

from device.config import load_config
from device.simulator import ENTRANCE_TOML, IntercomSite, Unit, start_intercom_site
from hal.cards import SimCardReader
from hal.io_devices import SIM_PINS
from hal.keypad import SimKeypad
from services.access import AccessStore, EntryKind
from services.access.enroll import Enrollment, add_entry
from services.callapi import DOOR_OPENED
from services.intercom.door import DoorStation

TIMEOUT = 30.0
MIN_PRESS_S = 0.05


@pytest.fixture
async def ha(tmp_path: Path) -> AsyncIterator[HomeAssistant]:
    """A fresh HA (its own config dir: HA restores state across restarts) and its broker."""
    need(ha_installed(), f"Home Assistant in {ha_venv()} (make homeassistant-venv)")
    broker = HaBroker(tmp_path / "ha-broker")
    await broker.start()
    hass = HomeAssistant(tmp_path / "ha-config", broker)
    try:
        await hass.start()
        await hass.setup()
        yield hass
    finally:
        await hass.stop()
        await broker.close()


def ha_toml(broker: HaBroker, *, door_release: bool = False, password_file: str = "") -> str:
    """A [homeassistant] table pointing at the test's HA broker."""
    secret = (
        f'password_file = "{password_file}"'
        if password_file
        else f'password = "{broker.passwords["callbox"]}"'
    )
    return f"""
[homeassistant]
enabled = true
host = "127.0.0.1"
port = {broker.port}
username = "callbox"
{secret}
door_release = {str(door_release).lower()}
"""


async def press(site: IntercomSite, address: str, role: str) -> None:
    """Press and release a button of ``address`` (longer than the minimum press)."""
    pin = site.pin(address, SIM_PINS[role])
    pin.drive_low()
    await asyncio.sleep(MIN_PRESS_S * 2)  # the person holding the button: the input
    pin.drive_high()


def high_periods(pin: Any) -> int:
    """How many high periods of a mock pin have ended."""
    states = [s.state for s in pin.states]
    return sum(1 for a, b in itertools.pairwise(states) if a and not b)


def door(site: IntercomSite) -> DoorStation:
    endpoint = site["door"].endpoint
    assert endpoint is not None and isinstance(endpoint.service, DoorStation)
    return endpoint.service


def available(state: dict[str, Any]) -> bool:
    return bool(state["state"] != "unavailable")


def is_(value: str) -> Any:
    return lambda state: state["state"] == value


async def test_door_and_indoor_unit_in_home_assistant(tmp_path: Path, ha: HomeAssistant) -> None:
    secret = tmp_path / "ha-password"
    await asyncio.to_thread(secret.write_text, ha.broker.passwords["callbox"] + "\n")
    site = await start_intercom_site(
        tmp_path / "site",
        [
            Unit("door", "door", extra_toml=ha_toml(ha.broker, door_release=True)),
            Unit("flat", "indoor", extra_toml=ha_toml(ha.broker, password_file=str(secret))),
        ],
    )
    try:
        await _entities_appear(ha)
        await _door_contact_tamper_and_alarms(site, ha)
        await _doorbell_call_and_button(site, ha)
        await _dnd_switch(site, ha)
        await _entities_come_back_after_ha_restarts(site, ha)
    finally:
        await site.close()


async def _entities_appear(ha: HomeAssistant) -> None:
    event = await ha.wait_state("event.door_doorbell", available, TIMEOUT)
    assert event["attributes"]["device_class"] == "doorbell"
    assert event["attributes"]["event_types"] == ["ring"]
    relay = await ha.wait_state("binary_sensor.door_door", is_("off"), TIMEOUT)
    assert relay["attributes"]["device_class"] == "lock"
    for unit in ("door", "flat"):
        call = await ha.wait_state(f"sensor.{unit}_call", is_("idle"), TIMEOUT)
        assert call["attributes"]["device_class"] == "enum"
        await ha.wait_state(f"sensor.{unit}_missed_calls", is_("0"), TIMEOUT)
    await ha.wait_state("image.door_snapshot", available, TIMEOUT)
    await ha.wait_state("button.door_open_door", available, TIMEOUT)
    await ha.wait_state("switch.flat_dnd", is_("off"), TIMEOUT)
    contact = await ha.wait_state("binary_sensor.door_door_contact", is_("off"), TIMEOUT)
    assert contact["attributes"]["device_class"] == "door"
    tamper = await ha.wait_state("binary_sensor.door_tamper", is_("off"), TIMEOUT)
    assert tamper["attributes"]["device_class"] == "tamper"
    problem = await ha.wait_state("binary_sensor.door_door_alarm", is_("off"), TIMEOUT)
    assert problem["attributes"]["device_class"] == "problem"
    alarm = await ha.wait_state("event.door_alarm", available, TIMEOUT)
    assert alarm["attributes"]["event_types"] == ["door_left_open", "door_forced_open", "tamper"]
    assert await ha.state("event.door_access") is None, "no keypad nor reader: no Access event"


async def _door_contact_tamper_and_alarms(site: IntercomSite, ha: HomeAssistant) -> None:
    """The sim door's contact and tamper pins (pulled down: closed, untampered) driven."""
    before = await ha.wait_state("event.door_alarm")
    site.pin("door", SIM_PINS["door_contact"]).drive_high()  # opened without a release
    await ha.wait_state("binary_sensor.door_door_contact", is_("on"), TIMEOUT)
    problem = await ha.wait_state("binary_sensor.door_door_alarm", is_("on"), TIMEOUT)
    assert problem["attributes"]["alarms"] == ["door_forced_open"]
    event = await ha.wait_state(
        "event.door_alarm", lambda s: s["state"] != before["state"], TIMEOUT
    )
    assert event["attributes"]["event_type"] == "door_forced_open"
    site.pin("door", SIM_PINS["door_contact"]).drive_low()
    await ha.wait_state("binary_sensor.door_door_contact", is_("off"), TIMEOUT)
    await ha.wait_state("binary_sensor.door_door_alarm", is_("off"), TIMEOUT)

    site.pin("door", SIM_PINS["tamper"]).drive_high()  # the cover comes off
    await ha.wait_state("binary_sensor.door_tamper", is_("on"), TIMEOUT)
    problem = await ha.wait_state("binary_sensor.door_door_alarm", is_("on"), TIMEOUT)
    assert problem["attributes"]["alarms"] == ["tamper"]
    event = await ha.wait_state(
        "event.door_alarm", lambda s: s["attributes"]["event_type"] == "tamper", TIMEOUT
    )
    site.pin("door", SIM_PINS["tamper"]).drive_low()
    await ha.wait_state("binary_sensor.door_tamper", is_("off"), TIMEOUT)
    await ha.wait_state("binary_sensor.door_door_alarm", is_("off"), TIMEOUT)


async def _doorbell_call_and_button(site: IntercomSite, ha: HomeAssistant) -> None:
    before = await ha.wait_state("event.door_doorbell")
    image_before = await ha.wait_state("image.door_snapshot")
    await press(site, "door", "doorbell")

    event = await ha.wait_state(
        "event.door_doorbell", lambda s: s["state"] != before["state"], TIMEOUT
    )
    call = door(site).calls.active_call
    assert call is not None
    assert event["attributes"]["event_type"] == "ring"
    assert event["attributes"]["call_id"] == call.call_id
    assert event["attributes"]["targets"] == ["flat"]
    assert (event["attributes"]["bell"], event["attributes"]["via"]) == ("doorbell", "button")
    ringing = await ha.wait_state("sensor.door_call", is_("ringing"), TIMEOUT)
    assert ringing["attributes"]["peer"] == "flat"
    assert ringing["attributes"]["peer_name"] == "Flat"
    flat_ringing = await ha.wait_state("sensor.flat_call", is_("ringing"), TIMEOUT)
    assert flat_ringing["attributes"]["direction"] == "in"

    # the visitor snapshot: HA serves the JPEG the door just wrote
    await ha.wait_state(
        "image.door_snapshot", lambda s: s["state"] != image_before["state"], TIMEOUT
    )
    snapshots = door(site).snapshots
    assert snapshots is not None
    (newest, *_) = await asyncio.to_thread(snapshots.list)
    status, served = await ha.get_bytes("/api/image_proxy/image.door_snapshot")
    assert status == 200 and served[:2] == b"\xff\xd8"
    assert served == await asyncio.to_thread(newest.read_bytes)

    site.pin("flat", SIM_PINS["hook"]).drive_low()  # the resident answers
    await ha.wait_state("sensor.door_call", is_("in_call"), TIMEOUT)
    await ha.wait_state("sensor.flat_call", is_("in_call"), TIMEOUT)

    relay = site.pin("door", SIM_PINS["relay"])
    assert high_periods(relay) == 0
    changes = await ha.state_changes()
    try:
        await ha.post("/api/services/button/press", {"entity_id": "button.door_open_door"})
        await wait_for(
            lambda: high_periods(relay) == 1, "one relay pulse from HA's button", TIMEOUT
        )
        record = door(site).opener.records[-1]
        assert record.requester == "homeassistant" and record.opened
        await wait_for(
            lambda: changes.states("binary_sensor.door_door")[-2:] == ["on", "off"],
            "HA to see the door unlocked, then locked",
            TIMEOUT,
        )
    finally:
        await changes.close()
    assert high_periods(relay) == 1, "one press, one pulse"

    site.pin("flat", SIM_PINS["hook"]).drive_high()  # hung up
    await ha.wait_state("sensor.door_call", is_("idle"), TIMEOUT)
    await ha.wait_state("sensor.flat_call", is_("idle"), TIMEOUT)


async def _dnd_switch(site: IntercomSite, ha: HomeAssistant) -> None:
    flat = site["flat"].endpoint
    assert flat is not None
    await ha.post("/api/services/switch/turn_on", {"entity_id": "switch.flat_dnd"})
    await wait_for(flat.service.dnd_active, "HA's switch to turn DND on", TIMEOUT)
    await ha.wait_state("switch.flat_dnd", is_("on"), TIMEOUT)

    await press(site, "door", "doorbell")  # refused by the flat: a missed call
    await ha.wait_state("sensor.flat_missed_calls", is_("1"), TIMEOUT)
    await ha.wait_state("sensor.door_call", is_("idle"), TIMEOUT)

    await ha.post("/api/services/switch/turn_off", {"entity_id": "switch.flat_dnd"})
    await wait_for(lambda: not flat.service.dnd_active(), "HA's switch to turn DND off", TIMEOUT)
    await ha.wait_state("switch.flat_dnd", is_("off"), TIMEOUT)


async def _entities_come_back_after_ha_restarts(site: IntercomSite, ha: HomeAssistant) -> None:
    ha_app = site["door"].homeassistant.bridge
    assert ha_app is not None
    seen_online = ha_app.link.ha_online
    await ha.stop()
    await ha.start()
    await wait_for(lambda: ha_app.link.ha_online > seen_online, "HA's online to be seen", TIMEOUT)
    for entity, state in (
        ("sensor.door_call", "idle"),
        ("sensor.flat_missed_calls", "1"),
        ("switch.flat_dnd", "off"),
        ("binary_sensor.door_door", "off"),
        ("binary_sensor.door_door_contact", "off"),
        ("binary_sensor.door_tamper", "off"),
    ):
        await ha.wait_state(entity, is_(state), TIMEOUT)
    for entity in ("event.door_doorbell", "image.door_snapshot", "button.door_open_door"):
        await ha.wait_state(entity, available, TIMEOUT)
    status, served = await ha.get_bytes("/api/image_proxy/image.door_snapshot")
    assert status == 200 and served[:2] == b"\xff\xd8"


async def test_door_release_off_removes_the_button_and_ignores_presses(
    tmp_path: Path, ha: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    site = await start_intercom_site(
        tmp_path / "site",
        [
            Unit("door", "door", extra_toml=ha_toml(ha.broker, door_release=True)),
            Unit("flat", "indoor"),
        ],
    )
    try:
        await ha.wait_state("button.door_open_door", available, TIMEOUT)
        path = site.config_paths["door"]
        text = await asyncio.to_thread(path.read_text)
        await asyncio.to_thread(
            path.write_text, text.replace("door_release = true", "door_release = false")
        )
        new = await asyncio.to_thread(load_config, path)
        assert await site["door"].apply(new) == ["homeassistant"]

        await _wait_gone(ha, "button.door_open_door")
        await ha.wait_state("sensor.door_call", is_("idle"), TIMEOUT)
        bridge = site["door"].homeassistant.bridge
        assert bridge is not None and not bridge.settings.door_release
        await wait_for(bridge.link.connected.is_set, "the new link", TIMEOUT)

        # a press published straight to the button's command topic: logged, nothing opens
        async with aiomqtt.Client(
            "127.0.0.1",
            ha.broker.port,
            username="callbox",
            password=ha.broker.passwords["callbox"],
            identifier="test-attacker",
        ) as client:
            await client.publish("callbox/door/open_door/set", "PRESS", qos=1)
            await client.publish("callbox/door/open_door/set", "PRESS", qos=1)
        await wait_for(lambda: bridge.ignored_commands == 2, "both presses ignored", TIMEOUT)
        status = site["door"].status()["homeassistant"]
        assert status["connected"] and status["ignored_commands"] == 2
        assert high_periods(site.pin("door", SIM_PINS["relay"])) == 0
        assert not door(site).opener.records
        assert "door_release = false" in caplog.text
    finally:
        await site.close()


async def _wait_gone(ha: HomeAssistant, entity_id: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        while True:
            if await ha.state(entity_id) is None:
                return
            await asyncio.sleep(0.1)


PANEL = (
    """
[[bells]]
name = "smith"
label = "Flat 12 - Smith"
targets = ["flat12"]
code = "12"
pin = "GPIO20"

[[bells]]
name = "jones"
label = "Flat 13 - Jones"
targets = ["flat12"]
code = "13"

"""
    + ENTRANCE_TOML
)
CODE = "2580"
KNOWN_CARD = ("wiegand26", "12:34567")


async def test_an_entrance_panel_names_its_bells_and_its_access_attempts(
    tmp_path: Path, ha: HomeAssistant
) -> None:
    site = await start_intercom_site(
        tmp_path / "site",
        [
            Unit("door", "door", extra_toml=ha_toml(ha.broker) + PANEL),
            Unit("flat12", "indoor"),
        ],
    )
    try:
        state_dir = Path(site["door"].config.state_dir)
        for entry in (
            Enrollment(EntryKind.PIN, "Smith", CODE, flat="12"),
            Enrollment(EntryKind.CARD, "Jones", ":".join(KNOWN_CARD), flat="13"),
        ):
            await asyncio.to_thread(add_entry, AccessStore(state_dir), entry)
        await ha.wait_state("event.door_doorbell", available, TIMEOUT)
        access = await ha.wait_state("event.door_access", available, TIMEOUT)
        assert access["attributes"]["event_types"] == ["granted", "refused"]
        endpoint = site["door"].endpoint
        assert endpoint is not None
        keypad = endpoint.board.io.keypad
        reader = endpoint.board.io.card_readers["entrance"]
        assert isinstance(keypad, SimKeypad) and isinstance(reader, SimCardReader)

        # flat 12's own button: its bell, by name and label, pressed
        before = await ha.wait_state("event.door_doorbell")
        bell = site.pin("door", "GPIO20")
        bell.drive_low()
        await asyncio.sleep(MIN_PRESS_S * 2)
        bell.drive_high()
        event = await ha.wait_state(
            "event.door_doorbell", lambda s: s["state"] != before["state"], TIMEOUT
        )
        attributes = event["attributes"]
        assert (attributes["bell"], attributes["bell_label"], attributes["via"]) == (
            "smith",
            "Flat 12 - Smith",
            "button",
        )
        assert attributes["targets"] == ["flat12"]
        await ha.wait_state("sensor.door_call", is_("ringing"), TIMEOUT)
        call = door(site).calls.active_call
        assert call is not None and attributes["call_id"] == call.call_id

        # the resident's code: granted, the door opens (the ring stops), no code in HA
        keypad.press(f"*{CODE}#")
        granted = await ha.wait_state("event.door_access", _event("granted"), TIMEOUT)
        assert granted["attributes"]["who"] == "Smith (flat 12)"
        assert granted["attributes"]["kind"] == "code"
        assert granted["attributes"]["via"] == keypad.name
        await asyncio.wait_for(call.ended.wait(), TIMEOUT)
        assert call.end_reason == DOOR_OPENED
        await ha.wait_state("sensor.door_call", is_("idle"), TIMEOUT)

        # a wrong code: refused, and neither code shows
        keypad.press("*1111#")
        refused = await ha.wait_state(
            "event.door_access", _event("refused", reason="no such code"), TIMEOUT
        )
        assert refused["attributes"]["who"] == ""

        # a known card by whom it belongs to, an unknown one by its number
        await door(site).opener.wait_idle()
        reader.present(*KNOWN_CARD)
        card = await ha.wait_state(
            "event.door_access", _event("granted", who="Jones (flat 13)"), TIMEOUT
        )
        assert card["attributes"]["via"] == "entrance" and "card" not in card["attributes"]
        reader.present("wiegand26", "99:1")
        unknown = await ha.wait_state(
            "event.door_access", _event("refused", reason="unknown card"), TIMEOUT
        )
        assert unknown["attributes"]["card"] == "wiegand26:99:1"

        # flat 13's dial code: HA tells it from flat 12's
        await ha.wait_state("sensor.door_call", is_("idle"), TIMEOUT)
        before = await ha.wait_state("event.door_doorbell")
        keypad.press("13#")
        event = await ha.wait_state(
            "event.door_doorbell", lambda s: s["state"] != before["state"], TIMEOUT
        )
        attributes = event["attributes"]
        assert (attributes["bell"], attributes["bell_label"], attributes["via"]) == (
            "jones",
            "Flat 13 - Jones",
            "code",
        )

        shown = json.dumps([await ha.state("event.door_access"), granted, refused, card])
        for secret in (CODE, "1111", KNOWN_CARD[1]):
            assert secret not in shown, f"{secret} reached Home Assistant"
    finally:
        await site.close()


def _event(event_type: str, **attributes: str) -> Any:
    def matches(state: dict[str, Any]) -> bool:
        got = state["attributes"]
        return bool(
            got.get("event_type") == event_type
            and all(got.get(key) == value for key, value in attributes.items())
        )

    return matches
