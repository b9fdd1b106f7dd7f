"""An indoor unit's side of door alarms: the ``alarm`` messages of its door stations.

``AlarmInbox`` takes the ``alarm`` messages (``Calls.handle_messages``) and keeps the active
alarms by (door, kind). An alarm is taken only from a door station: the sender must be a
pinned, unblocked contact (the signaling already dropped anyone else, ``unknown_sender``)
whose role is "door", or whose role is not set and who is one of this unit's ``targets``
(the door station(s) its monitor button calls, in a house's untyped ``[[contacts]]``).
Anyone else's alarm (another indoor unit, a phone) is refused and logged, as is a malformed
body (services/intercom/alarm_message.py). Raised alarms are logged as warnings, cleared
ones as info; ``on_change`` is told after each change (the unit's call UI shows them).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

from services.callapi import Calls
from services.intercom.alarm_message import Alarm, AlarmKind, BadAlarm
from services.signaling.endpoint import ALARM_MESSAGE_TYPES, Message
from services.signaling.limits import QuietLog

_log = logging.getLogger(__name__)

DOOR_ROLE = "door"
WORDS = {
    AlarmKind.DOOR_LEFT_OPEN: "door left open",
    AlarmKind.DOOR_FORCED_OPEN: "door forced open",
    AlarmKind.TAMPER: "tamper alarm",
}
"""How the notice and the log name each alarm."""


class AlarmInbox:
    """The active alarms of this unit's door stations (module docstring)."""

    def __init__(
        self,
        calls: Calls,
        *,
        doors: Callable[[], tuple[str, ...]] = tuple,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """Alarms for ``calls``' endpoint; ``doors``: its targets (its door stations)."""
        self.calls = calls
        self._doors = doors
        self.on_change = on_change
        self.active: dict[tuple[str, AlarmKind], Alarm] = {}
        """The alarms raised now, by (door address, kind)."""
        self.refused = 0
        """Alarm messages refused: not from a door station, or malformed."""
        self._quiet = QuietLog(_log)

    def start(self) -> None:
        """Take the ``alarm`` messages."""
        self.calls.handle_messages(ALARM_MESSAGE_TYPES, self.on_message)

    def close(self) -> None:
        """Give the ``alarm`` messages back (then dropped as ``not_handled``)."""
        self.calls.handle_messages(ALARM_MESSAGE_TYPES, None)

    def may_raise(self, address: str) -> str:
        """Why ``address`` may not send alarms here ("" if it may)."""
        contact = self.calls.signaling.contacts.get(address)
        if contact is None:
            return f"{address} is not a pinned contact"
        if contact.blocked:
            return f"{address} is blocked"
        if contact.role == DOOR_ROLE or (not contact.role and address in self._doors()):
            return ""
        return f"{address} is not a door station (contact role {contact.role or 'unset'!r})"

    async def on_message(self, message: Message) -> None:
        """Take one verified ``alarm`` message (see the module docstring)."""
        why = self.may_raise(message.sender)
        if not why:
            try:
                alarm = Alarm.from_body(message.body)
            except BadAlarm as err:
                why = str(err)
        if why:
            self.refused += 1
            self._quiet.warning(
                "alarm_refused",
                "%s: alarm from %s refused: %s",
                self.calls.address,
                message.sender,
                why,
            )
            return
        self._apply(message.sender, alarm)

    def _apply(self, door: str, alarm: Alarm) -> None:
        key = (door, alarm.kind)
        name = self._name(door)
        if alarm.active:
            if key in self.active:
                self.active[key] = alarm  # told again (this unit came online): nothing new
                return
            self.active[key] = alarm
            _log.warning("%s: alarm from %s: %s", self.calls.address, name, WORDS[alarm.kind])
        else:
            if self.active.pop(key, None) is None:
                return
            _log.info("%s: alarm from %s cleared: %s", self.calls.address, name, WORDS[alarm.kind])
        if self.on_change is not None:
            self.on_change()

    def _name(self, door: str) -> str:
        return self.calls.profile_of(door).display_name()

    def lines(self) -> tuple[str, ...]:
        """One line per active alarm, oldest first: "Front door: door left open (since 14:02)"."""
        alarms = sorted(self.active.items(), key=lambda item: item[1].since)
        return tuple(
            f"{self._name(door)}: {WORDS[kind]} (since "
            f"{datetime.datetime.fromtimestamp(alarm.since).strftime('%H:%M')})"
            for (door, kind), alarm in alarms
        )

    def status(self) -> list[dict[str, Any]]:
        """For ``callbox status``: the active alarms, each {door, kind, since}."""
        return [
            {"door": door, "kind": kind.value, "since": alarm.since}
            for (door, kind), alarm in sorted(self.active.items(), key=lambda i: i[1].since)
        ]
