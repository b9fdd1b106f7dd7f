"""The administration commands an installer types over SSH, on real files (no daemon)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from daemon_helpers import door_toml

from device.cli import main
from device.cli._admin import key_text
from device.config import load_or_create_identity
from hal.backlight import make_sim_backlight_tree
from services.intercom.calllog import CallLog, CallRecord
from services.signaling.identity import PublicKeys, safety_number

PASSWORD = "secret-broker-password"


def callbox(*args: str | Path) -> Result:
    """``callbox ARGS`` in this process (click's runner: exit code, stdout, stderr)."""
    return CliRunner().invoke(main, [str(arg) for arg in args])


def write_unit(directory: Path, address: str = "door", role: str = "door") -> Path:
    """A unit's callbox.toml (the test broker's port is never dialled here), its keys made."""
    directory.mkdir(parents=True, exist_ok=True)
    state = directory / "state"
    text = door_toml(port=1883, password=PASSWORD, state_dir=state)
    if role == "indoor":
        text = text.replace('role = "door"', 'role = "indoor"').replace('targets = ["flat"]', "")
        text = text.replace('address = "door"', f'address = "{address}"')
    path = directory / "callbox.toml"
    path.write_text(text)
    load_or_create_identity(state)
    return path


@pytest.fixture
def door(tmp_path: Path) -> Path:
    return write_unit(tmp_path / "door")


# config -----------------------------------------------------------------------------------------


def test_config_get_show_validate(door: Path) -> None:
    got = callbox("config", "--config", door, "get", "call.ring_timeout_s")
    assert (got.exit_code, got.stdout) == (0, "30.0\n")
    assert callbox("config", "--config", door, "get", "name").stdout == "Front door\n"
    table = json.loads(callbox("config", "--config", door, "get", "broker").stdout)
    assert table["port"] == 1883

    shown = callbox("config", "--config", door, "show")
    assert shown.exit_code == 0 and shown.stdout == door.read_text(), "the file as written"

    valid = callbox("config", "--config", door, "validate")
    assert (valid.exit_code, valid.stdout) == (0, f"{door}: valid\n")


def test_config_get_of_a_missing_key_names_it(door: Path) -> None:
    result = callbox("config", "--config", door, "get", "call.ring_timeout")
    assert result.exit_code == 2
    assert f"{door}: call.ring_timeout: no such key" in result.stderr


def test_config_validate_names_file_key_and_reason(door: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(door.read_text().replace("ring_timeout_s = 30", "ring_timeout_s = 0"))

    result = callbox("config", "--config", door, "validate", bad)

    assert result.exit_code == 2
    assert f"{bad}: call.ring_timeout_s: must be > 0 (got 0)" in result.stderr


def test_config_set_without_a_daemon_writes_the_file(door: Path, tmp_path: Path) -> None:
    before = door.read_bytes()

    result = callbox(
        "config", "--config", door, "set", "dnd.enabled", "true",
        "--control", tmp_path / "nobody.sock",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "the daemon is not running: the change applies when it starts" in result.stdout
    assert callbox("config", "--config", door, "get", "dnd.enabled").stdout == "true\n"
    assert door.with_name("callbox.toml.bak").read_bytes() == before


def test_config_set_of_a_bad_value_changes_nothing(door: Path, tmp_path: Path) -> None:
    before = door.read_bytes()

    result = callbox(
        "config", "--config", door, "set", "call.codec", "MJPEG", "--control", tmp_path / "x.sock"
    )

    assert result.exit_code == 2
    assert "call.codec" in result.stderr and "not changed" in result.stderr
    assert door.read_bytes() == before
    assert not door.with_name("callbox.toml.bak").exists()


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "callbox.toml"
    result = callbox("config", "--config", missing, "get", "name")
    assert result.exit_code == 2
    assert f"{missing}: the file does not exist" in result.stderr


# keys -------------------------------------------------------------------------------------------


def key_of(config: Path) -> str:
    """The ``key:`` line of ``callbox keys show``."""
    shown = callbox("keys", "--config", config, "show")
    assert shown.exit_code == 0, shown.output
    (line,) = [line for line in shown.stdout.splitlines() if line.startswith("key:")]
    return line.split()[1]


def test_keys_show_prints_the_fingerprint_and_the_key(door: Path) -> None:
    own = load_or_create_identity(door.parent / "state").public_keys

    shown = callbox("keys", "--config", door, "show")

    assert shown.exit_code == 0
    assert f"fingerprint: {own.fingerprint()}" in shown.stdout
    assert key_of(door) == f"{own.to_json()['sign']}.{own.to_json()['dh']}"


def test_trust_both_ways_gives_the_same_safety_code(tmp_path: Path) -> None:
    door = write_unit(tmp_path / "door")
    flat = write_unit(tmp_path / "flat", address="flat", role="indoor")
    nobody = tmp_path / "nobody.sock"

    to_flat = callbox("keys", "--config", door, "trust", "flat", key_of(flat), "--control", nobody)
    to_door = callbox("keys", "--config", flat, "trust", "door", key_of(door), "--control", nobody)

    assert to_flat.exit_code == 0 and to_door.exit_code == 0, to_flat.output + to_door.output
    assert "trusted flat: fingerprint" in to_flat.stdout
    assert callbox("config", "--config", door, "get", "contacts.0.address").stdout == "flat\n"
    door_code = callbox("keys", "--config", door, "safety-code", "flat")
    flat_code = callbox("keys", "--config", flat, "safety-code", "door")
    assert door_code.exit_code == flat_code.exit_code == 0
    keys = [load_or_create_identity(unit.parent / "state").public_keys for unit in (door, flat)]
    assert door_code.stdout == flat_code.stdout == safety_number(*keys) + "\n"


def test_trust_again_replaces_the_pinned_key(tmp_path: Path) -> None:
    door = write_unit(tmp_path / "door")
    nobody = tmp_path / "nobody.sock"
    first, second = (write_unit(tmp_path / name, "flat", "indoor") for name in ("a", "b"))
    callbox("keys", "--config", door, "trust", "flat", key_of(first), "--control", nobody)

    result = callbox("keys", "--config", door, "trust", "flat", key_of(second), "--control", nobody)

    assert result.exit_code == 0, result.output
    contacts = json.loads(callbox("config", "--config", door, "get", "contacts").stdout)
    assert len(contacts) == 1
    assert f"{contacts[0]['sign_key']}.{contacts[0]['dh_key']}" == key_of(second)


@pytest.mark.parametrize(
    "key",
    ["not-a-key", "abc.def", "-abc.def", '{"sign": "AAAA"}', "A" * 43 + "." + "A" * 44],
)
def test_trust_refuses_a_bad_key_and_changes_nothing(door: Path, key: str) -> None:
    before = door.read_bytes()

    result = callbox("keys", "--config", door, "trust", "flat", key)

    assert result.exit_code == 2
    assert "not a public key pair" in result.stderr
    assert "Traceback" not in result.output
    assert door.read_bytes() == before


def test_trust_takes_a_key_that_starts_with_a_dash(door: Path) -> None:
    peer = PublicKeys(sign=b"\xf8" + bytes(range(31)), dh=bytes(range(32, 64)))
    text = key_text(peer)
    assert text.startswith("-"), "b64u of 0xf8... starts with '-'"

    result = callbox("keys", "--config", door, "trust", "flat", text)

    assert result.exit_code == 0, result.output
    assert f"fingerprint {peer.fingerprint()}" in result.stdout
    assert callbox("config", "--config", door, "get", "contacts.0.sign_key").stdout.startswith("-")


def test_safety_code_of_a_stranger_is_refused(door: Path) -> None:
    result = callbox("keys", "--config", door, "safety-code", "stranger")
    assert result.exit_code == 1
    assert "'stranger' is not a contact" in result.stderr


# call, status, log, safe-state --------------------------------------------------------------------


def test_call_and_status_without_a_daemon(tmp_path: Path) -> None:
    control = tmp_path / "control.sock"
    for args in (("call", "flat"), ("status",), ("hangup",)):
        result = callbox(*args, "--control", control)
        assert result.exit_code == 3, args
        assert "the callbox daemon is not running" in result.stderr


def record(peer: str, *, ago_s: float, answered: bool, direction: str = "out") -> CallRecord:
    started = time.time() - ago_s
    return CallRecord(
        call_id=f"call-{peer}-{ago_s}",
        peer=peer,
        peer_name=peer.capitalize(),
        direction=direction,
        video=True,
        started_at=started,
        answered_at=started + 2 if answered else None,
        ended_at=started + 32 if answered else started + 30,
        status="COMPLETE" if answered else "NOANSWER",
        missed=not answered and direction == "in",
        note="door opened x1" if answered else "",
    )


async def write_log(state: Path, records: list[CallRecord]) -> None:
    log = CallLog(state / "calls.sqlite")
    await log.open()
    try:
        for item in records:
            await log.add(item)
    finally:
        await log.close()


def test_log_prints_the_calls_newest_first(door: Path) -> None:
    assert callbox("log", "--config", door).stdout == "no calls yet\n"
    asyncio.run(
        write_log(
            door.parent / "state",
            [
                record("flat", ago_s=600, answered=True),
                record("flat", ago_s=60, answered=False, direction="in"),
            ],
        )
    )

    result = callbox("log", "--config", door)

    assert result.exit_code == 0, result.output
    newest, oldest = result.stdout.splitlines()
    assert "<- Flat" in newest and "NOANSWER" in newest and "MISSED" in newest
    assert "-> Flat" in oldest and "COMPLETE" in oldest and "30 s" in oldest
    assert "(door opened x1)" in oldest
    lines = callbox("log", "--config", door, "--json", "--limit", "1").stdout.splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["NOANSWER"]


def test_safe_state_on_the_simulated_board(door: Path) -> None:
    result = callbox("safe-state", "--config", door)
    assert result.exit_code == 0
    assert "simulated board: no door relay or screen" in result.stdout


def pi_door_with_mock_pins(door: Path) -> None:
    text = door.read_text().replace('board = "sim"', 'board = "pi"')
    door.write_text(text + '\n[relay]\npin = "GPIO24"\n\n[gpio]\npin_factory = "mock"\n')


def test_safe_state_releases_the_configured_relay(door: Path) -> None:
    pi_door_with_mock_pins(door)
    result = callbox("safe-state", "--config", door)
    assert result.exit_code == 0, result.output
    assert "door relay on GPIO24 inactive" in result.stdout


def test_safe_state_switches_a_blanked_screen_back_on(door: Path, tmp_path: Path) -> None:
    pi_door_with_mock_pins(door)
    power = make_sim_backlight_tree(tmp_path / "sysfs", "panel") / "bl_power"
    power.write_text("1\n")  # the daemon died with the handset at the face
    door.write_text(
        door.read_text() + f'\n[backlight]\nsysfs_root = "{tmp_path / "sysfs"}"\ndevice = "panel"\n'
    )
    result = callbox("safe-state", "--config", door)
    assert result.exit_code == 0, result.output
    assert "screen on" in result.stdout
    assert power.read_text().strip() == "0"


def test_safe_state_still_works_when_the_file_no_longer_validates(door: Path) -> None:
    pi_door_with_mock_pins(door)
    door.write_text(door.read_text().replace("ring_timeout_s = 30", "ring_timeout_s = -1"))

    result = callbox("safe-state", "--config", door)

    assert result.exit_code == 0, result.output
    assert "call.ring_timeout_s" in result.stderr
    assert "door relay on GPIO24 inactive" in result.stdout


def editor_script(tmp_path: Path, old: str, new: str) -> str:
    """An $EDITOR that replaces ``old`` with ``new`` in the file it is given."""
    script = tmp_path / "editor.py"
    script.write_text(
        "import pathlib, sys\n"
        "path = pathlib.Path(sys.argv[1])\n"
        f"path.write_text(path.read_text().replace({old!r}, {new!r}))\n"
    )
    return f"{sys.executable} {script}"


def test_config_edit_installs_a_valid_edit(door: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv(
        "EDITOR", editor_script(tmp_path, "ring_timeout_s = 30", "ring_timeout_s = 25")
    )
    monkeypatch.delenv("VISUAL", raising=False)
    result = callbox("config", "--config", door, "edit", "--control", tmp_path / "none.sock")
    assert result.exit_code == 0, result.output
    assert "ring_timeout_s = 25" in door.read_text()
    assert door.with_name("callbox.toml.bak").exists()


def test_config_edit_refuses_an_invalid_edit(door: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv(
        "EDITOR", editor_script(tmp_path, "ring_timeout_s = 30", "ring_timeout_s = -1")
    )
    monkeypatch.delenv("VISUAL", raising=False)
    before = door.read_bytes()
    result = CliRunner().invoke(main, ["config", "--config", str(door), "edit"], input="n\n")
    assert result.exit_code == 2
    assert "call.ring_timeout_s" in result.output
    assert door.read_bytes() == before
