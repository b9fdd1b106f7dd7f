"""Secrets in the installer's ``callbox.toml``: moved to 0600 files on the root filesystem.

The broker password and the Wi-Fi passphrases may be written in the file itself
(``password``, ``psk``) or in files on the boot partition (``password_file``/``psk_file``
under ``/boot``). First boot writes each to ``/etc/callbox/secrets/`` and rewrites the
configuration to name that file instead, so ``/etc/callbox/callbox.toml`` and the copy left
on the boot partition hold no secret. A TURN credential has no ``*_file`` key: it stays in
``/etc/callbox/callbox.toml`` (root:callbox 0640, on the root filesystem) and is blanked in
the boot partition's copy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import tomlkit

from device.config import CallboxConfig, ConfigError
from device.firstboot._rootfs import RootFs, RootFsError

__all__ = ["SECRETS_DIR", "Secret", "collect_secrets", "redacted", "without_secrets"]

SECRETS_DIR: Final = "/etc/callbox/secrets"
BOOT_PREFIX: Final = "/boot/"
BROKER_SECRET: Final = f"{SECRETS_DIR}/broker.password"


@dataclass(frozen=True)
class Secret:
    """One secret: its key, its value, where it goes and where it came from.

    The key it came from, its value, the root file it goes to, its owner (a user name of the tree:
    who must read it) and the boot-partition file it came from.
    """

    key: str
    value: str
    destination: str
    owner: str
    boot_source: str = ""


def wifi_secret_path(ssid: str) -> str:
    """The root file of a network's passphrase (named by a digest: any SSID is safe)."""
    return f"{SECRETS_DIR}/wifi-{hashlib.sha256(ssid.encode()).hexdigest()[:16]}.psk"


def collect_secrets(config: CallboxConfig, rootfs: RootFs, source: str) -> list[Secret]:
    """Every secret of `config` to move, values read.

    ConfigError (naming `source`, the key and the file) for a ``*_file`` that cannot be read.
    """
    found: list[Secret] = []
    broker = config.broker
    if broker.password:
        found.append(Secret("broker.password", broker.password, BROKER_SECRET, "callbox"))
    elif broker.password_file.startswith(BOOT_PREFIX):
        value = _read_secret(rootfs, broker.password_file, source, "broker.password_file")
        found.append(
            Secret("broker.password_file", value, BROKER_SECRET, "callbox", broker.password_file)
        )
    for index, wifi in enumerate(config.system.wifi):
        destination = wifi_secret_path(wifi.ssid)
        key = f"system.wifi.{index}"
        if wifi.psk:
            found.append(Secret(f"{key}.psk", wifi.psk, destination, "root"))
        elif wifi.psk_file:
            value = _read_secret(rootfs, wifi.psk_file, source, f"{key}.psk_file")
            boot = wifi.psk_file if wifi.psk_file.startswith(BOOT_PREFIX) else ""
            if boot:
                found.append(Secret(f"{key}.psk_file", value, destination, "root", boot))
    return found


def read_secret_file(rootfs: RootFs, device_path: str) -> str:
    """The first line of a secret file of the tree; RootFsError when missing or empty."""
    text = rootfs.read_text(device_path)
    if text is None:
        raise RootFsError(f"{device_path}: no such file")
    value = text.splitlines()[0] if text else ""
    if not value:
        raise RootFsError(f"{device_path}: is empty")
    return value


def _read_secret(rootfs: RootFs, device_path: str, source: str, key: str) -> str:
    try:
        return read_secret_file(rootfs, device_path)
    except RootFsError as err:
        raise ConfigError(Path(source), key, str(err)) from err


def without_secrets(text: str, secrets: list[Secret]) -> str:
    """`text` with each secret replaced by a reference to its root file (comments kept)."""
    document = tomlkit.parse(text)
    for secret in secrets:
        parts = secret.key.split(".")
        table = _item(document, parts[:-1])
        if parts[-1] in ("password", "psk") and parts[-1] in table:
            del table[parts[-1]]
        table[f"{parts[-1].removesuffix('_file')}_file"] = secret.destination
    return document.as_string()


def redacted(text: str, config: CallboxConfig) -> str:
    """`text` (already without moved secrets) with the TURN credentials blanked.

    This is the copy left on the boot partition for the administrator to read.
    """
    document = tomlkit.parse(text)
    for index, server in enumerate(config.network.ice_servers):
        if server.credential:
            _item(document, ["network", "ice_servers", str(index)])["credential"] = (
                "(removed: see /etc/callbox/callbox.toml)"
            )
    return document.as_string()


def _item(document: Any, parts: list[str]) -> Any:
    node = document
    for part in parts:
        node = node[int(part)] if part.isdigit() else node[part]
    return node
