"""Every key of ``callbox.toml`` declares how a running daemon applies a change to it.

The reload (`device.daemon.DeviceApp.apply`) reads these declarations from the schema: a key
without one would otherwise be taken for live and never applied, so this walks the whole
schema, nested tables included, and refuses any key that declares nothing.
"""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field

from device.config import Apply, CallboxConfig, apply_of, config_keys
from device.config._apply import declared_keys, strongest, way_under
from device.config._models import Section

TOP_LEVEL = {
    Apply.LIVE: ("targets", "contacts", "call", "dnd", "snapshots", "logging", "homeassistant"),
    Apply.DEVICES: (
        *("inputs", "relay", "leds", "proximity", "backlight", "gpio"),
        *("door_contact", "tamper", "access"),
        *("keypad", "card_readers"),
    ),
    Apply.ENDPOINT: (
        *("role", "address", "name", "site", "board", "state_dir", "first_use_pinning"),
        *("broker", "audio", "camera", "network", "display", "push", "turn", "directory", "rtsp"),
    ),
    Apply.FIRST_BOOT: ("system",),
}
"""How each top-level key applies, as docs/operations.md ("What applies when") says."""
PANEL_TOP_LEVEL = {
    Apply.LIVE: ("panel", "target_dnd"),
    Apply.DEVICES: ("bells",),  # a bell's own push button is a GPIO device
}
"""The entrance panel's keys (issue 19, device/config/_panel.py)."""
for _way, _keys in PANEL_TOP_LEVEL.items():
    TOP_LEVEL[_way] = (*TOP_LEVEL[_way], *_keys)


def test_every_key_of_the_schema_declares_how_a_change_applies() -> None:
    keys = config_keys()
    undeclared = sorted(key for key, way in keys.items() if way is None)
    assert not undeclared, f"keys with no declared way to apply a change: {undeclared}"


def test_the_walk_reaches_nested_tables_maps_and_arrays_of_tables() -> None:
    keys = config_keys()
    for key in ("inputs.doorbell.pin", "leds.*.pin", "contacts.*.sign_key", "proximity.bus"):
        assert key in keys
    for key in ("proximity.pin", "network.ice_servers.*.urls", "system.wifi.*.ssid"):
        assert key in keys
    assert keys["inputs.doorbell.min_press_ms"] is Apply.DEVICES, "a nested key takes its table's"
    assert keys["system.admin.ssh_keys"] is Apply.FIRST_BOOT
    assert keys["network.ice_servers.*.credential"] is Apply.ENDPOINT


@pytest.mark.parametrize(("way", "key"), [(w, k) for w, ks in TOP_LEVEL.items() for k in ks])
def test_each_top_level_key_applies_as_documented(way: Apply, key: str) -> None:
    assert apply_of(key) is way


def test_the_documented_table_names_every_top_level_key() -> None:
    documented = {key for keys in TOP_LEVEL.values() for key in keys}
    schema = {field.alias or name for name, field in CallboxConfig.model_fields.items()}
    assert documented == schema


class _Inner(Section):
    """A table that declares nothing: its keys take the way of the key that holds it."""

    value: int = 0


class _Live(Section):
    APPLY = Apply.LIVE

    plain: int = 0
    rebuilt: Annotated[int, Apply.ENDPOINT] = 0
    inner: _Inner = _Inner()


class _Root(Section):
    declared: _Live = _Live()
    bare: int = 0
    holder: dict[str, _Inner] = Field(default_factory=dict)


def test_a_key_declares_its_own_way_or_takes_its_tables_or_has_none() -> None:
    assert declared_keys(_Root) == {
        "declared": Apply.LIVE,
        "declared.plain": Apply.LIVE,
        "declared.rebuilt": Apply.ENDPOINT,
        "declared.inner": Apply.LIVE,
        "declared.inner.value": Apply.LIVE,
        "bare": None,
        "holder": None,
        "holder.*.value": None,
    }


def test_a_table_applies_the_strongest_way_under_it_and_undeclared_rebuilds_all() -> None:
    keys = declared_keys(_Root)
    assert way_under(keys, "declared") is Apply.ENDPOINT, "one key under it rebuilds the endpoint"
    assert way_under(keys, "declared.plain") is Apply.LIVE
    assert way_under(keys, "bare") is Apply.ENDPOINT, "undeclared: rebuilt, never taken for live"
    assert way_under(keys, "holder") is Apply.ENDPOINT
    assert way_under(keys, "no-such-key") is Apply.ENDPOINT


def test_the_strongest_way_covers_the_others() -> None:
    assert strongest([Apply.LIVE, Apply.ENDPOINT, Apply.DEVICES]) is Apply.ENDPOINT
    assert strongest([Apply.FIRST_BOOT, Apply.LIVE]) is Apply.LIVE
    assert strongest([]) is None
