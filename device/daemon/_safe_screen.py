"""The screen of the daemon's safe state: which display shows the notice, and what it says to do.

The composition `device.daemon._safe_daemon` is given.

The configuration cannot be used, so it cannot be loaded to find the display. The choice is
best effort, from the file as TOML (`display_choice`): a ``[display]`` table that validates
on its own, on the board the file names, is used (``enabled = false``: no screen); without
one (absent, refused) an indoor unit gets its board's default screen (the sim board's
in-memory 800x480 one; a Pi draws only with ``[display]``) and a door station none. A file
that is not TOML (or missing) gives the default board's default: none. On a new unit whose
installer's file was refused, that file on the boot partition is read instead.

The hint names the host (``ssh <admin>@<host>.local``), its addresses and `callbox config
edit`; the administrator is named only when the file's ``system.admin.user`` exists here.
"""

from __future__ import annotations

import ipaddress
import logging
import pwd
import socket
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, get_args

import ifaddr
from pydantic import TypeAdapter, ValidationError

from device.config import FIRST_BOOT_PATH, MIN_DISPLAY_SIZE, CallboxConfig, DisplayConfig, UserName
from device.daemon._app import SIM_DISPLAY_SIZE
from device.firstboot import first_boot_error
from hal.display import Display, KmsDisplay, SimDisplay

__all__ = [
    "DisplayChoice",
    "SafeScreen",
    "admin_user",
    "build_display",
    "display_choice",
    "fix_hint",
    "host_addresses",
    "read_toml",
    "safe_screen",
]

_log = logging.getLogger(__name__)

BOARDS: Final[tuple[str, ...]] = get_args(CallboxConfig.model_fields["board"].annotation)
DEFAULT_BOARD: Final[str] = CallboxConfig.model_fields["board"].default
MAX_ADDRESSES = 3


@dataclass(frozen=True)
class DisplayChoice:
    """The screen to show the notice on: the board's kind and a size (None: the panel's)."""

    board: str
    size: tuple[int, int] | None = None

    def describe(self) -> str:
        """In words, for the log: ``the pi board's KMS/DRM display (1280x720)``."""
        kind = "in-memory" if self.board == "sim" else "KMS/DRM"
        size = f"{self.size[0]}x{self.size[1]}" if self.size else "the panel's size"
        return f"the {self.board} board's {kind} display ({size})"


@dataclass(frozen=True)
class SafeScreen:
    """What the safe state shows its notice on (None: nothing) and the lines saying what to do."""

    display: Display | None
    name: str
    hint: tuple[str, ...]


def read_toml(path: Path) -> dict[str, Any] | None:
    """``path`` as TOML, or None when it is missing, unreadable or not TOML (logged)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        _log.info("safe state: %s says nothing about the screen: %s", path, err)
        return None


def display_choice(data: Mapping[str, Any] | None) -> DisplayChoice | None:
    """The screen a file (as TOML; None: none) asks for as far as it can be trusted.

    Else its board's default for the role; None for no screen (see the module).
    """
    board = DEFAULT_BOARD if data is None else data.get("board", DEFAULT_BOARD)
    if board not in BOARDS:
        return None  # an unknown board: which screen it has is anybody's guess
    table = _display_table(data.get("display") if data is not None else None)
    if table is not None:
        if not table.enabled:
            return None
        size = (table.width, table.height) if table.width else None
        return DisplayChoice(board, size)
    if data is not None and data.get("role") == "door":
        return None
    return DisplayChoice(board, SIM_DISPLAY_SIZE) if board == "sim" else None


def _display_table(raw: object) -> DisplayConfig | None:
    """``[display]`` if it validates on its own (with its size rules), else None."""
    if raw is None:
        return None
    try:
        table = DisplayConfig.model_validate(raw)
    except ValidationError:
        return None
    width, height = table.width, table.height
    if (width == 0) != (height == 0) or any(0 < v < MIN_DISPLAY_SIZE for v in (width, height)):
        return None
    return table


def build_display(choice: DisplayChoice) -> Display:
    """The (not yet started) display of ``choice``."""
    if choice.board == "sim":
        return SimDisplay(*(choice.size or SIM_DISPLAY_SIZE))
    return KmsDisplay(*choice.size) if choice.size else KmsDisplay()


def admin_user(data: Mapping[str, Any] | None) -> str | None:
    """``system.admin.user`` when it is a valid name and that account exists here, else None.

    The default is ``admin`` with a ``[system.admin]`` table; first boot made the account.
    """
    system = data.get("system") if data is not None else None
    admin = system.get("admin") if isinstance(system, dict) else None
    if not isinstance(admin, dict):
        return None
    try:
        user = TypeAdapter(UserName).validate_python(admin.get("user", "admin"))
        pwd.getpwnam(user)
    except (ValidationError, KeyError):
        return None
    return user


def host_addresses(limit: int = MAX_ADDRESSES) -> list[str]:
    """This host's addresses others can reach: IPv4 first, then global IPv6.

    No loopback or link-local ones.
    """
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            if not (address.is_loopback or address.is_link_local or address in found):
                found.append(address)
    found.sort(key=lambda address: address.version)
    return [str(address) for address in found[:limit]]


def fix_hint(
    hostname: str,
    addresses: Sequence[str] = (),
    admin: str | None = None,
    first_boot_refused: bool = False,
) -> tuple[str, ...]:
    """What to do, one line each: log in over SSH and fix the file, or fix that file on a computer.

    Log in as ``admin`` when known; fix the file on a computer when first boot refused the
    installer's file.
    """
    lines = []
    if admin is not None:
        lines.append(
            f"Fix it over SSH: ssh {admin}@{hostname}.local, then sudo callbox config edit"
        )
    elif not first_boot_refused:
        lines.append(
            f"Fix it over SSH: log in to {hostname}.local as the administrator, then "
            "sudo callbox config edit"
        )
    if first_boot_refused:
        fix = f"fix {FIRST_BOOT_PATH.name} on the SD card's boot partition, then restart"
        lines.append(f"Or {fix}" if lines else fix[0].upper() + fix[1:])
    where = f" ({', '.join(addresses)})" if addresses else ""
    lines.append(f"This unit: {hostname}.local{where}")
    lines.append("Calls start again by themselves once the file is valid.")
    return tuple(lines)


def safe_screen(config_path: Path, boot_file: Path = FIRST_BOOT_PATH) -> SafeScreen:
    """The screen and hint of the safe state with ``config_path`` (see the module)."""
    refused = first_boot_error() is not None
    data = read_toml(config_path)
    if data is None and refused:
        data = read_toml(boot_file)
    hostname = socket.gethostname().split(".")[0]
    hint = fix_hint(hostname, host_addresses(), admin_user(data), refused)
    choice = display_choice(data)
    if choice is None:
        _log.info("safe state: no screen to show the reasons on")
        return SafeScreen(None, "", hint)
    return SafeScreen(build_display(choice), choice.describe(), hint)
