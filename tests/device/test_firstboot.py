"""First boot on a real directory tree.

Every ``[system]`` key applied, secrets moved off the boot partition, a bad file changing nothing,
an interrupted run finished by the next.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemon_helpers import callbox
from firstboot_helpers import (
    BROKER_PASSWORD,
    CABIN_PSK,
    CALLBOX_UID,
    HOME_PSK,
    INSTALLER_FILE,
    SECRETS,
    SSH_KEY,
    TURN_SECRET,
    all_text,
    make_root,
    need_ssh_keygen,
    ssh_keygen_fingerprint,
    write_installer_file,
)

from device.cli import main
from device.config import ConfigError, load_config, parse_config
from device.config._system import ssh_public_key
from device.firstboot import RootFs
from device.firstboot._firstboot import FirstBoot, FirstBootReport, first_boot_error
from device.firstboot._secrets import wifi_secret_path
from device.firstboot._system import SSHD_DROP_IN, FirstBootError, sshd_drop_in

STEPS = [
    "host-keys", "machine-id", "import", "import:secrets", "import:site-ca", "import:config",
    "hostname",
    "timezone", "admin", "sshd", "wifi", "identity", "retire:copy", "retire:erase",
    "grow-root", "done",
]  # fmt: skip


class Interrupted(Exception):
    """The power went off."""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    need_ssh_keygen()
    root = make_root(tmp_path / "root")
    write_installer_file(root)
    return root


def first_boot(root: Path, stop_at: str | None = None) -> FirstBootReport:
    def step(name: str) -> None:
        if name == stop_at:
            raise Interrupted(name)

    return FirstBoot(RootFs(root), on_step=step).run()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def owner(path: Path) -> tuple[int, int]:
    info = path.lstat()
    return info.st_uid, info.st_gid


def assert_applied(root: Path) -> None:
    """Everything the installer's file says, in place, once, with its secrets off /boot."""
    etc = root / "etc"
    assert (etc / "hostname").read_text() == "flat-1\n", "from the address: no '_' in host names"
    assert "127.0.1.1\tflat-1" in (etc / "hosts").read_text()
    assert "debian" not in (etc / "hosts").read_text()
    assert os.readlink(etc / "localtime") == "../usr/share/zoneinfo/Europe/Berlin"
    assert (etc / "localtime").read_bytes() == b"TZif2 Berlin"
    assert (etc / "timezone").read_text() == "Europe/Berlin\n"

    # the administrator: once, no password, in the callbox group, sudo, its key
    passwd = [ln for ln in (etc / "passwd").read_text().splitlines() if ln.startswith("anna:")]
    assert passwd == ["anna:x:1000:1000:callbox administrator:/home/anna:/bin/bash"]
    shadow = [ln for ln in (etc / "shadow").read_text().splitlines() if ln.startswith("anna:")]
    assert len(shadow) == 1 and shadow[0].split(":")[1] == "*", "no password can log in"
    assert (etc / "group").read_text().count("anna") == 2  # its own group, and callbox's member
    assert f"callbox:x:{CALLBOX_UID}:anna" in (etc / "group").read_text()
    assert "callbox:!::anna" in (etc / "gshadow").read_text()
    assert (mode(etc / "shadow"), owner(etc / "shadow")) == (0o640, (0, 42))
    keys = root / "home/anna/.ssh/authorized_keys"
    assert keys.read_text().splitlines()[1:] == [SSH_KEY]
    assert (mode(keys), owner(keys)) == (0o600, (1000, 1000))
    assert (mode(keys.parent), owner(keys.parent)) == (0o700, (1000, 1000))
    assert (root / "home/anna/.bashrc").read_text() == "# bashrc\n"
    sudoers = etc / "sudoers.d/callbox-admin"
    assert "anna ALL=(ALL:ALL) NOPASSWD: ALL" in sudoers.read_text()
    assert mode(sudoers) == 0o440

    drop_in = (root / SSHD_DROP_IN.lstrip("/")).read_text()
    for setting in (
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        "AllowUsers anna",
    ):
        assert f"\n{setting}\n" in drop_in

    # Wi-Fi: NetworkManager keyfiles, root 0600, the first network preferred
    connections = sorted((etc / "NetworkManager/system-connections").iterdir())
    assert [p.name for p in connections] == [
        "callbox-wifi-0.nmconnection",
        "callbox-wifi-1.nmconnection",
    ]
    home, cabin = (p.read_text() for p in connections)
    assert all(mode(p) == 0o600 and owner(p) == (0, 0) for p in connections)
    assert "ssid=Home net\n" in home and f"psk={HOME_PSK}\n" in home
    assert "autoconnect-priority=2" in home and "hidden" not in home
    as_bytes = "".join(f"{b};" for b in b"cabin;5G")
    assert f"ssid={as_bytes}\n" in cabin and "hidden=true" in cabin
    assert f"psk={CABIN_PSK}\n" in cabin
    assert "ieee80211_regdom=DE" in (etc / "modprobe.d/callbox-wifi-country.conf").read_text()

    # secrets: 0600 files on the root filesystem, named by the installed configuration
    config = load_config(etc / "callbox/callbox.toml")
    assert config.broker.password == "" and config.broker.password_file
    assert config.system.wifi[0].psk == ""
    secret_files = {
        config.broker.password_file: (BROKER_PASSWORD, (CALLBOX_UID, CALLBOX_UID)),
        config.system.wifi[0].psk_file: (HOME_PSK, (0, 0)),
        config.system.wifi[1].psk_file: (CABIN_PSK, (0, 0)),
    }
    assert config.system.wifi[0].psk_file == wifi_secret_path("Home net")
    for device_path, (value, expected_owner) in secret_files.items():
        path = root / device_path.lstrip("/")
        assert path.read_text() == value + "\n"
        assert (mode(path), owner(path)) == (0o600, expected_owner), device_path
    installed = (etc / "callbox/callbox.toml").read_text()
    assert "# the installer's file" in installed, "comments kept"
    assert BROKER_PASSWORD not in installed and HOME_PSK not in installed
    assert TURN_SECRET in installed, "no credential_file for TURN: kept on the root filesystem"
    assert mode(etc / "callbox/callbox.toml") == 0o640
    assert owner(etc / "callbox/callbox.toml") == (0, CALLBOX_UID)

    # the site CA the installer put on the boot partition: pinned from the root filesystem
    pinned = etc / "callbox/site-ca.crt"
    assert config.broker.tls and config.broker.tls_ca == "/etc/callbox/site-ca.crt"
    assert pinned.read_bytes() == (root.parent / "hosting-unit-tls/ca.crt").read_bytes()
    assert (mode(pinned), owner(pinned)) == (0o644, (0, 0))

    # the boot partition: no secret left, a readable copy of what was applied
    boot = root / "boot/firmware"
    assert sorted(p.name for p in boot.iterdir()) == ["callbox.toml.applied", "site-ca.crt"]
    assert not any(secret in all_text(boot) for secret in SECRETS)
    applied = (boot / "callbox.toml.applied").read_text()
    assert "applied this file" in applied and 'address = "flat_1"' in applied

    # the host and the endpoint
    for kind in ("rsa", "ecdsa", "ed25519"):
        key = etc / f"ssh/ssh_host_{kind}_key"
        assert mode(key) == 0o600 and key.with_name(key.name + ".pub").exists()
    machine_id = (etc / "machine-id").read_text()
    assert len(machine_id) == 33 and int(machine_id, 16) >= 0
    identity = root / "var/lib/callbox/keys/identity.key"
    assert (mode(identity), owner(identity)) == (0o600, (CALLBOX_UID, CALLBOX_UID))
    assert (root / "var/lib/callbox-firstboot/done").exists()
    assert not (root / "var/lib/callbox-firstboot/error").exists()


