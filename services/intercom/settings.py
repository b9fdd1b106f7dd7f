"""What the call service needs to know beyond the Call API's defaults: role and policy."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.intercom.dnd import DndSchedule

DEFAULT_BELL = "doorbell"
"""The name of the default bell: the top-level ``targets``, rung by ``[inputs.doorbell]``."""


@dataclass(frozen=True, kw_only=True)
class AlarmSettings:
    """``[door_contact]``'s timing: left open after ``left_open_s``; ``forced_grace_s``."""

    left_open_s: float = 30.0
    forced_grace_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.left_open_s > 0:
            raise ValueError(f"left_open_s {self.left_open_s} must be above 0")
        if not self.forced_grace_s >= 0:
            raise ValueError(f"forced_grace_s {self.forced_grace_s} must be 0 or more")


@dataclass(frozen=True, kw_only=True)
class BellSettings:
    """One bell of a door station (``[[bells]]``): what it rings and how.

    ``phones_after_s`` / ``fallback_after_s``: None takes ``[panel]``'s.
    """

    name: str
    label: str = ""
    targets: tuple[str, ...] = ()
    code: str = ""
    phones_after_s: float | None = None
    fallback_after_s: float | None = None


def _no_target_dnd() -> Mapping[str, DndSchedule]:
    return {}


@dataclass(frozen=True, kw_only=True)
class PanelSettings:
    """How a door station's bells ring (``[panel]``, ``[[bells]]``, ``[[target_dnd]]``).

    Stage 1: a bell's targets that are not phones; stage 2: its phones (role "web"),
    ``phones_after_s`` after the press; stage 3: ``fallback``, ``fallback_after_s`` after
    it. ``target_dnd``: per-address hours in which the door does not ring that address.
    """

    phones_after_s: float = 0.0
    fallback: tuple[str, ...] = ()
    fallback_after_s: float = 20.0
    dial_directory: bool = True
    bells: tuple[BellSettings, ...] = ()
    target_dnd: Mapping[str, DndSchedule] = field(default_factory=_no_target_dnd)

    def __post_init__(self) -> None:
        for name in ("phones_after_s", "fallback_after_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} {value} must be a finite number of seconds >= 0")


@dataclass(frozen=True, kw_only=True)
class IntercomSettings:
    """The call service's behaviour, from the device's configuration.

    ``targets``: for a door, the ring group of its default bell (``doorbell_label`` is
    what callees are shown); for an indoor unit, the door station(s) its "monitor" button
    calls (the first one). ``panel``: a door's other bells and how they ring.
    """

    role: str
    targets: tuple[str, ...] = ()
    video: bool = True
    auto_answer_monitor: bool = True
    unlock_per_minute: int = 6
    dnd: DndSchedule = field(default_factory=DndSchedule)
    snapshot_wait_s: float = 5.0
    alarms: AlarmSettings = field(default_factory=AlarmSettings)
    """A door station's door-contact timing (``[door_contact]``, services/intercom/alarms)."""
    doorbell_label: str = ""
    panel: PanelSettings = field(default_factory=PanelSettings)

    def __post_init__(self) -> None:
        if self.role not in ("door", "indoor"):
            raise ValueError(f"role {self.role!r} must be 'door' or 'indoor'")
        if self.unlock_per_minute < 1:
            raise ValueError(f"unlock_per_minute {self.unlock_per_minute} must be at least 1")

    def bells(self) -> dict[str, BellSettings]:
        """Every bell by name: the default bell (``targets``) first, then ``[[bells]]``."""
        default = BellSettings(name=DEFAULT_BELL, label=self.doorbell_label, targets=self.targets)
        return {DEFAULT_BELL: default} | {bell.name: bell for bell in self.panel.bells}

    def all_targets(self) -> tuple[str, ...]:
        """Every target any bell or the fallback may ring, once each, in order."""
        seen: dict[str, None] = {}
        for bell in self.bells().values():
            seen.update(dict.fromkeys(bell.targets))
        seen.update(dict.fromkeys(self.panel.fallback))
        return tuple(seen)
