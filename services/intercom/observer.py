"""What the call service tells an onlooker (Home Assistant): calls, rings, snapshots, the door.

An `IntercomObserver` only watches: it is told after the service acted, from the event loop,
and must not block. Each method does nothing by default, so an onlooker overrides what it
shows. A door station also reports doorbell presses (which bell), door releases and, with
an entrance panel, every access attempt at its keypad or card readers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.callapi import Bell, Call
    from services.intercom.alarm_message import Alarm
    from services.intercom.attempt import EntranceAttempt
    from services.intercom.door_opener import ReleaseRecord


class IntercomObserver:
    """Told what the call service did; every method is a no-op unless overridden."""

    def call_changed(self, call: Call) -> None:
        """``call`` changed status, or ended (``call.is_ended()``)."""

    def missed_changed(self) -> None:
        """The count of missed calls (``Calls.missed_calls``) may have changed."""

    def snapshot_saved(self, path: Path) -> None:
        """A new visitor snapshot was written at ``path``."""

    def doorbell_pressed(
        self, call: Call | None, targets: tuple[str, ...], bell: Bell | None = None
    ) -> None:
        """``bell`` was rung (button or dial code): ``call`` rings ``targets`` (None: nobody).

        ``bell`` None: the default doorbell of a caller that does not name one.
        """

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

    def access_attempted(self, attempt: EntranceAttempt) -> None:
        """An access code or card was tried at the door's entrance (granted or refused)."""
