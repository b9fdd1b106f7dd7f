"""The unit as HA sees it: the call service's events -> entity states; HA's commands -> acts.

`HomeAssistantBridge` is an `IntercomObserver` of the running call service (attached by the
composition root, again after each rebuild of the service) and owns the `HaLink`. It
publishes the call state with the peer as attributes, the missed-call count, and on an
indoor unit the do-not-disturb switch (manual or scheduled, checked every
``DND_POLL_S``); on a door station the doorbell event (which bell: name, label, button or
code), the latest visitor snapshot, the door relay, with a keypad or card reader the Access
event (one per code or card tried: never the code, nor a known card's number), and takes
the "Open door" button only with ``door_release``: through the same `DoorOpener` as every
release (rate limit, one pulse per press), recorded as ``homeassistant``. Bad commands are
logged and ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from services.callapi.door_release import UnlockRefused
from services.homeassistant import discovery as d
from services.homeassistant.commands import parse_press, parse_switch
from services.homeassistant.errors import CommandError
from services.homeassistant.link import HaLink
from services.homeassistant.settings import HaSettings, UnitInfo
from services.intercom.door import DoorStation
from services.intercom.door_opener import DoorOpener
from services.intercom.observer import IntercomObserver
from services.intercom.snapshots import SnapshotError
from services.tasks import cancel_and_wait

if TYPE_CHECKING:
    from services.callapi import Bell, Call
    from services.intercom.alarm_message import Alarm
    from services.intercom.attempt import EntranceAttempt
    from services.intercom.door_opener import ReleaseRecord
    from services.intercom.service import IntercomService

_log = logging.getLogger(__name__)

REQUESTER: Final = "homeassistant"
"""Who a door release from HA's button is recorded as."""
DND_POLL_S: Final = 30.0
"""How often the do-not-disturb switch is checked against the schedule."""
MAX_SNAPSHOT_BYTES: Final = 4 * 1024 * 1024


def call_state(call: Call | None) -> tuple[str, dict[str, Any]]:
    """(state, attributes) of the call sensor: idle, ringing or in_call, and with whom."""
    if call is None or call.is_ended():
        return "idle", {}
    state = "in_call" if call.is_answered() else "ringing"
    return state, {
        "peer": call.peer.address,
        "peer_name": call.peer.display_name(),
        "direction": "in" if call.is_incoming() else "out",
        "call_id": call.call_id,
    }