def test_every_field_is_applied(root: Path) -> None:
    report = first_boot(root)
    assert report.error is None
    assert_applied(root)
    assert any("administrator anna with 1 SSH key(s)" in line for line in report.done)
    assert any("root partition: skipped: not the running system" in line for line in report.done)


def test_a_second_run_changes_nothing_and_duplicates_nothing(root: Path) -> None:
    first_boot(root)
    etc = root / "etc"
    before = {p: p.read_bytes() for p in etc.rglob("*") if p.is_file() and not p.is_symlink()}
    report = first_boot(root)
    assert report.error is None
    assert_applied(root)
    after = {p: p.read_bytes() for p in etc.rglob("*") if p.is_file() and not p.is_symlink()}
    assert after == before


@pytest.mark.parametrize("step", STEPS)
def test_an_interrupted_first_boot_is_finished_by_the_next(root: Path, step: str) -> None:
    with pytest.raises(Interrupted):
        first_boot(root, stop_at=step)
    assert not (root / "var/lib/callbox-firstboot/done").exists()
    report = first_boot(root)
    assert report.error is None
    assert_applied(root)


def test_an_interrupted_erase_keeps_a_new_installer_file(root: Path) -> None:
    """An erase list from an interrupted run erases only the files it listed."""
    with pytest.raises(Interrupted):
        first_boot(root, stop_at="retire:erase")
    new = INSTALLER_FILE.replace('name = "Flat 1"', 'name = "Flat one"')
    write_installer_file(root, new)  # and its passphrase file again
    assert first_boot(root).error is None
    assert load_config(root / "etc/callbox/callbox.toml").name == "Flat one"
    assert not (root / "boot/firmware/cabin.psk").exists()


