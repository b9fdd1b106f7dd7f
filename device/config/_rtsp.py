"""``[rtsp]``: the door camera as an RTSP stream for NVRs (services/rtsp), off by default.

Its own module so the section, its checks across keys and how the password is read stay
together (docs/operations.md, "Adding the door to an NVR").
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field, StrictBool, StrictInt, StrictStr

from device.config._apply import Apply
from device.config._errors import ConfigError
from device.config._models import OptionalPath, OptionalWord, Secret, Section

if TYPE_CHECKING:
    from device.config._file import CallboxConfig

_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)+")


def _listen_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address to listen on: '0.0.0.0' (every interface), "
            "'::' or one of the unit's addresses"
        ) from None
    return value


def _stream_path(value: str) -> str:
    if len(value) > 64 or not _PATH.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a stream path such as '/door': '/' then letters, digits, "
            "'.', '_', '~' or '-' (at most 64 characters)"
        )
    return value


class RtspConfig(Section):
    """``[rtsp]``: an RTSP stream of the door camera for NVRs (Frigate, Scrypted, HA).

    ``enabled`` (false by default) needs ``username`` and ``password`` or ``password_file``
    (its first line): clients log in with digest authentication. ``max_clients`` viewers
    play at once; the next is refused. Changing any key restarts the endpoint once idle.
    """

    APPLY = Apply.ENDPOINT
    enabled: StrictBool = False
    address: Annotated[StrictStr, AfterValidator(_listen_address)] = "0.0.0.0"
    port: StrictInt = Field(default=8554, ge=1, le=65535)
    path: Annotated[StrictStr, AfterValidator(_stream_path)] = "/door"
    username: OptionalWord = ""
    password: Secret = ""
    password_file: OptionalPath = ""
    max_clients: StrictInt = Field(default=2, ge=1, le=16)


def rtsp_problems(config: CallboxConfig) -> Iterator[tuple[str, str]]:
    """The cross-key problems of ``[rtsp]`` (see `device.config._rules`)."""
    rtsp = config.rtsp
    if rtsp.password and rtsp.password_file:
        yield "rtsp.password_file", "set either password or password_file, not both"
    if not rtsp.enabled:
        return
    if config.role != "door":
        yield "rtsp.enabled", "only a door station streams its camera; remove [rtsp] here"
    if not rtsp.username:
        yield "rtsp.username", "is required with enabled = true: viewers log in (digest)"
    if not (rtsp.password or rtsp.password_file):
        yield "rtsp.password", "is required with enabled = true (or password_file)"


def rtsp_password(config: CallboxConfig) -> str:
    """``rtsp.password``, or the first line of ``rtsp.password_file`` (blocking: a thread)."""
    rtsp = config.rtsp
    if not rtsp.password_file:
        return rtsp.password
    try:
        text = Path(rtsp.password_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ConfigError(
            config.source, "rtsp.password_file", f"cannot read {rtsp.password_file}: {reason}"
        ) from err
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ConfigError(config.source, "rtsp.password_file", f"{rtsp.password_file} is empty")
    return password