class HomeAssistantBridge(IntercomObserver):
    """Publishes one unit to Home Assistant and takes HA's commands."""

    def __init__(self, settings: HaSettings, unit: UnitInfo) -> None:
        self.settings = settings
        self.unit = unit
        self.topics = d.HaTopics(settings.discovery_prefix, settings.node_id)
        self.link = HaLink(
            settings,
            self.topics,
            commands=d.command_topics(unit, self.topics),
            on_command=self._command,
        )
        self.service: IntercomService | None = None
        self.ignored_commands = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._poll: asyncio.Task[None] | None = None
        for topic, config in d.entity_configs(unit, settings, self.topics):
            self.link.set_retained(topic, d.encode(config))

    async def start(self) -> None:
        """Connect to HA's broker in the background."""
        await self.link.start()

    async def close(self) -> None:
        """Detach, say offline and disconnect; idempotent."""
        self.detach()
        await cancel_and_wait(self._tasks)
        await self.link.close()

    def status(self) -> dict[str, Any]:
        """What ``callbox status --json`` shows of the link to Home Assistant."""
        return {
            "broker": f"{self.settings.host}:{self.settings.port}",
            "node_id": self.settings.node_id,
            "connected": self.link.connected.is_set(),
            "door_release": self.settings.door_release,
            "ignored_commands": self.ignored_commands,
        }

    # the call service --------------------------------------------------------------------------

    def attach(self, service: IntercomService) -> None:
        """Watch ``service`` (the one running now) and publish its whole state."""
        self.detach()
        self.service = service
        service.watchers.append(self)
        self.call_changed(None)
        self.missed_changed()
        if self.unit.is_door:
            relay = service.io.relay
            self._set(d.DOOR, d.ON if relay.is_active else d.OFF)
            self._announce_sensors(service)
            io = service.io
            topic, config = d.access_config(
                self.unit, self.topics, entrance=io.keypad is not None or bool(io.card_readers)
            )
            self.link.set_retained(topic, d.encode(config))
            self._spawn(self._publish_latest_snapshot(service))
        else:
            self.dnd_changed()
            self._poll = self._spawn(self._poll_dnd())

    def detach(self) -> None:
        """Stop watching the service (it is being rebuilt or closed)."""
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        if self.service is not None and self in self.service.watchers:
            self.service.watchers.remove(self)
        self.service = None

    def _set(self, object_id: str, text: str) -> None:
        self.link.set_retained(self.topics.state(object_id), text.encode())

    def call_changed(self, call: Call | None) -> None:
        """Publish the call sensor and its attributes."""
        if self.service is None:
            return
        state, attributes = call_state(self.service.calls.active_call)
        self.link.set_retained(
            self.topics.attributes(d.CALL), json.dumps(attributes, sort_keys=True).encode()
        )
        self._set(d.CALL, state)

    def missed_changed(self) -> None:
        """Publish the missed-call count."""
        if self.service is not None:
            self._set(d.MISSED, str(self.service.calls.missed_calls))

    def dnd_changed(self) -> None:
        """Publish whether do-not-disturb is in force (the switch reports back)."""
        if self.service is not None and not self.unit.is_door:
            self._set(d.DND, d.ON if self.service.dnd_active() else d.OFF)

    def doorbell_pressed(
        self, call: Call | None, targets: tuple[str, ...], bell: Bell | None = None
    ) -> None:
        """Fire the doorbell event: which bell, and the call it started (if any)."""
        payload: dict[str, Any] = {"event_type": d.RING, "targets": list(targets)}
        if call is not None:
            payload["call_id"] = call.call_id
        bell = bell or (call.props.bell if call is not None else None)
        if bell is not None:
            payload |= {"bell": bell.name, "bell_label": bell.label or bell.name, "via": bell.via}
        self.link.send_event(self.topics.state(d.DOORBELL), json.dumps(payload).encode())

    def access_attempted(self, attempt: EntranceAttempt) -> None:
        """Fire the Access event: granted or refused, who, via, why (never a code)."""
        payload: dict[str, Any] = {
            "event_type": d.GRANTED if attempt.granted else d.REFUSED,
            "kind": attempt.kind,
            "via": attempt.via,
            "who": attempt.who,
            "reason": attempt.reason,
        }
        if attempt.card:  # only a card the list does not know (logged already, to enroll)
            payload["card"] = attempt.card
        self.link.send_event(self.topics.state(d.ACCESS), json.dumps(payload).encode())

    def door_released(self, record: ReleaseRecord) -> None:
        """The relay pulses: the door binary sensor is on (unlocked)."""
        if record.opened:
            self._set(d.DOOR, d.ON)

    def door_closed(self) -> None:
        """The pulse is over: locked again."""
        self._set(d.DOOR, d.OFF)

    # the door contact, tamper and alarms (services/intercom/alarms.py) -------------------------

    def _announce_sensors(self, service: IntercomService) -> None:
        """Announce the supervision entities this wiring has (again after each rebuild)."""
        io = service.io
        configs = d.sensor_configs(
            self.unit, self.topics, door_contact=io.door_contact.wired, tamper=io.tamper.wired
        )
        for topic, config in configs:
            self.link.set_retained(topic, d.encode(config))
        if io.door_contact.wired:
            self.sensor_changed("door_contact", io.door_contact.is_active)
        if io.tamper.wired:
            self.sensor_changed("tamper", io.tamper.is_active)
        if io.door_contact.wired or io.tamper.wired:
            self._publish_alarms()

    def sensor_changed(self, name: str, active: bool) -> None:
        """The door contact (on = open) or the tamper switch (on = tampered) changed."""
        object_id = d.DOOR_CONTACT if name == "door_contact" else d.TAMPER
        self._set(object_id, d.ON if active else d.OFF)

    def alarm_changed(self, alarm: Alarm) -> None:
        """Update the problem sensor; a raised alarm also fires the alarm event."""
        self._publish_alarms()
        if alarm.active:
            payload = {"event_type": alarm.kind.value, "since": alarm.since}
            self.link.send_event(self.topics.state(d.ALARM), json.dumps(payload).encode())

    def _publish_alarms(self) -> None:
        if not isinstance(self.service, DoorStation):
            return
        active = self.service.alarms.active
        attributes: dict[str, Any] = {"alarms": sorted(kind.value for kind in active)}
        attributes |= {f"{kind.value}_since": alarm.since for kind, alarm in active.items()}
        self.link.set_retained(
            self.topics.attributes(d.DOOR_ALARM), json.dumps(attributes, sort_keys=True).encode()
        )
        self._set(d.DOOR_ALARM, d.ON if active else d.OFF)

    def snapshot_saved(self, path: Path) -> None:
        """Publish a door station's new visitor snapshot on the image topic."""
        if self.unit.is_door:
            self._spawn(self._publish_snapshot(path))

    async def _publish_latest_snapshot(self, service: IntercomService) -> None:
        if service.snapshots is None:
            return
        try:
            found = await asyncio.to_thread(service.snapshots.list)
        except SnapshotError as err:
            _log.warning("Home Assistant: no snapshot to show: %s", err)
            return
        if found:
            await self._publish_snapshot(found[0])

    async def _publish_snapshot(self, path: Path) -> None:
        try:
            data = await asyncio.to_thread(_read_snapshot, path)
        except OSError as err:
            _log.warning("Home Assistant: snapshot %s not sent: %s", path, err)
            return
        self.link.set_retained(self.topics.state(d.SNAPSHOT), data)

    async def _poll_dnd(self) -> None:
        while True:
            await asyncio.sleep(DND_POLL_S)
            self.dnd_changed()

    # commands ----------------------------------------------------------------------------------

    def _command(self, topic: str, payload: bytes) -> None:
        try:
            if topic == self.topics.command(d.OPEN_DOOR):
                self._press(payload)
            elif topic == self.topics.command(d.DND):
                self._switch_dnd(payload)
            else:
                raise CommandError("no command is taken on this topic")
        except CommandError as err:
            self.ignored_commands += 1
            _log.warning("Home Assistant command on %s ignored: %s", topic, err)

    def _press(self, payload: bytes) -> None:
        parse_press(payload)
        if not self.settings.door_release:
            raise CommandError("door release from Home Assistant is off (door_release = false)")
        if not isinstance(self.service, DoorStation):
            raise CommandError("this unit has no door opener running")
        self._spawn(self._open(self.service.opener))

    async def _open(self, opener: DoorOpener) -> None:
        try:
            await opener.open(REQUESTER)
        except UnlockRefused as err:
            _log.warning("Home Assistant's door release refused: %s", err)

    def _switch_dnd(self, payload: bytes) -> None:
        on = parse_switch(payload)
        if self.service is None:
            raise CommandError("the call service is not running")
        self.service.set_manual_dnd(on)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("Home Assistant bridge task failed", exc_info=task.exception())


def _read_snapshot(path: Path) -> bytes:
    """The JPEG bytes of a snapshot file (blocking), bounded in size."""
    with path.open("rb") as file:
        data = file.read(MAX_SNAPSHOT_BYTES + 1)
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise OSError(f"larger than {MAX_SNAPSHOT_BYTES} bytes")
    return data
