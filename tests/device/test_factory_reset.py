"""``callbox factory-reset`` on a tree set up by first boot.

It removes what it lists, keeps the rest, and first boot runs again; the daemon's safe state without
a configuration.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemon_helpers import CALLBOX, callbox, clean_env, door_toml
from firstboot_helpers import SECRETS, all_text, make_root, need_ssh_keygen, write_installer_file

from device.cli import main
from device.firstboot import FirstBoot, RootFs

GONE = [
    "var/lib/callbox/keys/identity.key",
    "var/lib/callbox/calls.sqlite",
    "var/lib/callbox/snapshots",
    "etc/callbox/callbox.toml",
    "etc/callbox/callbox.toml.bak",
    "etc/callbox/secrets",
    "var/lib/callbox-broker/credentials/phone.password",
    "etc/callbox/web.key",
    "etc/callbox/site-ca.crt",
    "etc/callbox/turn.secret",
    "etc/NetworkManager/system-connections/callbox-wifi-0.nmconnection",
    "etc/NetworkManager/system-connections/callbox-wifi-1.nmconnection",
    "etc/modprobe.d/callbox-wifi-country.conf",
    "home/anna/.ssh/authorized_keys",
    "etc/sudoers.d/callbox-admin",
    "etc/ssh/ssh_host_ed25519_key",
    "var/lib/callbox-firstboot/done",
    "boot/firmware/callbox.toml.applied",
]
KEPT = [
    "etc/hostname",
    "etc/timezone",
    "etc/ssh/sshd_config.d/00-callbox.conf",
    "home/anna/.bashrc",
    "etc/NetworkManager/system-connections/mine.nmconnection",
]


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """A tree after first boot, with a call log, snapshots, a paired phone and a TLS key."""
    need_ssh_keygen()
    root = make_root(tmp_path / "root")
    write_installer_file(root)
    assert FirstBoot(RootFs(root)).run().error is None
    state = root / "var/lib/callbox"
    (state / "calls.sqlite").write_bytes(b"SQLite format 3\0")
    (state / "snapshots").mkdir()
    (state / "snapshots/visitor.jpg").write_bytes(b"\xff\xd8")
    (root / "etc/callbox/callbox.toml.bak").write_text("old")
    (root / "var/lib/callbox-broker/credentials").mkdir(parents=True)
    (root / "var/lib/callbox-broker/credentials/phone.password").write_text("x")
    (root / "etc/callbox/web.key").write_text("key")
    (root / "etc/callbox/turn.secret").write_text("the-site-turn-secret-0123456789\n")
    (root / "etc/NetworkManager/system-connections/mine.nmconnection").write_text("[wifi]\n")
    return root


def reset(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["factory-reset", *args])
    return result.exit_code, result.stdout, result.stderr


def test_factory_reset_removes_what_it_lists(unit: Path) -> None:
    code, out, err = reset("--root", str(unit), "--yes")
    assert code == 0, err
    for path in GONE:
        assert not (unit / path).exists(), path
        top = "/" + path.split("/snapshots")[0] + ("/snapshots" if "snapshots" in path else "")
        if "keys/" in path:
            top = "/var/lib/callbox/keys"
        elif "secrets" in path:
            top = "/etc/callbox/secrets"
        elif "callbox-broker" in path:
            top = "/var/lib/callbox-broker"
        assert f"removed {top}  (" in out, f"{top} not reported:\n{out}"
    for path in KEPT:
        assert (unit / path).exists(), path
    assert "first boot is armed" in out
    assert not any(secret in all_text(unit / "etc") for secret in SECRETS)
    assert reset("--root", str(unit), "--yes")[1].startswith("nothing to remove")


def test_first_boot_runs_again_after_a_reset(unit: Path) -> None:
    before = (unit / "etc/ssh/ssh_host_ed25519_key.pub").read_text()
    assert reset("--root", str(unit), "--yes")[0] == 0
    write_installer_file(unit)
    assert FirstBoot(RootFs(unit)).run().error is None
    assert (unit / "var/lib/callbox/keys/identity.key").exists()
    assert (unit / "etc/ssh/ssh_host_ed25519_key.pub").read_text() != before, "new host keys"
    assert (unit / "etc/passwd").read_text().count("\nanna:") == 1


def test_without_yes_and_without_a_terminal_nothing_is_removed(unit: Path) -> None:
    code, out, err = reset("--root", str(unit))
    assert code == 1
    assert "refused without --yes" in err
    assert "/var/lib/callbox/keys  (identity keys)" in out, "the list is shown"
    assert all((unit / path).exists() for path in GONE)
    code, out, _ = reset("--root", str(unit), "--dry-run")
    assert code == 0 and "/etc/callbox/secrets" in out
    assert all((unit / path).exists() for path in GONE)


async def test_the_daemon_waits_in_the_safe_state_and_says_why(tmp_path: Path) -> None:
    config, control = tmp_path / "callbox.toml", tmp_path / "control.sock"
    config.write_text('role = "door"\naddress = "door"\nsite = "home"\ntypo = 1\n')
    env = {**clean_env(), "CALLBOX_FIRST_BOOT_STATE": str(tmp_path / "none")}
    process = await asyncio.create_subprocess_exec(
        CALLBOX, "run", "--config", str(config), "--control", str(control),
        "--no-first-boot", "--wait-on-bad-config",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        for _ in range(500):
            if control.exists():
                break
            await asyncio.sleep(0.02)
        status = await callbox("status", "--control", control, env=env)
        assert status.code == 1
        assert "SAFE STATE" in status.stdout
        assert f"{config}: typo: unknown key" in status.stdout
        as_json = json.loads((await callbox("status", "--json", "--control", control)).stdout)
        assert as_json["state"] == "safe" and as_json["running"] is False

        refused = await callbox("config", "--config", config, "validate")
        assert refused.code == 2
        config.write_text(door_toml(port=1883, password="x", state_dir=tmp_path / "state"))
        process.send_signal(signal.SIGHUP)
        assert await asyncio.wait_for(process.wait(), 10) == 0, "valid now: systemd restarts it"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    _, err = await process.communicate()
    assert "safe state" in err.decode()
