"""HA's commands as the unit takes them: exact payloads, anything else refused with a reason."""

from __future__ import annotations

from services.homeassistant.discovery import OFF, ON, PRESS
from services.homeassistant.errors import CommandError

MAX_COMMAND_BYTES = 64


def _text(payload: bytes) -> str:
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"a payload of {len(payload)} bytes (at most {MAX_COMMAND_BYTES})")
    try:
        return payload.decode("ascii").strip()
    except UnicodeDecodeError:
        raise CommandError("a payload that is not ASCII text") from None


def parse_switch(payload: bytes) -> bool:
    """``ON`` -> True, ``OFF`` -> False; CommandError for anything else."""
    text = _text(payload)
    if text == ON:
        return True
    if text == OFF:
        return False
    raise CommandError(f"{text[:16]!r} is not {ON} or {OFF}")


def parse_press(payload: bytes) -> None:
    """``PRESS``, the button's payload; CommandError for anything else."""
    text = _text(payload)
    if text != PRESS:
        raise CommandError(f"{text[:16]!r} is not {PRESS}")
