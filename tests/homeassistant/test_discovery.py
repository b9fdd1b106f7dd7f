"""The discovery configs a unit announces, and the commands it takes: pure values."""

from __future__ import annotations

import json

import pytest

from services.homeassistant import CommandError, HaSettings, UnitInfo
from services.homeassistant import discovery as d
from services.homeassistant.bridge import call_state
from services.homeassistant.commands import parse_press, parse_switch

DOOR = UnitInfo(address="door", name="Front door", role="door", sw_version="0.1.0")
FLAT = UnitInfo(address="flat", name="", role="indoor", sw_version="0.1.0")


def settings(door_release: bool = False) -> HaSettings:
    return HaSettings(host="127.0.0.1", node_id="door", door_release=door_release)


def configs(unit: UnitInfo, door_release: bool = False) -> dict[str, dict[str, object] | None]:
    topics = d.HaTopics("homeassistant", unit.address)
    return dict(d.entity_configs(unit, settings(door_release), topics))


def test_a_door_station_announces_its_entities_per_component() -> None:
    found = configs(DOOR, door_release=True)
    assert sorted(found) == [
        "homeassistant/binary_sensor/door/door/config",
        "homeassistant/button/door/open_door/config",
        "homeassistant/event/door/doorbell/config",
        "homeassistant/image/door/snapshot/config",
        "homeassistant/sensor/door/call/config",
        "homeassistant/sensor/door/missed_calls/config",
    ]
    event = found["homeassistant/event/door/doorbell/config"]
    assert event is not None
    assert event["device_class"] == "doorbell" and event["event_types"] == ["ring"]
    assert event["state_topic"] == "callbox/door/doorbell/state"
    image = found["homeassistant/image/door/snapshot/config"]
    assert image is not None
    assert image["content_type"] == "image/jpeg"
    assert image["image_topic"] == "callbox/door/snapshot/state"
    relay = found["homeassistant/binary_sensor/door/door/config"]
    assert relay is not None and relay["device_class"] == "lock"
    button = found["homeassistant/button/door/open_door/config"]
    assert button is not None
    assert button["command_topic"] == "callbox/door/open_door/set"
    assert button["payload_press"] == "PRESS"


def test_every_entity_shares_the_device_and_availability() -> None:
    for config in configs(DOOR, door_release=True).values():
        assert config is not None
        assert config["device"] == {
            "identifiers": ["callbox_door"],
            "name": "Front door",
            "manufacturer": "callbox",
            "model": "door",
            "sw_version": "0.1.0",
        }
        assert config["availability"] == [{"topic": "callbox/door/availability"}]
        assert str(config["unique_id"]).startswith("callbox_door_")


def test_without_door_release_the_button_config_is_emptied() -> None:
    found = configs(DOOR)
    assert found["homeassistant/button/door/open_door/config"] is None
    assert d.encode(None) == b"", "an empty retained config removes the entity"
    assert d.command_topics(DOOR, d.HaTopics("homeassistant", "door")) == (
        "callbox/door/open_door/set",
    ), "a press is still heard, to be logged"


def test_an_indoor_unit_announces_call_missed_calls_and_the_dnd_switch() -> None:
    found = configs(FLAT)
    assert sorted(found) == [
        "homeassistant/sensor/flat/call/config",
        "homeassistant/sensor/flat/missed_calls/config",
        "homeassistant/switch/flat/dnd/config",
    ]
    call = found["homeassistant/sensor/flat/call/config"]
    assert call is not None
    assert call["device_class"] == "enum" and call["options"] == ["idle", "ringing", "in_call"]
    assert call["json_attributes_topic"] == "callbox/flat/call/attributes"
    switch = found["homeassistant/switch/flat/dnd/config"]
    assert switch is not None
    assert (switch["command_topic"], switch["state_topic"]) == (
        "callbox/flat/dnd/set",
        "callbox/flat/dnd/state",
    )
    missed = found["homeassistant/sensor/flat/missed_calls/config"]
    assert missed is not None and missed["device"]["name"] == "flat"  # type: ignore[index]


def test_the_access_event_only_with_an_entrance() -> None:
    topics = d.HaTopics("homeassistant", "door")
    topic, config = d.access_config(DOOR, topics, entrance=True)
    assert topic == "homeassistant/event/door/access/config"
    assert config is not None
    assert config["event_types"] == ["granted", "refused"]
    assert config["state_topic"] == "callbox/door/access/state"
    assert config["device"] == d.device_block(DOOR, "door")
    assert d.access_config(DOOR, topics, entrance=False) == (topic, None)


def test_payloads_are_compact_json() -> None:
    config = configs(FLAT)["homeassistant/switch/flat/dnd/config"]
    payload = d.encode(config)
    assert json.loads(payload) == config and b'": ' not in payload and b", " not in payload


def test_idle_without_a_call() -> None:
    assert call_state(None) == ("idle", {})


@pytest.mark.parametrize(("payload", "on"), [(b"ON", True), (b"OFF", False), (b" ON\n", True)])
def test_ok__switch_payloads(payload: bytes, on: bool) -> None:
    assert parse_switch(payload) is on


@pytest.mark.parametrize("payload", [b"on", b"1", b"", b"\xff", b"ON" * 40, b'{"state":"ON"}'])
def test_fail__other_switch_payloads(payload: bytes) -> None:
    with pytest.raises(CommandError):
        parse_switch(payload)


def test_ok__press() -> None:
    parse_press(b"PRESS")


@pytest.mark.parametrize("payload", [b"press", b"ON", b"", b"PRESS PRESS"])
def test_fail__other_press_payloads(payload: bytes) -> None:
    with pytest.raises(CommandError):
        parse_press(payload)
