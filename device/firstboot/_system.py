"""The operating-system half of first boot: each function applies one thing to a `RootFs`.

Each can run again without harm (it converges on the same files, never duplicates a user or a key).

Choices, for Debian bookworm (docs/operations.md, "First boot"):

- users: ``/etc/passwd``, ``/etc/shadow``, ``/etc/group`` and ``/etc/gshadow`` are edited
  here, in the format ``useradd`` writes, on the device and in an image tree alike (one
  code path, tested; nothing else changes accounts during first boot);
- Wi-Fi: NetworkManager keyfiles (root 0600) in ``/etc/NetworkManager/system-connections``,
  the radio's country as the ``cfg80211`` module option ``ieee80211_regdom``;
- the root partition: ``growpart`` then ``resize2fs`` on the running system (ext4 grows
  while mounted).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from device.config import AdminConfig
from device.firstboot._rootfs import Account, RootFs
from hal.errors import CallboxError

__all__ = [
    "ADMIN_SUDOERS",
    "NM_CONNECTIONS",
    "SSHD_DROP_IN",
    "WIFI_COUNTRY_CONF",
    "FirstBootError",
    "WifiNetwork",
    "apply_admin",
    "apply_hostname",
    "apply_sshd",
    "apply_timezone",
    "apply_wifi",
    "ensure_host_keys",
    "ensure_machine_id",
    "grow_root",
    "sshd_drop_in",
    "wifi_keyfile",
]

_log = logging.getLogger(__name__)

SSHD_DROP_IN = "/etc/ssh/sshd_config.d/00-callbox.conf"
"""sshd takes the first value it reads for a key and Debian's sshd_config includes the
drop-ins first: ``00-`` sorts before any other drop-in, so these settings win."""
ADMIN_SUDOERS = "/etc/sudoers.d/callbox-admin"
NM_CONNECTIONS = "/etc/NetworkManager/system-connections"
WIFI_PREFIX = "callbox-wifi-"
WIFI_COUNTRY_CONF = "/etc/modprobe.d/callbox-wifi-country.conf"
HOST_KEY_TYPES = ("rsa", "ecdsa", "ed25519")
MANAGED = "# Written by callbox first boot from callbox.toml; changes here are overwritten."
FIRST_UID = 1000
LAST_UID = 59999
ZONEINFO = "/usr/share/zoneinfo"


class FirstBootError(CallboxError):
    """A step of first boot cannot be done; the message says what and why."""


# host identity ------------------------------------------------------------------------------


def ensure_host_keys(rootfs: RootFs) -> list[str]:
    """Generate the SSH host keys that are missing (``ssh-keygen -A``); the types made.

    A key without its ``.pub`` or an empty one (an interrupted run) is made again.
    """
    ssh = rootfs.mkdir("/etc/ssh", 0o755)
    missing = []
    for kind in HOST_KEY_TYPES:
        key = ssh / f"ssh_host_{kind}_key"
        pub = key.with_name(key.name + ".pub")
        if _non_empty(key) and _non_empty(pub):
            continue
        missing.append(kind)
        for stale in (key, pub):
            stale.unlink(missing_ok=True)
    if not missing:
        return []
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise FirstBootError(
            "ssh-keygen is not installed (Debian package openssh-client): cannot make the "
            f"SSH host keys {', '.join(missing)}"
        )
    command = [keygen, "-A"] if rootfs.is_live else [keygen, "-A", "-f", str(rootfs.root)]
    _run(command, "generating the SSH host keys")
    made = [k for k in missing if _non_empty(ssh / f"ssh_host_{k}_key")]
    if made != missing:
        raise FirstBootError(f"ssh-keygen -A did not make the {', '.join(missing)} host keys")
    return made


def ensure_machine_id(rootfs: RootFs) -> bool:
    """Write a random ``/etc/machine-id`` when it is missing, empty or ``uninitialized``.

    True when written. (On the device systemd has usually made one already.)
    """
    current = (rootfs.read_text("/etc/machine-id") or "").strip()
    if current and current != "uninitialized":
        return False
    rootfs.write("/etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    return True


def grow_root(rootfs: RootFs) -> str:
    """Grow the root partition to the end of the card, then its ext4 filesystem.

    Only on the running system; returns what was done, in words.
    """
    if not rootfs.is_live:
        return "skipped: not the running system"
    source = _root_source()
    disk, number = _disk_and_partition(source, Path("/sys/class/block"))
    growpart, resize2fs = shutil.which("growpart"), shutil.which("resize2fs")
    if growpart is None or resize2fs is None:
        missing = "growpart (cloud-guest-utils)" if growpart is None else "resize2fs (e2fsprogs)"
        raise FirstBootError(f"{missing} is not installed: cannot grow {source}")
    result = subprocess.run(
        [growpart, disk, str(number)], capture_output=True, text=True, check=False, timeout=300
    )
    if result.returncode == 1 and "NOCHANGE" in result.stdout:
        return f"{source} already fills {disk}"
    if result.returncode != 0:
        raise FirstBootError(f"growpart {disk} {number} failed: {_output(result)}")
    _run([resize2fs, source], f"growing the filesystem on {source}")
    return f"grew {source} to the end of {disk}"


def _root_source() -> str:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return fields[fields.index("-") + 2]
    raise FirstBootError("cannot find the root filesystem in /proc/self/mountinfo")


def _disk_and_partition(source: str, sys_block: Path) -> tuple[str, int]:
    """(``/dev/mmcblk0``, 2) for ``/dev/mmcblk0p2``, from sysfs."""
    name = Path(os.path.realpath(source)).name
    entry = sys_block / name
    try:
        number = int((entry / "partition").read_text())
        disk = Path(os.path.realpath(entry)).parent.name
    except (OSError, ValueError) as err:
        raise FirstBootError(f"{source} is not a partition of a disk: {err}") from err
    return f"/dev/{disk}", number


# host name and time zone ----------------------------------------------------------------


def apply_hostname(rootfs: RootFs, hostname: str) -> None:
    """``/etc/hostname``, the ``127.0.1.1`` line of ``/etc/hosts``, and the running name."""
    rootfs.write("/etc/hostname", hostname + "\n", 0o644)
    hosts = rootfs.read_text("/etc/hosts")
    if hosts is None:
        hosts = "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
    lines = [line for line in hosts.splitlines() if not line.startswith("127.0.1.1")]
    lines.insert(1 if lines else 0, f"127.0.1.1\t{hostname}")
    rootfs.write("/etc/hosts", "\n".join(lines) + "\n", 0o644)
    command = shutil.which("hostname")
    if rootfs.is_live and command is not None:
        _run([command, hostname], "setting the host name")


def apply_timezone(rootfs: RootFs, timezone: str) -> None:
    """``/etc/localtime`` -> the zone's file, and ``/etc/timezone``."""
    check_timezone(rootfs, timezone)
    rootfs.symlink("/etc/localtime", f"..{ZONEINFO}/{timezone}")
    rootfs.write("/etc/timezone", timezone + "\n", 0o644)


