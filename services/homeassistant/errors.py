"""The errors of the Home Assistant link."""

from __future__ import annotations

from hal.errors import CallboxError


class HomeAssistantError(CallboxError):
    """HA's broker cannot be used (its TLS CA file, a refused login); the text says why."""


class CommandError(HomeAssistantError):
    """A command from HA's broker that is not one we take (topic or payload); it is ignored."""