def test_a_new_installer_file_is_applied_on_the_next_boot(root: Path) -> None:
    assert first_boot(root).error is None
    text = INSTALLER_FILE.split("[[system.wifi]]")[0] + '[[system.wifi]]\nssid = "Other"\n'
    text += 'psk = "another passphrase"\n'
    (root / "boot/firmware/callbox.toml").write_text(text.replace("Europe/Berlin", "UTC"))
    assert first_boot(root).error is None
    connections = sorted((root / "etc/NetworkManager/system-connections").iterdir())
    assert [p.name for p in connections] == ["callbox-wifi-0.nmconnection"], "stale one removed"
    assert "ssid=Other" in connections[0].read_text()
    assert (root / "etc/timezone").read_text() == "UTC\n"
    users = [line.split(":")[0] for line in (root / "etc/passwd").read_text().splitlines()]
    assert users == ["root", "callbox", "anna"]


def tree(root: Path) -> dict[str, bytes]:
    """Every file and link except first boot's own records and the host's identity."""
    skip = ("etc/ssh/", "etc/machine-id", "var/lib/callbox-firstboot/", "run/")
    return {
        str(p.relative_to(root)): p.read_bytes() if not p.is_symlink() else b"->"
        for p in sorted(root.rglob("*"))
        if (p.is_file() or p.is_symlink()) and not str(p.relative_to(root)).startswith(skip)
    }


BAD = [
    ('ssh_keys = ["{SSH_KEY}"]', 'ssh_keys = ["ssh-ed25519 AAAAnotbase64!"]', "system.admin.ssh_keys.0", "not base64"),  # noqa: E501
    ('ssh_keys = ["{SSH_KEY}"]', "ssh_keys = []", "system.admin.ssh_keys", "at least 1"),
    ('user = "anna"', 'user = "root"', "system.admin.user", "is a system account"),
    ('user = "anna"', 'user = "Anna Smith"', "system.admin.user", "not a user name"),
    ('timezone = "Europe/Berlin"', 'timezone = "Mars/Base"', "system.timezone", "not a time zone of this system"),  # noqa: E501
    ('timezone = "Europe/Berlin"', 'timezone = "../etc/passwd"', "system.timezone", "not a time zone name"),  # noqa: E501
    ('wifi_country = "DE"', 'wifi_country = "de"', "system.wifi_country", "two-letter country"),
    ('wifi_country = "DE"', "", "system.wifi_country", "is required with [[system.wifi]]"),
    (f'psk = "{HOME_PSK}"', 'psk = "short"', "system.wifi.0.psk", "it has 5 characters"),
    (f'psk = "{HOME_PSK}"', "", "system.wifi.0.psk", "is required"),
    ('hidden = true', 'hidden = "yes"', "system.wifi.1.hidden", "must be true or false"),
    ('hidden = true', 'hiden = true', "system.wifi.1.hiden", "did you mean 'hidden'"),
    ('psk_file = "/boot/firmware/cabin.psk"', 'psk_file = "/boot/firmware/none.psk"', "system.wifi.1.psk_file", "no such file"),  # noqa: E501
    ('timezone = "Europe/Berlin"', 'hostname = "Flat_1"', "system.hostname", "not a host name"),
    ('[system]', '[system]\nlocale = "de_DE"', "system.locale", "unknown key"),
    ("/boot/firmware/site-ca.crt", "/boot/firmware/cabin.psk", "broker.tls_ca",
     "not a PEM certificate"),
    ('tls_ca = "/boot/firmware/site-ca.crt"\n', "", "broker.tls_ca",
     "is required to reach the broker at door.local"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "key", "reason"), BAD)