def check_timezone(rootfs: RootFs, timezone: str) -> None:
    """FirstBootError when the system has no such zone (tzdata)."""
    if not rootfs.path(f"{ZONEINFO}/{timezone}").is_file():
        raise FirstBootError(
            f"{timezone!r} is not a time zone of this system (no {ZONEINFO}/{timezone})"
        )


# the administrator ----------------------------------------------------------------------------


def check_admin(rootfs: RootFs, admin: AdminConfig) -> None:
    """FirstBootError when the name belongs to a system account of this tree."""
    account = rootfs.account(admin.user)
    if account is not None and not FIRST_UID <= account.uid <= LAST_UID:
        raise FirstBootError(
            f"{admin.user!r} is a system account here (uid {account.uid}); choose another name"
        )


def apply_admin(rootfs: RootFs, admin: AdminConfig) -> Account:
    """The administrator: an account without a password (``*``: key login only).

    It is in the ``callbox`` group, has sudo without a password, and its ``authorized_keys`` are
    exactly the keys.
    """
    check_admin(rootfs, admin)
    account = rootfs.account(admin.user) or _create_account(rootfs, admin.user)
    _ensure_shadow(rootfs, admin.user)
    _join_group(rootfs, admin.user, "callbox")
    owner = (account.uid, account.gid)
    home = rootfs.path(account.home)
    if not home.exists():
        rootfs.mkdir(account.home, 0o700, owner)
        _copy_skel(rootfs, home, owner)
    ssh_dir = f"{account.home}/.ssh"
    rootfs.mkdir(ssh_dir, 0o700, owner)
    keys = "".join(f"{key}\n" for key in admin.ssh_keys)
    rootfs.write(f"{ssh_dir}/authorized_keys", f"{MANAGED}\n{keys}", 0o600, owner)
    rootfs.mkdir("/etc/sudoers.d", 0o755)
    rule = f"{MANAGED}\n{admin.user} ALL=(ALL:ALL) NOPASSWD: ALL\n"
    rootfs.write(ADMIN_SUDOERS, rule, 0o440)
    return account


