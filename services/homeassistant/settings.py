"""Where HA's broker is, how this unit logs in and what it announces: values, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class HaSettings:
    """The ``[homeassistant]`` section as the link uses it (validated by the config).

    ``tls`` verifies HA's broker against the system trust store, or ``ca_file`` alone when
    set. ``door_release``: announce (and obey) the "Open door" button of a door station.
    """

    host: str
    port: int = 1883
    tls: bool = False
    ca_file: Path | None = None
    username: str = ""
    password: str = ""
    discovery_prefix: str = "homeassistant"
    node_id: str
    door_release: bool = False
    keepalive_s: int = 30


@dataclass(frozen=True, kw_only=True)
class UnitInfo:
    """The unit as HA's device registry shows it."""

    address: str
    name: str
    role: str
    """``door`` or ``indoor``: HA's model."""
    sw_version: str

    @property
    def is_door(self) -> bool:
        """True for a door station (doorbell, snapshot, door relay)."""
        return self.role == "door"
