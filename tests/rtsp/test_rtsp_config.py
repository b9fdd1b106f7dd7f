"""``[rtsp]`` in callbox.toml: off by default, what it needs when on, clear errors, reload rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.config import Apply, ConfigError, apply_of, config_keys, parse_config, rtsp_password

FILE = Path("/etc/callbox/callbox.toml")
DOOR = 'role = "door"\naddress = "door"\nsite = "home"\ntargets = ["flat1"]\n'
ON = '[rtsp]\nenabled = true\nusername = "nvr"\n'


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    return str(info.value)


def test_the_stream_is_off_by_default_with_the_documented_defaults() -> None:
    rtsp = parse_config(DOOR, FILE).rtsp
    assert not rtsp.enabled
    assert (rtsp.address, rtsp.port, rtsp.path, rtsp.max_clients) == ("0.0.0.0", 8554, "/door", 2)


def test_an_enabled_stream_with_credentials_is_accepted() -> None:
    rtsp = parse_config(DOOR + ON + 'password = "pw"\nport = 8555\nmax_clients = 4\n', FILE).rtsp
    assert (rtsp.enabled, rtsp.username, rtsp.port, rtsp.max_clients) == (True, "nvr", 8555, 4)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (DOOR + "[rtsp]\nenabled = true\npassword = 'pw'\n", "rtsp.username", "is required"),
        (DOOR + ON, "rtsp.password", "is required with enabled = true (or password_file)"),
        (
            DOOR + ON + "password = 'a'\npassword_file = '/etc/pw'\n",
            "rtsp.password_file",
            "not both",
        ),
        (DOOR + ON + "password = 'a'\nport = 0\n", "rtsp.port", ">= 1"),
        (DOOR + ON + "password = 'a'\nport = '8554'\n", "rtsp.port", "integer"),
        (DOOR + ON + "password = 'a'\npath = 'door'\n", "rtsp.path", "is not a stream path"),
        (DOOR + ON + "password = 'a'\npath = '/a b'\n", "rtsp.path", "is not a stream path"),
        (DOOR + ON + "password = 'a'\naddress = 'eth0'\n", "rtsp.address", "not an IP address"),
        (DOOR + ON + "password = 'a'\nmax_clients = 0\n", "rtsp.max_clients", ">= 1"),
        (DOOR + ON + "password = 'a'\nmax_clients = 17\n", "rtsp.max_clients", "<= 16"),
        (DOOR + ON + "password = 'a'\naudio = true\n", "rtsp.audio", "unknown key"),
        (
            DOOR.replace('"door"\naddress', '"indoor"\naddress').replace(
                'targets = ["flat1"]\n', ""
            )
            + ON
            + "password = 'a'\n",
            "rtsp.enabled",
            "only a door station",
        ),
    ],
)
def test_a_bad_rtsp_value_is_refused_naming_the_key(text: str, key: str, reason: str) -> None:
    message = refused(text)
    assert f"{key}:" in message and reason in message, message


def test_the_password_never_appears_in_an_error() -> None:
    message = refused(DOOR + ON + 'password = "hunter2\\tx"\n')
    assert "rtsp.password" in message and "hunter2" not in message


def test_the_password_comes_from_the_config_or_the_first_line_of_its_file(tmp_path: Path) -> None:
    assert rtsp_password(parse_config(DOOR + ON + 'password = "pw"\n', FILE)) == "pw"
    secret = tmp_path / "rtsp.password"
    secret.write_text("from file\nignored\n")
    config = parse_config(DOOR + ON + f'password_file = "{secret}"\n', FILE)
    assert rtsp_password(config) == "from file"
    secret.write_text("")
    with pytest.raises(ConfigError, match=r"rtsp\.password_file: .* is empty"):
        rtsp_password(config)


def test_every_rtsp_key_rebuilds_the_endpoint_once_idle() -> None:
    keys = {k: v for k, v in config_keys().items() if k.startswith("rtsp.")}
    assert set(keys) == {
        f"rtsp.{k}"
        for k in ("enabled", "address", "port", "path", "username", "password", "password_file")
    } | {"rtsp.max_clients"}
    assert set(keys.values()) == {Apply.ENDPOINT}
    assert apply_of("rtsp") is Apply.ENDPOINT