def _create_account(rootfs: RootFs, name: str) -> Account:
    used = {int(f[2]) for f in rootfs.table("/etc/passwd") if len(f) > 2 and f[2].isdigit()}
    used |= {int(f[2]) for f in rootfs.table("/etc/group") if len(f) > 2 and f[2].isdigit()}
    uid = next((n for n in range(FIRST_UID, LAST_UID + 1) if n not in used), None)
    if uid is None:
        raise FirstBootError(f"no free user id for {name!r} between {FIRST_UID} and {LAST_UID}")
    if rootfs.group_id(name) is None:
        _append_line(rootfs, "/etc/group", f"{name}:x:{uid}:", 0o644)
        if rootfs.read_text("/etc/gshadow") is not None:
            _append_line(rootfs, "/etc/gshadow", f"{name}:!::", 0o640)
    gid = rootfs.group_id(name)
    assert gid is not None
    home = f"/home/{name}"
    line = f"{name}:x:{uid}:{gid}:callbox administrator:{home}:/bin/bash"
    _append_line(rootfs, "/etc/passwd", line, 0o644)
    _log.info("created the administrator %s (uid %d)", name, uid)
    return Account(name, uid, gid, home, "/bin/bash")


def _ensure_shadow(rootfs: RootFs, name: str) -> None:
    """A shadow entry whose password field is ``*``: no password logs in, sshd still accepts keys.

    ``!`` would mark the account locked, which sshd refuses without PAM.
    """
    days = int(time.time() // 86400)
    lines = [":".join(f) for f in rootfs.table("/etc/shadow")]
    for index, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == name:
            if fields[1] in ("", "!", "!*"):
                fields[1] = "*"
                lines[index] = ":".join(fields)
                break
            return
    else:
        lines.append(f"{name}:*:{days}:0:99999:7:::")
    _rewrite(rootfs, "/etc/shadow", lines, 0o640, rootfs.group_id("shadow") or 0)


def _join_group(rootfs: RootFs, user: str, group: str) -> None:
    """Add `user` to `group`'s members in ``/etc/group`` (and ``gshadow``) once."""
    for path, mode, members_at in (("/etc/group", 0o644, 3), ("/etc/gshadow", 0o640, 3)):
        table = rootfs.table(path)
        changed = False
        for fields in table:
            if fields[0] == group and len(fields) > members_at:
                members = [m for m in fields[members_at].split(",") if m]
                if user not in members:
                    fields[members_at] = ",".join([*members, user])
                    changed = True
        if changed:
            gid = 0 if path == "/etc/group" else rootfs.group_id("shadow") or 0
            _rewrite(rootfs, path, [":".join(f) for f in table], mode, gid)


def _append_line(rootfs: RootFs, path: str, line: str, mode: int) -> None:
    lines = [":".join(f) for f in rootfs.table(path)]
    gid = rootfs.group_id("shadow") or 0 if "shadow" in path else 0
    _rewrite(rootfs, path, [*lines, line], mode, gid)


def _rewrite(rootfs: RootFs, path: str, lines: list[str], mode: int, gid: int) -> None:
    """Write an account file, keeping its mode and group.

    Its comments are kept out (they have none on Debian).
    """
    target = rootfs.path(path)
    if target.exists():
        info = target.stat()
        mode, gid = info.st_mode & 0o7777, info.st_gid
    rootfs.write(path, "".join(f"{line}\n" for line in lines), mode, (0, gid))


def _copy_skel(rootfs: RootFs, home: Path, owner: tuple[int, int]) -> None:
    skel = rootfs.path("/etc/skel")
    if not skel.is_dir():
        return
    for item in skel.iterdir():
        if item.is_file() and not item.is_symlink():
            target = home / item.name
            shutil.copyfile(item, target)
            if os.geteuid() == 0:
                os.chown(target, *owner)


# sshd --------------------------------------------------------------------------------------


def sshd_drop_in(admin_user: str | None) -> str:
    """The sshd settings: keys only, no root, only the administrator."""
    lines = [
        MANAGED,
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitEmptyPasswords no",
        "PermitRootLogin no",
        "PubkeyAuthentication yes",
        "AuthenticationMethods publickey",
        "X11Forwarding no",
    ]
    if admin_user:
        lines.append(f"AllowUsers {admin_user}")
    else:
        lines.append("# no [system.admin]: nobody may log in")
        lines.append("DenyUsers *")
    return "\n".join(lines) + "\n"


def apply_sshd(rootfs: RootFs, admin_user: str | None) -> None:
    """Write the drop-in (sshd reads it at its start, after first boot)."""
    rootfs.mkdir("/etc/ssh/sshd_config.d", 0o755)
    rootfs.write(SSHD_DROP_IN, sshd_drop_in(admin_user), 0o644)


# Wi-Fi ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WifiNetwork:
    """A network to connect to, with its passphrase read (None: an open network)."""

    ssid: str
    psk: str | None
    hidden: bool = False


def apply_wifi(rootfs: RootFs, country: str, networks: Sequence[WifiNetwork]) -> list[str]:
    """One NetworkManager keyfile per network (the first listed preferred) and the radio's country.

    No keyfile of ours is left for a network no longer listed. Returns the files written.
    """
    directory = rootfs.mkdir(NM_CONNECTIONS, 0o700)
    wanted = {f"{WIFI_PREFIX}{n}.nmconnection": net for n, net in enumerate(networks)}
    for stale in directory.glob(f"{WIFI_PREFIX}*.nmconnection"):
        if stale.name not in wanted:
            stale.unlink()
    for index, (name, network) in enumerate(wanted.items()):
        text = wifi_keyfile(network, f"{WIFI_PREFIX}{index}", priority=len(networks) - index)
        rootfs.write(f"{NM_CONNECTIONS}/{name}", text, 0o600)
    if country:
        rootfs.mkdir("/etc/modprobe.d", 0o755)
        option = f"{MANAGED}\noptions cfg80211 ieee80211_regdom={country}\n"
        rootfs.write(WIFI_COUNTRY_CONF, option, 0o644)
    elif not networks:
        rootfs.remove(WIFI_COUNTRY_CONF)
    return [f"{NM_CONNECTIONS}/{name}" for name in wanted]


def wifi_keyfile(network: WifiNetwork, name: str, priority: int = 0) -> str:
    """A NetworkManager keyfile for `network` (WPA2/WPA3-transition personal, or open)."""
    ident = uuid.uuid5(uuid.NAMESPACE_URL, f"callbox:wifi:{network.ssid}")
    lines = [
        MANAGED,
        "[connection]",
        f"id={name}",
        f"uuid={ident}",
        "type=wifi",
        "autoconnect=true",
        f"autoconnect-priority={priority}",
        "",
        "[wifi]",
        "mode=infrastructure",
        f"ssid={_keyfile_ssid(network.ssid)}",
    ]
    if network.hidden:
        lines.append("hidden=true")
    if network.psk is not None:
        lines += ["", "[wifi-security]", "key-mgmt=wpa-psk", f"psk={_keyfile_string(network.psk)}"]
    lines += ["", "[ipv4]", "method=auto", "", "[ipv6]", "method=auto", "addr-gen-mode=default"]
    return "\n".join(lines) + "\n"


def _keyfile_ssid(ssid: str) -> str:
    """Plain when it is plain, else NetworkManager's byte list (``72;105;``): never ambiguous."""
    plain = ssid.strip() == ssid and all(c.isalnum() or c in " _.-@+" for c in ssid)
    if plain and ssid.isascii() and not ssid.isdigit():
        return ssid
    return "".join(f"{byte};" for byte in ssid.encode("utf-8"))


def _keyfile_string(value: str) -> str:
    r"""A GKeyFile string: backslashes doubled, spaces at the ends as ``\s``."""
    text = value.replace("\\", "\\\\")
    if text.startswith(" "):
        text = "\\s" + text[1:]
    if text.endswith(" "):
        text = text[:-1] + "\\s"
    return text


# helpers -----------------------------------------------------------------------------------


def _non_empty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _run(command: list[str], what: str) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise FirstBootError(f"{what}: {command[0]} failed: {err}") from err
    if result.returncode != 0:
        shown = " ".join(command)
        raise FirstBootError(f"{what}: {shown} exited {result.returncode}: {_output(result)}")


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stderr or result.stdout).strip() or "no output"
