"""The site's VAPID key as an installer meets it.

Made on the broker host, shown, exported, imported on a door station, and carried by the
pairing link as ``push_key``.
"""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner, Result
from daemon_helpers import door_toml
from test_pairing import hosting_unit, link_of

from device.cli import main
from device.config import load_config
from device.phone._pairing import parse_pairing_url
from services.push.vapid import load_vapid_key, site_vapid_path
from services.signaling.identity import Identity


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def test_init_makes_the_key_once_with_mode_0600(tmp_path: Path) -> None:
    broker = tmp_path / "broker"
    first = invoke("push", "init", "--broker-config", broker)
    assert first.exit_code == 0, first.output
    path = site_vapid_path(broker)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_vapid_key(path).application_server_key
    assert f"applicationServerKey: {key}" in first.output

    again = invoke("push", "init", "--broker-config", broker)
    assert "already has a VAPID key" in again.output and "(kept)" in again.output
    assert load_vapid_key(path).application_server_key == key

    shown = invoke("push", "show", "--broker-config", broker)
    assert shown.exit_code == 0 and key in shown.output


def test_show_without_a_key_says_how_to_make_one(tmp_path: Path) -> None:
    result = invoke("push", "show", "--broker-config", tmp_path)
    assert result.exit_code == 1
    assert "callbox push init" in result.output


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    invoke("push", "init", "--broker-config", tmp_path)
    site_vapid_path(tmp_path).chmod(0o644)
    result = invoke("push", "show", "--broker-config", tmp_path)
    assert result.exit_code == 1
    assert "must not be readable by group or others" in result.output


def test_export_then_import_on_a_door_station(tmp_path: Path) -> None:
    broker = tmp_path / "broker"
    invoke("push", "init", "--broker-config", broker)
    exported = CliRunner().invoke(main, ["push", "export", "--broker-config", str(broker)])
    assert exported.exit_code == 0
    assert "whoever holds it can push" in exported.stderr
    pem = tmp_path / "vapid.pem"
    pem.write_text(exported.stdout)

    door = tmp_path / "door"
    door.mkdir()
    config = door / "callbox.toml"
    config.write_text(door_toml(port=1883, password="x", state_dir=door / "state"))
    control = tmp_path / "no-daemon.sock"
    result = invoke(
        "push", "import", pem, "--subject", "mailto:admin@example.org",
        "--config", config, "--control", control,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    installed = door / "vapid.key"
    assert stat.S_IMODE(installed.stat().st_mode) == 0o600
    site_key = load_vapid_key(site_vapid_path(broker)).application_server_key
    assert load_vapid_key(installed).application_server_key == site_key
    loaded = load_config(config)
    assert (loaded.push.vapid_key, loaded.push.subject) == (
        str(installed.resolve()),
        "mailto:admin@example.org",
    )


def test_import_refuses_what_is_not_a_p256_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    config = tmp_path / "callbox.toml"
    config.write_text(door_toml(port=1883, password="x", state_dir=tmp_path / "state"))
    result = invoke("push", "import", bad, "--config", config)
    assert result.exit_code == 1
    assert "not an unencrypted PEM private key" in result.output
    assert not (tmp_path / "vapid.key").exists()


def test_the_pairing_link_carries_the_push_key(tmp_path: Path) -> None:
    config = hosting_unit(tmp_path, ws_port=9001, door_keys=Identity.generate().public_keys)
    broker = tmp_path / "broker"
    generated = invoke("broker", "--site-config", config, "--config", broker, "--generate-only")
    assert generated.exit_code == 0, generated.output
    args = ("keys", "--config", config, "pair-web", "phone", "--url", "https://flat1.example:8443")

    without = invoke(*args, "--broker-config", broker)
    assert without.exit_code == 0, without.output
    assert parse_pairing_url(link_of(without.stdout)).push_key == ""
    assert "the link carries no push_key" in without.stderr

    invoke("push", "init", "--broker-config", broker)
    with_key = invoke(*args, "--broker-config", broker)
    assert with_key.exit_code == 0, with_key.output
    pairing = parse_pairing_url(link_of(with_key.stdout))
    assert pairing.push_key == load_vapid_key(site_vapid_path(broker)).application_server_key
    assert pairing.to_json()["push_key"] == pairing.push_key
