"""``[homeassistant]``: what is accepted, what is refused and why, and what the bridge gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.config import ConfigError, parse_config
from device.daemon._homeassistant import homeassistant_bridge

FILE = Path("/etc/callbox/callbox.toml")
DOOR = 'role = "door"\naddress = "door"\nsite = "home"\ntargets = ["flat"]\nname = "Front door"\n'
FLAT = 'role = "indoor"\naddress = "flat"\nsite = "home"\n'


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    return info.value


def test_ok__off_by_default_with_the_documented_defaults() -> None:
    ha = parse_config(DOOR, FILE).homeassistant
    assert not ha.enabled and not ha.door_release and not ha.tls
    assert (ha.port, ha.discovery_prefix, ha.node_id) == (1883, "homeassistant", "")
    assert homeassistant_bridge(parse_config(DOOR, FILE)) is None


def test_ok__a_door_station_with_the_button_and_its_node_id_from_the_address() -> None:
    config = parse_config(
        DOOR + '[homeassistant]\nenabled = true\nhost = "127.0.0.1"\nusername = "cb"\n'
        'password = "pw"\ndoor_release = true\n',
        FILE,
    )
    bridge = homeassistant_bridge(config)
    assert bridge is not None
    assert bridge.settings.node_id == "door" and bridge.settings.door_release
    assert (bridge.settings.username, bridge.settings.password) == ("cb", "pw")
    assert (bridge.unit.name, bridge.unit.role) == ("Front door", "door")


def test_ok__the_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "ha-password"
    secret.write_text("from-file\nignored\n")
    config = parse_config(
        FLAT + f'[homeassistant]\nenabled = true\nhost = "ha.lan"\nusername = "cb"\n'
        f'password_file = "{secret}"\nnode_id = "flat_2"\ndiscovery_prefix = "ha/disc"\n',
        FILE,
    )
    bridge = homeassistant_bridge(config)
    assert bridge is not None
    assert bridge.settings.password == "from-file"
    assert bridge.topics.config("switch", "dnd") == "ha/disc/switch/flat_2/dnd/config"


def test_fail__an_unreadable_password_file_names_the_key(tmp_path: Path) -> None:
    config = parse_config(
        FLAT + f'[homeassistant]\nenabled = true\nhost = "ha.lan"\nusername = "cb"\n'
        f'password_file = "{tmp_path / "missing"}"\n',
        FILE,
    )
    with pytest.raises(ConfigError, match=r"homeassistant\.password_file"):
        homeassistant_bridge(config)


@pytest.mark.parametrize(
    ("table", "key", "reason"),
    [
        ("enabled = true", "homeassistant.host", "is required"),
        ('host = "h"\npassword = "p"', "homeassistant.username", "required with a password"),
        (
            'host = "h"\nusername = "u"\npassword = "p"\npassword_file = "/x"',
            "homeassistant.password_file",
            "either",
        ),
        ('host = "h"\ntls_ca = "/ca.crt"', "homeassistant.tls_ca", "tls = false"),
        ('discovery_prefix = "home/#"', "homeassistant.discovery_prefix", "topic prefix"),
        ('discovery_prefix = "/ha"', "homeassistant.discovery_prefix", "topic prefix"),
        ('node_id = "a b"', "homeassistant.node_id", "node id"),
        ("port = 0", "homeassistant.port", ""),
        ('tls = "yes"', "homeassistant.tls", ""),
        ("door_reelase = true", "homeassistant.door_reelase", ""),
    ],
)
def test_fail__bad_values_name_the_key(table: str, key: str, reason: str) -> None:
    error = refused(DOOR + "[homeassistant]\n" + table + "\n")
    assert key in {k for k, _ in error.problems}, error
    assert reason in str(error)


def test_fail__the_door_button_only_on_a_door_station() -> None:
    error = refused(FLAT + '[homeassistant]\nenabled = true\nhost = "h"\ndoor_release = true\n')
    assert "homeassistant.door_release" in {k for k, _ in error.problems}


def test_fail__the_door_button_never_with_a_password_in_clear_off_this_machine() -> None:
    table = 'enabled = true\nhost = "ha.lan"\nusername = "u"\npassword = "p"\n'
    error = refused(DOOR + "[homeassistant]\n" + table + "door_release = true\n")
    assert error.key == "homeassistant.tls" and "open the door" in str(error)
    parse_config(DOOR + "[homeassistant]\n" + table + "door_release = true\ntls = true\n", FILE)
    parse_config(DOOR + "[homeassistant]\n" + table, FILE)  # no button: plain MQTT is allowed
