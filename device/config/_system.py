"""``[system]`` of ``callbox.toml``: what first boot applies to the operating system.

Host name, time zone, the administrator who logs in over SSH (with keys only), the Wi-Fi
networks and the radio's country. `device.firstboot` applies it; the daemon ignores it. Like
every other table it refuses unknown keys and wrong types, and a reason never repeats a
secret (a Wi-Fi passphrase).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from pydantic import AfterValidator, Field, StrictBool, StrictStr

from device.config._apply import Apply
from device.config._models import OptionalPath, Section

__all__ = [
    "AdminConfig",
    "SystemConfig",
    "WifiConfig",
    "hostname_from_address",
    "ssh_public_key",
]

_HOSTNAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TIMEZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9][A-Za-z0-9_+-]*){0,3}")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_HEX_PSK = re.compile(r"[0-9A-Fa-f]{64}")

RESERVED_USERS: Final = frozenset(
    {
        "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
        "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "_apt", "messagebus",
        "sshd", "callbox", "avahi", "mosquitto", "polkitd", "systemd-network",
        "systemd-resolve", "systemd-timesync", "systemd-journal", "systemd-coredump",
    }
)  # fmt: skip
"""Accounts the image has or may have: the administrator must be a person's account."""

SSH_KEY_TYPES: Final = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
"""Key types OpenSSH 9 (Debian bookworm) accepts for login; DSA is not among them."""

MIN_RSA_BITS: Final = 2048


def hostname_from_address(address: str) -> str:
    """The host name an address gives when ``system.hostname`` is empty (``flat_1`` -> ``flat-1``).

    Host names allow no ``_`` and no ``-`` at either end.
    """
    return address.replace("_", "-").strip("-") or "callbox"


def _hostname(value: str) -> str:
    if value and not _HOSTNAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a host name: 1 to 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit ('' = the address)"
        )
    return value


def _timezone(value: str) -> str:
    if value and (not _TIMEZONE.fullmatch(value) or len(value) > 64):
        raise ValueError(
            f"{value!r} is not a time zone name such as 'Europe/Berlin' or 'UTC' "
            "('' = leave the system's)"
        )
    return value


def _country(value: str) -> str:
    if value and not _COUNTRY.fullmatch(value):
        raise ValueError(f"{value!r} is not a two-letter country code such as 'DE' or 'GB'")
    return value


def _user(value: str) -> str:
    if not _USER.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a user name: 1 to 32 lowercase letters, digits, '_' or '-', "
            "starting with a letter or '_'"
        )
    if value in RESERVED_USERS or value.startswith("systemd-"):
        raise ValueError(f"{value!r} is a system account; choose a person's name such as 'admin'")
    return value


def ssh_public_key(value: str) -> str:
    """Check one OpenSSH public key line (``ssh-ed25519 AAAA… comment``) and return it normalised.

    It comes back with single spaces; ValueError with a plain reason. Options before the type are
    refused.
    """
    if "PRIVATE KEY" in value:
        raise ValueError(
            "is a private key; give the public key (the .pub file), and never copy a private "
            "key to a device"
        )
    if any(not char.isprintable() for char in value):
        raise ValueError("must be one line without control characters")
    parts = value.split(None, 2)
    if len(parts) < 2:
        raise ValueError("is not an OpenSSH public key line such as 'ssh-ed25519 AAAA… you@laptop'")
    kind, data = parts[0], parts[1]
    if kind not in SSH_KEY_TYPES:
        hint = "; DSA keys are refused by OpenSSH" if kind == "ssh-dss" else ""
        raise ValueError(
            f"key type {kind[:40]!r} is not accepted (use {', '.join(SSH_KEY_TYPES[:5])}, or a "
            f"security key type){hint}"
        )
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {kind} key data is not base64: the line is damaged") from None
    size = int.from_bytes(blob[:4], "big")
    if len(blob) < 4 + size or blob[4 : 4 + size] != kind.encode():
        raise ValueError(f"the key data is not a {kind} key: the line is damaged or mixed up")
    if not kind.startswith("sk-"):
        try:
            key = load_ssh_public_key(f"{kind} {data}".encode())
        except (ValueError, UnsupportedAlgorithm):
            raise ValueError(f"the {kind} key data is damaged") from None
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            raise ValueError(
                f"is a {key.key_size}-bit RSA key; at least {MIN_RSA_BITS} bits (or ssh-ed25519)"
            )
    return " ".join(parts)


def _ssh_keys(values: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        raise ValueError("must list at least 1 (nobody could log in)")
    blobs = [v.split()[1] for v in values]
    duplicates = sorted({f"item {i}" for i, b in enumerate(blobs) if b in blobs[:i]})
    if duplicates:
        raise ValueError(f"lists the same key twice ({', '.join(duplicates)})")
    return values


def _ssid(value: str) -> str:
    size = len(value.encode("utf-8"))
    if not 1 <= size <= 32:
        raise ValueError(f"is {size} bytes long; a Wi-Fi network name is 1 to 32 bytes")
    if any(not char.isprintable() for char in value):
        raise ValueError("must not contain control characters")
    return value


def _psk(value: str) -> str:
    """A WPA passphrase (8 to 63 printable ASCII) or a raw 64-hex-digit key.

    The reason gives its length, never its characters.
    """
    if not value or _HEX_PSK.fullmatch(value):
        return value
    if not 8 <= len(value) <= 63 or any(not 0x20 <= ord(c) <= 0x7E for c in value):
        raise ValueError(
            f"must be 8 to 63 printable ASCII characters, or 64 hex digits (it has {len(value)} "
            "characters; the value is not shown)"
        )
    return value


Hostname = Annotated[StrictStr, AfterValidator(_hostname)]
Timezone = Annotated[StrictStr, AfterValidator(_timezone)]
Country = Annotated[StrictStr, AfterValidator(_country)]
UserName = Annotated[StrictStr, AfterValidator(_user)]
SshPublicKey = Annotated[StrictStr, AfterValidator(ssh_public_key)]
Ssid = Annotated[StrictStr, AfterValidator(_ssid)]
WifiPsk = Annotated[StrictStr, AfterValidator(_psk)]


class AdminConfig(Section):
    """``[system.admin]``: the administrator's account: SSH keys only, no password, sudo."""

    user: UserName = "admin"
    ssh_keys: Annotated[tuple[SshPublicKey, ...], AfterValidator(_ssh_keys)]


class WifiConfig(Section):
    """``[[system.wifi]]``: a Wi-Fi network; the first listed is preferred."""

    ssid: Ssid
    psk: WifiPsk = ""
    psk_file: OptionalPath = ""
    open: StrictBool = False
    hidden: StrictBool = False


class SystemConfig(Section):
    """``[system]``: applied to the operating system by first boot (``callbox first-boot``)."""

    APPLY = Apply.FIRST_BOOT
    hostname: Hostname = ""
    timezone: Timezone = ""
    wifi_country: Country = ""
    grow_root: StrictBool = True
    admin: AdminConfig | None = None
    wifi: tuple[WifiConfig, ...] = Field(default=())