def test_a_bad_file_is_refused_and_nothing_is_applied(
    root: Path, old: str, new: str, key: str, reason: str
) -> None:
    text = INSTALLER_FILE.replace(old.replace("{SSH_KEY}", SSH_KEY), new)
    assert text != INSTALLER_FILE
    write_installer_file(root, text)
    before = tree(root)
    report = first_boot(root)
    assert report.error is not None
    line = next(line for line in report.error.splitlines() if f": {key}: " in line)
    assert line.startswith(f"/boot/firmware/callbox.toml: {key}: ")
    assert reason in line
    assert tree(root) == before, "nothing applied, the boot file left in place"
    assert not any(s in report.error for s in SECRETS), "a reason never shows a secret"
    error = first_boot_error(root / "var/lib/callbox-firstboot")
    assert error is not None and line in error
    assert line in (root / "run/issue.d/callbox-first-boot.issue").read_text()


def test_a_fixed_file_clears_the_error(root: Path) -> None:
    write_installer_file(root, INSTALLER_FILE.replace('wifi_country = "DE"', ""))
    assert first_boot(root).error is not None
    write_installer_file(root)
    assert first_boot(root).error is None
    assert first_boot_error(root / "var/lib/callbox-firstboot") is None
    assert not (root / "run/issue.d/callbox-first-boot.issue").exists()


def test_the_command_line(root: Path) -> None:
    bad = INSTALLER_FILE.replace('user = "anna"', 'user = "root"')
    write_installer_file(root, bad)
    refused = CliRunner().invoke(main, ["first-boot", "--root", str(root)])
    assert refused.exit_code == 2
    assert "/boot/firmware/callbox.toml: system.admin.user: 'root' is a system account" in (
        refused.stderr
    )
    write_installer_file(root)
    ok = CliRunner().invoke(main, ["first-boot", "--root", str(root)])
    assert ok.exit_code == 0, ok.output
    assert "first boot: wifi" in ok.stdout and "first boot: done" in ok.stdout
    assert_applied(root)


async def test_status_shows_what_first_boot_refused(root: Path) -> None:
    text = INSTALLER_FILE.replace('wifi_country = "DE"', "")
    await asyncio.to_thread(write_installer_file, root, text)
    assert (await asyncio.to_thread(first_boot, root)).error is not None
    env = {"CALLBOX_FIRST_BOOT_STATE": str(root / "var/lib/callbox-firstboot")}
    result = await callbox("status", "--control", root / "none.sock", env=env)
    assert result.code == 3, "the daemon is not running"
    assert "FIRST BOOT REFUSED /boot/firmware/callbox.toml" in result.stdout
    assert "system.wifi_country: is required with [[system.wifi]]" in result.stdout


def test_without_an_administrator_nobody_may_log_in(root: Path) -> None:
    text = INSTALLER_FILE.split("[system.admin]")[0]
    write_installer_file(root, text)
    assert first_boot(root).error is None
    drop_in = (root / SSHD_DROP_IN.lstrip("/")).read_text()
    assert "DenyUsers *" in drop_in and "AllowUsers" not in drop_in
    assert sshd_drop_in("anna").count("AllowUsers anna") == 1


def test_without_any_configuration_only_the_host_is_set_up(root: Path) -> None:
    (root / "boot/firmware/callbox.toml").unlink()
    report = first_boot(root)
    assert report.error is None
    assert (root / "etc/ssh/ssh_host_ed25519_key").exists()
    assert "DenyUsers *" in (root / SSHD_DROP_IN.lstrip("/")).read_text()
    assert not (root / "etc/callbox/callbox.toml").exists()


