"""``callbox site`` without a broker: the admin key, the working list and its inputs."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from click.testing import CliRunner, Result

from device.cli import main
from services.signaling.identity import Identity
from services.signaling.profile import signed_profile


def site(directory: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["site", "--dir", str(directory), *args])


def test_init_makes_a_private_key_once_and_prints_what_units_pin(tmp_path: Path) -> None:
    directory = tmp_path / "tower"
    first = site(directory, "init", "--site", "tower")
    assert first.exit_code == 0, first.output
    assert "made the site admin key" in first.output
    key_line = next(line for line in first.output.splitlines() if line.startswith("admin_key"))
    assert stat.S_IMODE((directory / "admin.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    again = site(directory, "init", "--site", "tower")
    assert again.exit_code == 0 and "kept the site admin key" in again.output
    assert key_line in again.output, "the same key"
    (directory / "admin.key").chmod(0o644)
    loose = site(directory, "init", "--site", "tower")
    assert loose.exit_code == 1 and "it must be 0600" in loose.output


def test_add_from_keys_show_output_or_a_profile_then_rights_remove_list(tmp_path: Path) -> None:
    directory = tmp_path / "tower"
    assert site(directory, "init", "--site", "tower").exit_code == 0
    door, phone = Identity.generate(), Identity.generate()
    door_json = door.public_keys.to_json()
    shown = tmp_path / "door.keys"  # what `callbox keys show` prints on the door
    shown.write_text(
        f"address:     door-a\nfingerprint: {door.public_keys.fingerprint()}\n"
        f"key:         {door_json['sign']}.{door_json['dh']}\n"
    )
    added = site(directory, "add", "door-a", "--role", "door", "--key-file", str(shown))
    assert added.exit_code == 0, added.output
    assert "not published yet" in added.output
    profile = tmp_path / "phone.json"  # a phone's profile, as retained on the broker
    profile.write_text(json.dumps(signed_profile(phone, "f12-phone", "Anna", "web")))
    added = site(directory, "add", "f12-phone", "--flat", "12", "--key-file", str(profile))
    assert added.exit_code == 0, added.output
    assert "f12-phone added (web, flat 12" in added.output, "the role from the profile"
    assert site(directory, "rights", "f12-phone", "unlock,monitor").exit_code == 0
    bad = site(directory, "rights", "f12-phone", "unlock,fly")
    assert bad.exit_code == 2 and "'fly' is not a right" in bad.output
    listed = json.loads(site(directory, "list", "--json").output)
    assert listed["site"] == "tower" and listed["version"] == 0
    (door_entry, phone_entry) = listed["entries"]
    assert door_entry["keys"] == door_json and door_entry["name"] == "door-a"
    assert phone_entry["name"] == "Anna" and phone_entry["rights"] == ["monitor", "unlock"]
    text = site(directory, "list").output
    assert "last published version none" in text and phone.public_keys.fingerprint() in text
    same_keys = site(directory, "add", "door-b", "--role", "door", "--key-file", str(shown))
    assert same_keys.exit_code == 2 and "same keys as door-a" in same_keys.output
    assert site(directory, "remove", "door-a").exit_code == 0
    assert [
        e["address"] for e in json.loads(site(directory, "list", "--json").output)["entries"]
    ] == ["f12-phone"]
