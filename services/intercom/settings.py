"""What the call service needs to know beyond the Call API's defaults: role and policy."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.intercom.alarms import AlarmSettings
from services.intercom.dnd import DndSchedule


@dataclass(frozen=True, kw_only=True)
class IntercomSettings:
    """The call service's behaviour, from the device's configuration.

    ``targets``: for a door, the ring group a doorbell press calls; for an indoor unit,
    the door station(s) its "monitor" button calls (the first one).
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

    def __post_init__(self) -> None:
        if self.role not in ("door", "indoor"):
            raise ValueError(f"role {self.role!r} must be 'door' or 'indoor'")
        if self.unlock_per_minute < 1:
            raise ValueError(f"unlock_per_minute {self.unlock_per_minute} must be at least 1")
