"""``[access]`` in callbox.toml and ``callbox access add | remove | list`` end to end.

The CLI as a real process (the installed script) for the PIN on stdin, CliRunner for the
rest; the list it writes is the one `AccessControl` checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from device.cli import main
from device.config import Apply, ConfigError, apply_of, parse_config
from services.access import AccessControl, AccessStore

CALLBOX = Path(sys.executable).with_name("callbox")
DOOR = 'role = "door"\naddress = "door"\nsite = "home"\nboard = "sim"\ntargets = ["flat"]\n'


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "callbox.toml"
    path.write_text(DOOR + f'state_dir = "{tmp_path / "state"}"\n[access]\nenabled = true\n')
    return path


def run(config: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["access", *args, "--config", str(config)], input=stdin)
    return result.exit_code, result.output


def check(config: Path, code: str) -> bool:
    access = AccessControl(AccessStore(config.parent / "state"))
    return asyncio.run(access.check_code(code, via="test")).granted


def test_a_pin_on_stdin_is_added_hashed_and_opens(config: Path) -> None:
    done = subprocess.run(
        [CALLBOX, "access", "add", "--name", "Smith", "--flat", "12", "--pin",
         "--config", config],
        input="2580\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"added pin [0-9a-f]{6} for Smith \(flat 12\)\n", done.stdout)
    raw = (config.parent / "state" / "access.json").read_bytes()
    assert b"2580" not in raw
    assert check(config, "2580") and not check(config, "2581")


def test_weak_and_duplicate_pins_are_refused(config: Path) -> None:
    for pin, why in (("123", "4 to 12 digits"), ("0000", "same digit"), ("4321", "consecutive")):
        code, out = run(config, "add", "--name", "X", "--pin", stdin=pin + "\n")
        assert code != 0 and why in out, out
    assert run(config, "add", "--name", "A", "--pin", stdin="2580\n")[0] == 0
    code, out = run(config, "add", "--name", "B", "--pin", stdin="2580\n")
    assert code != 0 and "already in use" in out


def test_a_generated_visitor_code_is_printed_once_and_works_once(config: Path) -> None:
    code, out = run(config, "add", "--name", "Parcel", "--visitor", "--generate", "--once")
    assert code == 0, out
    match = re.search(r"visitor code: \*(\d{6})#", out)
    assert match
    listed = run(config, "list")[1]
    assert match[1] not in listed and "once" in listed and "never" in listed
    assert check(config, match[1]) and not check(config, match[1])
    assert "used" in run(config, "list")[1]


def test_cards_schedules_and_windows_are_listed_and_removed(config: Path) -> None:
    assert (
        run(config, "add", "--name", "Jones", "--flat", "3", "--card", "wiegand26:12:34567")[0] == 0
    )
    code, out = run(config, "add", "--name", "Jones", "--card", "wiegand26:12:34567")
    assert code != 0 and "already in use" in out
    code, out = run(config, "add", "--name", "Bad", "--card", "wiegand26:12")
    assert code != 0 and "malformed" in out
    code, out = run(
        config, "add", "--name", "Cleaner", "--pin", "--schedule", "08:00-10:00",
        "--days", "mon,wed", "--until", "2030-01-01T00:00", stdin="3579\n",
    )  # fmt: skip
    assert code == 0, out
    rows = json.loads(run(config, "list", "--json")[1])
    assert [(r["kind"], r["name"]) for r in rows] == [
        ("card wiegand26", "Jones"),
        ("pin", "Cleaner"),
    ]
    assert (
        rows[1]["schedule"] == "mon,wed 08:00-10:00"
        and "until 2030-01-01T00:00" in rows[1]["validity"]
    )
    assert "hash" not in json.dumps(rows) and "34567" not in json.dumps(rows)
    assert run(config, "remove", rows[0]["id"])[0] == 0
    assert run(config, "remove", "Cleaner")[0] == 0
    code, out = run(config, "remove", "Cleaner")
    assert code != 0 and "no entry" in out
    assert "no codes or cards" in run(config, "list")[1]


def test_the_list_shows_which_card_and_code_pair(config: Path) -> None:
    card = ("add", "--name", "Jones", "--flat", "3", "--card", "wiegand26:12:34567")
    assert run(config, *card)[0] == 0
    assert run(config, "add", "--name", "Jones", "--flat", "3", "--pin", stdin="3579\n")[0] == 0
    assert run(config, "add", "--name", "Jones", "--flat", "4", "--pin", stdin="3519\n")[0] == 0
    rows = json.loads(run(config, "list", "--json")[1])
    assert [r["pair"] for r in rows] == [f"pin {rows[1]['id']}", f"card {rows[0]['id']}", "-"]
    assert "pair" in run(config, "list")[1].splitlines()[0]


def test_the_cli_needs_one_kind_and_names_a_broken_file(config: Path) -> None:
    code, out = run(config, "add", "--name", "X", "--pin", "--visitor", stdin="2580\n")
    assert code != 0 and "exactly one of" in out
    broken = config.parent / "state" / "access.json"
    broken.parent.mkdir()
    broken.write_text("{")
    code, out = run(config, "list")
    assert code != 0 and str(broken) in out
    assert broken.read_text() == "{"


def test_the_access_section_checks_and_applies_as_a_devices_change() -> None:
    config = parse_config(DOOR + "[access]\nenabled = true\nmax_attempts = 5\n")
    assert config.access.policy().max_attempts == 5
    assert apply_of("access") is Apply.DEVICES
    with pytest.raises(ConfigError, match=r"access\.lockout_max_s: is less than lockout_s"):
        parse_config(DOOR + "[access]\nlockout_s = 60.0\nlockout_max_s = 30.0\n")
    indoor = 'role = "indoor"\naddress = "flat"\nsite = "home"\n'
    with pytest.raises(ConfigError, match=r"access\.enabled: only a door station"):
        parse_config(indoor + "[access]\nenabled = true\n")
    with pytest.raises(ConfigError, match=r"access\.max_attempts"):
        parse_config(DOOR + "[access]\nmax_attempts = 0\n")


def test_status_prints_the_entrance(capsys: pytest.CaptureFixture[str]) -> None:
    from device.cli._admin import _echo_access

    _echo_access(
        {
            "enabled": True,
            "entries": 2,
            "keypad_locked_until": "2026-12-07T18:03+01:00",
            "cards_locked_until": None,
            "last_attempts": [
                {"at": "2026-12-07T18:02+01:00", "via": "keypad", "kind": "code",
                 "granted": False, "who": "", "reason": "no such code"},
                {"at": "2026-12-07T18:02+01:00", "via": "entrance", "kind": "card",
                 "granted": False, "who": "", "reason": "unknown card", "card": "nfc:04a1b2c3"},
            ],
        }
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "2 entries; keypad LOCKED until 2026-12-07T18:03+01:00" in out
    assert "card at entrance: refused (unknown card) nfc:04a1b2c3" in out
    _echo_access({"enabled": False})
    assert "access codes and cards: off" in capsys.readouterr().out


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand a file to another user")
def test_root_leaves_the_list_to_the_daemons_user(config: Path) -> None:
    state = config.parent / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)  # the state directory is the daemon's (callbox) user's
    assert run(config, "add", "--name", "Smith", "--pin", stdin="2580\n")[0] == 0
    for name in ("access.json", "access.lock"):
        info = (state / name).stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o600)
