"""``[door_contact]`` and ``[tamper]``: what the HAL and the alarms get from them; the rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.config import ConfigError, load_config, parse_config
from device.daemon._app import intercom_settings
from hal.gpio_specs import SwitchSpec
from services.intercom.settings import AlarmSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "callbox.example.toml"
DOOR = 'role = "door"\naddress = "door"\nsite = "home"\ntargets = ["flat1"]\n'
INDOOR = 'role = "indoor"\naddress = "flat1"\nsite = "home"\n'


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value


def test_the_example_wires_the_contact_and_tamper_the_usual_way() -> None:
    config = load_config(EXAMPLE)
    spec = config.io_spec()
    assert spec.door_contact == SwitchSpec(pin="GPIO21", active_high=True, pull_up=True)
    assert spec.tamper == SwitchSpec(pin="GPIO7", active_high=True, pull_up=True)
    assert intercom_settings(config).alarms == AlarmSettings(left_open_s=30.0, forced_grace_s=5.0)


def test_keys_reach_the_spec_and_the_alarm_settings() -> None:
    text = DOOR + (
        "[door_contact]\npin = 20\npull_up = false\nopen_when_high = false\ndebounce_ms = 10\n"
        "left_open_s = 90.0\nforced_grace_s = 0.0\n[tamper]\npin = 'GPIO8'\n"
        "tampered_when_high = false\n"
    )
    config = parse_config(text)
    spec = config.io_spec()
    assert spec.door_contact == SwitchSpec(
        pin="GPIO20", active_high=False, pull_up=False, debounce_ms=10
    )
    assert spec.tamper == SwitchSpec(pin="GPIO8", active_high=False)
    assert intercom_settings(config).alarms == AlarmSettings(left_open_s=90.0, forced_grace_s=0.0)


def test_without_the_tables_there_are_no_switches() -> None:
    spec = parse_config(DOOR).io_spec()
    assert (spec.door_contact, spec.tamper) == (None, None)


def test_only_a_door_station_has_them() -> None:
    err = refused(INDOOR + "[door_contact]\npin = 'GPIO21'\n[tamper]\npin = 'GPIO7'\n")
    assert [key for key, _ in err.problems] == ["door_contact.pin", "tamper.pin"]
    assert "only a door station" in err.problems[0][1]


def test_their_pins_count_in_the_one_pin_one_device_rule() -> None:
    err = refused(DOOR + "[inputs.doorbell]\npin = 'GPIO21'\n[door_contact]\npin = 21\n")
    assert err.key == "door_contact.pin"
    assert "GPIO21 is already used by inputs.doorbell.pin" in err.reason
    err = refused(DOOR + "[door_contact]\npin = 'GPIO7'\n[tamper]\npin = 'GPIO7'\n")
    assert err.key == "tamper.pin" and "door_contact.pin" in err.reason


@pytest.mark.parametrize(
    ("table", "reason"),
    [
        ("[door_contact]\npin = 'GPIO21'\nleft_open_s = 0.0\n", "left_open_s"),
        ("[door_contact]\npin = 'GPIO21'\nforced_grace_s = 61.0\n", "forced_grace_s"),
        ("[door_contact]\npin = 'GPIO21'\ndebounce_ms = 5000\n", "debounce_ms"),
        ("[door_contact]\nleft_open_s = 10.0\n", "pin"),
        ("[tamper]\npin = 'GPIO7'\npolarity = 'high'\n", "polarity"),
    ],
)
def test_bad_values_are_refused_naming_the_key(table: str, reason: str) -> None:
    err = refused(DOOR + table)
    assert any(reason in key for key, _ in err.problems), err.problems
