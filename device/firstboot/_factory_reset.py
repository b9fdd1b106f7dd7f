"""``callbox factory-reset``: the unit back to how it was flashed, first boot armed again.

Removed: the identity keys, the configuration (contacts and pinned keys, the broker and its
password: the image ships none, so the unit waits for a new ``callbox.toml`` on the boot
partition), the secrets first boot moved, the site broker's accounts (paired phones), the
Wi-Fi connections first boot made and the radio country, the call log, the visitor
snapshots, the Web Push subscriptions and VAPID key, the browser page's TLS key, the
administrator's SSH keys and sudo rule, the SSH host keys, and first boot's "done" record.
Kept: the program, the host name and time zone,
the sshd policy (keys only, no root), the administrator's account (without keys nobody can
log in until the next first boot installs new ones).
Files are unlinked, not overwritten: flash storage may keep old blocks.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from device.firstboot._firstboot import BOOT_FILE, CONFIG_FILE, STATE_DIR
from device.firstboot._rootfs import RootFs, RootFsError
from device.firstboot._secrets import SECRETS_DIR
from device.firstboot._system import ADMIN_SUDOERS, MANAGED, NM_CONNECTIONS, WIFI_COUNTRY_CONF

__all__ = ["Removal", "factory_reset", "reset_plan"]

DEFAULT_STATE: Final = "/var/lib/callbox"
BROKER_STATE: Final = "/var/lib/callbox-broker"


@dataclass(frozen=True)
class Removal:
    """One thing factory reset removes: what it is, in words, and its device path."""

    what: str
    path: str


def reset_plan(rootfs: RootFs, config: str = CONFIG_FILE) -> list[Removal]:
    """What is there to remove, in the order it is removed (only what exists)."""
    state = _state_dir(rootfs, config)
    etc = str(Path(config).parent)
    candidates = [
        Removal("identity keys", f"{state}/keys"),
        Removal("call log", f"{state}/calls.sqlite"),
        *(Removal("call log", f"{state}/calls.sqlite{s}") for s in ("-wal", "-shm", "-journal")),
        Removal("visitor snapshots", f"{state}/snapshots"),
        Removal("phones' Web Push subscriptions", f"{state}/push-subscriptions.json"),
        Removal("configuration (contacts, pinned keys, broker)", config),
        Removal("previous configuration", f"{config}.bak"),
        Removal("first-boot import record", f"{config}.first-boot-sha256"),
        Removal("secrets moved by first boot (broker password, Wi-Fi)", SECRETS_DIR),
        Removal("site broker accounts, paired phones and the site CA", BROKER_STATE),
        Removal("browser page TLS key", f"{etc}/web.key"),
        Removal("browser page TLS certificate", f"{etc}/web.crt"),
        Removal("pinned site CA", f"{etc}/site-ca.crt"),
        Removal("the site's Web Push (VAPID) key", f"{etc}/vapid.key"),
        Removal("the site's TURN secret", f"{etc}/turn.secret"),
        *_wifi(rootfs),
        Removal("Wi-Fi country", WIFI_COUNTRY_CONF),
        *_admin_keys(rootfs),
        Removal("administrator's sudo rule", ADMIN_SUDOERS),
        *(
            Removal("SSH host keys (new ones at the next boot)", f"/etc/ssh/{p.name}")
            for p in sorted(rootfs.path("/etc/ssh").glob("ssh_host_*"))
        ),
        Removal("first boot's record (first boot runs again)", f"{STATE_DIR}/done"),
        Removal("first boot's error", f"{STATE_DIR}/error"),
        Removal("applied copy on the boot partition", f"{BOOT_FILE}.applied"),
    ]
    return [r for r in candidates if os.path.lexists(rootfs.path(r.path))]


def factory_reset(rootfs: RootFs, config: str = CONFIG_FILE) -> list[Removal]:
    """Remove everything `reset_plan` lists; the removals done.

    RootFsError stops at the first that fails (running again removes the rest).
    """
    done = []
    for removal in reset_plan(rootfs, config):
        path = rootfs.path(removal.path)
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:
            raise RootFsError(f"{path}: cannot remove it ({removal.what}): {err}") from err
        done.append(removal)
    return done


def _state_dir(rootfs: RootFs, config: str) -> str:
    """``state_dir`` of the configuration, even of one that does not validate any more."""
    try:
        data = tomllib.loads(rootfs.read_text(config) or "")
    except (tomllib.TOMLDecodeError, RootFsError):
        return DEFAULT_STATE
    state = data.get("state_dir", DEFAULT_STATE)
    return state if isinstance(state, str) and state.startswith("/") else DEFAULT_STATE


def _wifi(rootfs: RootFs) -> list[Removal]:
    directory = rootfs.path(NM_CONNECTIONS)
    return [
        Removal("Wi-Fi connection made by first boot", f"{NM_CONNECTIONS}/{p.name}")
        for p in sorted(directory.glob("callbox-wifi-*.nmconnection"))
    ]


def _admin_keys(rootfs: RootFs) -> list[Removal]:
    """The ``authorized_keys`` first boot wrote (it starts with its header) in ``/home``."""
    found = []
    for keys in sorted(rootfs.path("/home").glob("*/.ssh/authorized_keys")):
        try:
            managed = keys.read_text(encoding="utf-8").startswith(MANAGED)
        except (OSError, UnicodeDecodeError):
            continue
        if managed:
            device_path = "/" + keys.relative_to(rootfs.root).as_posix()
            found.append(Removal("administrator's SSH keys", device_path))
    return found
