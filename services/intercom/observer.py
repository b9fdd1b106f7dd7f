"""What the call service tells an onlooker (Home Assistant): calls, rings, snapshots, the door.

An `IntercomObserver` only watches: it is told after the service acted, from the event loop,
and must not block. Each method does nothing by default, so an onlooker overrides what it
shows. A door station also reports doorbell presses and door releases.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.callapi import Call
    from services.intercom.alarm_message import Alarm
    from services.intercom.door_opener import ReleaseRecord


class IntercomObserver:
    """Told what the call service did; every method is a no-op unless overridden."""

    def call_changed(self, call: Call) -> None:
        """``call`` changed status, or ended (``call.is_ended()``)."""

    def missed_changed(self) -> None:
        """The count of missed calls (``Calls.missed_calls``) may have changed."""

    def snapshot_saved(self, path: Path) -> None:
        """A new visitor snapshot was written at ``path``."""

    def doorbell_pressed(self, call: Call | None, targets: tuple[str, ...]) -> None:
        """The doorbell was pressed: ``call`` rings ``targets`` (None: nobody could be rung)."""

    def door_released(self, record: ReleaseRecord) -> None:
        """A door release was asked for: ``record.opened`` says whether the relay pulsed."""

    def door_closed(self) -> None:
        """The relay pulse that ``door_released`` reported is over: the door is locked again."""

    def dnd_changed(self) -> None:
        """The manual do-not-disturb was switched (``IntercomService.dnd_active`` may differ)."""

    def sensor_changed(self, name: str, active: bool) -> None:
        """A door station's switch changed: ``door_contact`` (active = open) or ``tamper``."""

    def alarm_changed(self, alarm: Alarm) -> None:
        """A door station raised (``alarm.active``) or cleared an alarm."""
