"""``[panel]``, ``[[bells]]`` and ``[[target_dnd]]``: what is accepted, refused, and built."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from device.config import ConfigError, load_config, panel_settings, parse_config
from hal.gpio_specs import ButtonSpec
from services.intercom.settings import DEFAULT_BELL

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "callbox.example.toml"
FILE = Path("/etc/callbox/callbox.toml")
DOOR = 'role = "door"\naddress = "door"\nsite = "home"\ntargets = ["flat1"]\n'


def bell(name: str, *lines: str, targets: str = '["flat1"]') -> str:
    return "\n[[bells]]\n" + f'name = "{name}"\ntargets = {targets}\n' + "\n".join(lines) + "\n"


def refused(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    return list(info.value.problems)


def test_the_example_has_a_bell_with_its_own_button_and_a_phone_at_night() -> None:
    config = load_config(EXAMPLE)
    spec = config.io_spec()
    assert spec.bells == {"smith": ButtonSpec(pin="GPIO20")}
    panel = panel_settings(config)
    (smith,) = panel.bells
    assert (smith.name, smith.label, smith.code, smith.phones_after_s) == (
        "smith",
        "Flat 1 - Smith",
        "1",
        10.0,
    )
    night = panel.target_dnd["flat1-phone"]
    assert night.is_active(datetime.datetime(2026, 12, 7, 23, 0))  # a Monday night
    assert not night.is_active(datetime.datetime(2026, 12, 7, 12, 0))


def test_a_bell_label_defaults_to_its_name_and_the_panel_to_one_stage() -> None:
    config = parse_config(DOOR + bell("flat12", 'code = "12"'), FILE)
    (flat12,) = panel_settings(config).bells
    assert (flat12.label, flat12.code, flat12.phones_after_s) == ("flat12", "12", None)
    assert panel_settings(config).phones_after_s == 0.0
    assert config.io_spec().bells == {}


@pytest.mark.parametrize(
    ("extra", "key", "reason"),
    [
        (bell("flat1") + bell("flat1"), "bells.1.name", "already bells.0"),
        (bell(DEFAULT_BELL), "bells.0.name", "the default bell"),
        (bell("a", 'code = "12"') + bell("b", 'code = "12"'), "bells.1.code", "already the code"),
        (bell("a", 'code = "12a"'), "bells.0.code", "not a dial code"),
        (bell("a", 'code = "123456789"'), "bells.0.code", "not a dial code"),
        (bell("a", targets="[]"), "bells.0.targets", "at least 1"),
        (bell("a", targets='["door"]'), "bells.0.targets", "own address"),
        (bell("a", targets='["flat:12"]'), "bells.0.targets.0", "site directory"),
        (bell("a", 'pin = "GPIO17"') + '[inputs.doorbell]\npin = "GPIO17"\n', "bells.0.pin", ""),
        (bell("a", 'pin = "GPIO20"') + bell("b", 'pin = "GPIO20"'), "bells.1.pin", "already used"),
        (bell("a", 'pin = "GPIO40"'), "bells.0.pin", "not on the header"),
        (bell("a", "phones_after_s = 30.0"), "bells.0.phones_after_s", "ring_timeout_s"),
        (
            '[panel]\nfallback = ["flat2"]\nfallback_after_s = 45.0\n',
            "panel.fallback_after_s",
            "ring_timeout_s",
        ),
        ("[panel]\nphones_after_s = -1.0\n", "panel.phones_after_s", "must be >= 0"),
        ('[panel]\nfallback = ["flat:3"]\n', "panel.fallback.0", "site directory"),
        ('[panel]\nfallback = ["door"]\n', "panel.fallback", "own address"),
        (
            '[[target_dnd]]\naddress = "flat1"\n[[target_dnd]]\naddress = "flat1"\n',
            "target_dnd.1.address",
            "already target_dnd.0",
        ),
        ('[[target_dnd]]\naddress = "flat1"\nschedule = ["7-8"]\n', "target_dnd.0.schedule.0", ""),
    ],
)
def test_bad_panel_settings_are_refused_naming_the_key(extra: str, key: str, reason: str) -> None:
    problems = refused(DOOR + extra)
    assert any(k == key and reason in why for k, why in problems), problems


def test_bells_only_on_a_door_station() -> None:
    indoor = 'role = "indoor"\naddress = "flat1"\nsite = "home"\n'
    problems = refused(indoor + bell("a", targets='["door"]'))
    assert ("bells", "only a door station has bells; remove [[bells]] here") in problems


def test_a_bell_pin_counts_in_the_pin_uniqueness_rule_against_the_relay() -> None:
    problems = refused(DOOR + '[relay]\npin = "GPIO24"\n' + bell("a", "pin = 24"))
    assert problems == [("bells.0.pin", "GPIO24 is already used by relay.pin")]


def test_the_fallback_delay_only_counts_with_a_fallback() -> None:
    short = DOOR + "[call]\nring_timeout_s = 15.0\n"
    assert parse_config(short, FILE).panel.fallback_after_s == 20.0, "no fallback: not used"
    problems = refused(short + '[panel]\nfallback = ["flat2"]\n')
    assert [key for key, _ in problems] == ["panel.fallback_after_s"]