def test_ssh_public_keys_are_checked_as_openssh_does(tmp_path: Path) -> None:
    need_ssh_keygen()
    good = []
    for kind, bits in (("ed25519", None), ("ecdsa", "384"), ("rsa", "3072")):
        path = tmp_path / kind
        size = ["-b", bits] if bits else []
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, *size, "-N", "", "-C", "me@laptop", "-f", str(path)],
            check=True,
        )
        good.append(path.with_suffix(".pub").read_text().strip())
    for line in good:
        assert ssh_public_key(line) == line
        assert ssh_keygen_fingerprint(line, tmp_path)
    ed25519 = good[0].split()
    damaged = f"{ed25519[0]} {ed25519[1][:-8]}AAAAAAA= x"
    mixed = f"ssh-rsa {ed25519[1]}"
    private = (tmp_path / "ed25519").read_text()
    small = tmp_path / "small"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(small)], check=True)  # fmt: skip  # noqa: E501
    cases = [
        (damaged, "damaged"),
        (mixed, "is not a ssh-rsa key"),
        (private, "is a private key"),
        ("ssh-dss AAAAB3NzaC1kc3M= old", "DSA keys are refused"),
        (small.with_suffix(".pub").read_text().strip(), "1024-bit RSA key"),
        ("AAAAC3NzaC1lZDI1NTE5AAAAIKqM9lhJp834", "not an OpenSSH public key line"),
    ]
    for line, reason in cases:
        with pytest.raises(ValueError, match=reason):
            ssh_public_key(line)


def test_the_example_file_documents_every_system_key() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "callbox.example.toml"
    config = parse_config(example.read_text())
    assert config.system.admin is not None and config.system.wifi
    text = example.read_text()
    for key in ("hostname", "timezone", "wifi_country", "grow_root", "user", "ssh_keys", "ssid"):
        assert f"{key} = " in text
    for key in ("psk", "psk_file", "open", "hidden"):
        assert f"{key} = " in text or f"# {key} = " in text


def test_a_password_and_a_password_file_are_refused_together() -> None:
    text = INSTALLER_FILE.replace(
        f'psk = "{HOME_PSK}"', f'psk = "{HOME_PSK}"\npsk_file = "/etc/x.psk"'
    )
    with pytest.raises(ConfigError) as refused:
        parse_config(text)
    assert "system.wifi.0.psk_file: set either psk or psk_file" in str(refused.value)
    assert HOME_PSK not in str(refused.value)


def write_image_role(root: Path, role: str) -> None:
    """What `image-build/build.py --role ROLE` puts in the image."""
    (root / "usr/lib/callbox").mkdir(parents=True, exist_ok=True)
    (root / "usr/lib/callbox/image-role").write_text(role + "\n")


def test_a_role_image_gives_its_role_to_a_file_without_one(root: Path) -> None:
    write_image_role(root, "indoor")
    write_installer_file(root, INSTALLER_FILE.replace('role = "indoor"\n', ""))
    report = first_boot(root)
    assert report.error is None, report.error
    installed = load_config(root / "etc/callbox/callbox.toml")
    assert installed.role == "indoor"
    assert any("role 'indoor' from the indoor image" in line for line in report.done)


def test_on_a_role_image_the_file_s_own_role_wins(root: Path) -> None:
    write_image_role(root, "door")
    report = first_boot(root)
    assert report.error is None, report.error
    assert load_config(root / "etc/callbox/callbox.toml").role == "indoor"
    assert any("sets role 'indoor' on a door image: it wins" in line for line in report.done)


def test_without_a_role_on_the_generic_image_the_file_is_refused(root: Path) -> None:
    write_installer_file(root, INSTALLER_FILE.replace('role = "indoor"\n', ""))
    report = first_boot(root)
    assert report.error is not None and ": role: " in report.error


def test_a_damaged_image_role_file_is_named(root: Path) -> None:
    write_image_role(root, "doorr")
    with pytest.raises(FirstBootError, match=r"/usr/lib/callbox/image-role: 'doorr' is not a role"):
        first_boot(root)


def test_the_site_admin_key_is_pinned_at_first_boot(root: Path) -> None:
    """A building's unit: the boot partition's file pins the site directory's admin key."""
    admin = "FnrfvV8VsR_4RPufmgrP0-A1UKscw_KOkYaKhlls-uM"  # docs/protocol.md's vector key
    boot_file = root / "boot/firmware/callbox.toml"
    text = boot_file.read_text().replace(
        "[system]\n", f'[directory]\nadmin_key = "{admin}"\n\n[system]\n', 1
    )
    boot_file.write_text(text)
    assert first_boot(root).error is None
    installed = load_config(root / "etc/callbox/callbox.toml")
    assert installed.directory.admin_key == admin
    # a key that is not one is refused at first boot, naming the key
    boot_file.write_text(text.replace(admin, "not-a-key"))
    report = first_boot(root)
    assert report.error is not None and "directory.admin_key" in report.error
