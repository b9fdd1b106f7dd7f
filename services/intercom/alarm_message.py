"""The ``alarm`` message (docs/protocol.md, "Alarms"): a door station's alarm, raised or cleared.

Body: ``{"kind": "door_left_open" | "door_forced_open" | "tamper", "active": bool, "since":
<unix s, an integer>}``, exactly these keys (envelope bodies carry no floats). ``since`` is
when the alarm entered the state the message tells (raised at, or cleared at).
``Alarm.from_body`` refuses anything else with a ``BadAlarm`` that says what and why.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from services.signaling.errors import SignalingError

ALARM_TYPE = "alarm"
"""The message type (services/signaling/endpoint.py ``ALARM_MESSAGE_TYPES``)."""
MAX_SINCE_S = 2**33
"""The latest ``since`` taken (the year 2242): a number, not an overflow."""


class AlarmKind(enum.StrEnum):
    """What a door station raises an alarm for."""

    DOOR_LEFT_OPEN = "door_left_open"
    DOOR_FORCED_OPEN = "door_forced_open"
    TAMPER = "tamper"


class BadAlarm(SignalingError):
    """An ``alarm`` body that is not one (the message is logged and dropped)."""


@dataclass(frozen=True)
class Alarm:
    """One alarm's state: ``kind``, ``active`` (raised) or not (cleared), ``since`` (unix s)."""

    kind: AlarmKind
    active: bool
    since: int

    def body(self) -> dict[str, Any]:
        """The message body."""
        return {"kind": self.kind.value, "active": self.active, "since": self.since}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Alarm:
        """The alarm a received body tells; BadAlarm naming the field and why if it is not one."""
        if not isinstance(body, dict) or set(body) != {"kind", "active", "since"}:
            keys = sorted(body) if isinstance(body, dict) else type(body).__name__
            raise BadAlarm(f"alarm body must have exactly kind, active and since, got {keys}")
        kind, active, since = body["kind"], body["active"], body["since"]
        if not isinstance(kind, str) or kind not in set(AlarmKind):
            known = ", ".join(k.value for k in AlarmKind)
            raise BadAlarm(f"alarm kind {str(kind)[:40]!r} is not one of {known}")
        if not isinstance(active, bool):
            raise BadAlarm(f"alarm 'active' must be true or false, got {type(active).__name__}")
        if isinstance(since, bool) or not isinstance(since, int) or not 0 <= since <= MAX_SINCE_S:
            raise BadAlarm(
                f"alarm 'since' must be a unix time in whole seconds, got {str(since)[:40]}"
            )
        return cls(AlarmKind(kind), active, since)
