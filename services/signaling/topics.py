"""MQTT topic names of a callbox site (see docs/protocol.md, "Topics")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.signaling.errors import SignalingError

PREFIX = "callbox/v1"
_NAME = re.compile(r"^[a-z0-9_.-]{1,64}$")


def valid_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid site or address name, else raise SignalingError."""
    if not _NAME.match(value):
        raise SignalingError(
            f"{kind} {value!r} must be 1..64 characters of lowercase letters, digits, '_', '.', '-'"
        )
    return value


@dataclass(frozen=True)
class SiteTopics:
    """Topic names of one site."""

    site: str

    def __post_init__(self) -> None:
        valid_name("site", self.site)

    def inbox(self, address: str) -> str:
        """Where anyone in the site publishes envelopes for ``address``."""
        return f"{PREFIX}/{self.site}/{address}/inbox"

    def presence(self, address: str) -> str:
        """Retained online/offline state of ``address`` (its last will says offline)."""
        return f"{PREFIX}/{self.site}/{address}/presence"

    def profile(self, address: str) -> str:
        """Retained profile of ``address``: name, role, capabilities, public keys."""
        return f"{PREFIX}/{self.site}/{address}/profile"

    def directory(self) -> str:
        """The retained signed site directory (docs/protocol.md, "Site directory")."""
        return f"{PREFIX}/{self.site}/directory"

    def all_presence(self) -> str:
        """Subscription filter for every endpoint's presence."""
        return f"{PREFIX}/{self.site}/+/presence"

    def all_profiles(self) -> str:
        """Subscription filter for every endpoint's profile."""
        return f"{PREFIX}/{self.site}/+/profile"

    def address_of(self, topic: str) -> str | None:
        """The address a topic of this site belongs to, or None for a foreign topic."""
        parts = topic.split("/")
        if len(parts) != 5 or "/".join(parts[:3]) != f"{PREFIX}/{self.site}":
            return None
        return parts[3]
