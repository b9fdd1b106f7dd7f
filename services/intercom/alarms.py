"""A door station's alarms: door left open, door forced open, tamper (docs/operations.md).

``DoorAlarms`` watches the door contact and the tamper switch (``IoDevices.door_contact``,
``IoDevices.tamper``):

- **door left open**: raised once the door has been open ``left_open_s`` (a door already
  open at start counts from the start), cleared when it closes;
- **door forced open**: raised when the contact opens while no release pulse of the door's
  ``DoorOpener`` is in progress and none ended in the last ``forced_grace_s`` (a code, a
  card, a callee or the exit button opened it otherwise); cleared when the door closes. A
  door open at start is not called forced: how it opened is unknown;
- **tamper**: raised while the tamper switch is active, cleared when it is not.

Each is logged (warning when raised, info when cleared), shown in the door's status and
sent as an ``alarm`` message (services/intercom/alarm_message.py) to the door's indoor
units: every pinned, unblocked contact with role "indoor", and every ring target whose
contact has no role (a house's untyped ``[[contacts]]``). A unit that is offline is told
when it comes online: every active alarm again, and the clear of any it was told of that
ended meanwhile. Messages go out one at a time, in order, per unit; at most
``MAX_PENDING`` changes wait per unit (more, from a flapping contact, collapse into the
current state).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from hal.io_devices import IoDevices
from services.callapi import Calls
from services.intercom.alarm_message import ALARM_TYPE, Alarm, AlarmKind
from services.intercom.door_opener import DoorOpener
from services.intercom.observer import IntercomObserver
from services.intercom.settings import AlarmSettings
from services.signaling.errors import SignalingError
from services.tasks import cancel_and_wait

_log = logging.getLogger(__name__)

INDOOR_ROLE = "indoor"
MAX_PENDING = 16
"""Alarm changes waiting to be sent to one unit; beyond, only the current state is sent."""


class DoorAlarms:
    """Raises and clears a door station's alarms and tells its indoor units (module docstring)."""

    def __init__(
        self,
        calls: Calls,
        io: IoDevices,
        opener: DoorOpener,
        settings: AlarmSettings,
        *,
        targets: Callable[[], list[str]] = list,
        watchers: list[IntercomObserver] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Alarms of the door contact and tamper switch of ``io``, releases by ``opener``.

        ``targets``: the door's ring addresses (an untyped contact among them is taken for
        an indoor unit); ``watchers``: told of every sensor and alarm change (Home Assistant).
        """
        self.calls = calls
        self.io = io
        self.opener = opener
        self.settings = settings
        self._targets = targets
        self.watchers = watchers if watchers is not None else []
        self._wall = wall_clock
        self.active: dict[AlarmKind, Alarm] = {}
        """The alarms raised now, by kind."""
        self._left_open: asyncio.TimerHandle | None = None
        self._told: dict[str, set[AlarmKind]] = {}
        self._outbox: dict[str, list[Alarm]] = {}
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self.sent = 0
        """Alarm messages published (for status and tests)."""

    async def start(self) -> None:
        """Read both switches (a door open or a housing open at start counts) and watch them."""
        self._sender = asyncio.create_task(self._send_loop(), name="door-alarms")
        self.io.door_contact.on_change = self._door_changed
        self.io.tamper.on_change = self._tamper_changed
        self.calls.presence_listeners.append(self._presence)
        if self.io.door_contact.is_active:
            _log.info("%s: the door is open at start", self.calls.address)
            self._start_left_open()
        if self.io.tamper.is_active:
            self._raise(AlarmKind.TAMPER)
        for address in self.recipients():
            if self.calls.signaling.is_online(address):
                self._enqueue(address, self._state_for(address))

    async def close(self) -> None:
        """Stop watching and sending (the alarms stay as they are at the indoor units)."""
        self.io.door_contact.on_change = None
        self.io.tamper.on_change = None
        if self._presence in self.calls.presence_listeners:
            self.calls.presence_listeners.remove(self._presence)
        self._cancel_left_open()
        if self._sender is not None:
            await cancel_and_wait([self._sender])
            self._sender = None

    def status(self) -> list[dict[str, Any]]:
        """For ``callbox status``: the active alarms, each {door, kind, since}, oldest first.

        The same shape as an indoor unit's (``AlarmInbox.status``); the switches themselves
        are in the hardware state (``door_open``, ``tampered``).
        """
        return [
            {"door": self.calls.address, "kind": kind.value, "since": alarm.since}
            for kind, alarm in sorted(self.active.items(), key=lambda item: item[1].since)
        ]

    def recipients(self) -> list[str]:
        """The indoor units told of alarms (module docstring), in address order."""
        contacts = self.calls.signaling.contacts
        targets = set(self._targets())
        found = []
        for address, contact in contacts.contacts.items():
            if contact.blocked:
                continue
            if contact.role == INDOOR_ROLE or (not contact.role and address in targets):
                found.append(address)
        return sorted(found)

    # the switches ---------------------------------------------------------------------------

    def _door_changed(self, is_open: bool) -> None:
        for watcher in list(self.watchers):
            watcher.sensor_changed("door_contact", is_open)
        if is_open:
            released = self.opener.releasing(self.settings.forced_grace_s)
            _log.info(
                "%s: door opened%s", self.calls.address, "" if released else " without a release"
            )
            self._start_left_open()
            if not released:
                self._raise(AlarmKind.DOOR_FORCED_OPEN)
        else:
            _log.info("%s: door closed", self.calls.address)
            self._cancel_left_open()
            self._clear(AlarmKind.DOOR_LEFT_OPEN)
            self._clear(AlarmKind.DOOR_FORCED_OPEN)

    def _tamper_changed(self, tampered: bool) -> None:
        for watcher in list(self.watchers):
            watcher.sensor_changed("tamper", tampered)
        if tampered:
            self._raise(AlarmKind.TAMPER)
        else:
            self._clear(AlarmKind.TAMPER)

    def _start_left_open(self) -> None:
        self._cancel_left_open()
        loop = asyncio.get_running_loop()
        self._left_open = loop.call_later(self.settings.left_open_s, self._left_open_due)

    def _cancel_left_open(self) -> None:
        if self._left_open is not None:
            self._left_open.cancel()
            self._left_open = None

    def _left_open_due(self) -> None:
        self._left_open = None
        if self.io.door_contact.is_active:
            self._raise(AlarmKind.DOOR_LEFT_OPEN)

    # raising and clearing -------------------------------------------------------------------

    def _raise(self, kind: AlarmKind) -> None:
        if kind in self.active:
            return
        alarm = self.active[kind] = Alarm(kind, True, int(self._wall()))
        _log.warning("%s: alarm raised: %s", self.calls.address, _WORDS[kind])
        self._changed(alarm)

    def _clear(self, kind: AlarmKind) -> None:
        if self.active.pop(kind, None) is None:
            return
        _log.info("%s: alarm cleared: %s", self.calls.address, _WORDS[kind])
        self._changed(Alarm(kind, False, int(self._wall())))

    def _changed(self, alarm: Alarm) -> None:
        for watcher in list(self.watchers):
            watcher.alarm_changed(alarm)
        for address in self.recipients():
            if self.calls.signaling.is_online(address):
                self._enqueue(address, [alarm])

    # telling the indoor units ---------------------------------------------------------------

    def _presence(self, address: str, online: bool) -> None:
        if online and address in self.recipients():
            self._enqueue(address, self._state_for(address))

    def _state_for(self, address: str) -> list[Alarm]:
        """The active alarms, and the clear of each one ``address`` was told of that ended."""
        now = int(self._wall())
        told = self._told.get(address, set())
        cleared = [Alarm(kind, False, now) for kind in sorted(told - set(self.active))]
        return [*cleared, *self.active.values()]

    def _enqueue(self, address: str, alarms: list[Alarm]) -> None:
        if not alarms:
            return
        pending = self._outbox.setdefault(address, [])
        pending.extend(alarms)
        if len(pending) > MAX_PENDING:
            _log.warning(
                "%s: more than %d alarm changes wait for %s: only the current state is sent",
                self.calls.address,
                MAX_PENDING,
                address,
            )
            self._outbox[address] = self._state_for(address)
        self._wake.set()

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                address = next(iter(self._outbox))
                alarms = self._outbox.pop(address)
                for alarm in alarms:
                    await self._send(address, alarm)

    async def _send(self, address: str, alarm: Alarm) -> None:
        call_id = f"alarm-{alarm.kind.value.replace('_', '-')}"
        try:
            await self.calls.signaling.send(address, ALARM_TYPE, call_id, alarm.body())
        except SignalingError as err:
            _log.warning(
                "%s: could not tell %s of alarm %s: %s (told again when it comes online)",
                self.calls.address,
                address,
                alarm.kind.value,
                err,
            )
            return
        self.sent += 1
        told = self._told.setdefault(address, set())
        if alarm.active:
            told.add(alarm.kind)
        else:
            told.discard(alarm.kind)


_WORDS = {
    AlarmKind.DOOR_LEFT_OPEN: "door left open",
    AlarmKind.DOOR_FORCED_OPEN: "door forced open",
    AlarmKind.TAMPER: "tamper switch (housing open or off the wall)",
}
"""How the log names each alarm."""
