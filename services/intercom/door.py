"""The door station: a doorbell press rings the flat; a signed request opens the door.

- doorbell press -> one call to every target at once (a ring group: the first to answer
  wins, the others stop ringing); a press while a call is in progress starts nothing;
  ringback on the door's speaker, ring timeout and maximum call duration from the call
  properties; the status LED blinks while ringing and is steady in a call;
- an entrance panel: several bells (``[[bells]]``: a push button each, a dial code each,
  :meth:`DoorStation.dial`), each ringing its ring group in stages (panel.py, escalation.py:
  indoor units, then phones, then a fallback), minus targets in their do-not-disturb hours;
  the invite names the bell. A press of any bell while a call is in progress is ignored, as
  a 2N panel does: one visitor at a time. When the door opens by any path while the call
  still rings, every callee stops ringing (``cancel`` reason ``door-opened``);
- a "monitor" call from a contact with the monitor right is answered at once, with
  video and without ringing at the door;
- ``unlock`` from the answering party (checked by the Call API) -> ``DoorOpener``: one
  relay pulse per fresh request, rate-limited, recorded; the door-release input at the
  door (the inside "exit" button) pulses the relay directly;
- a visitor snapshot from the door's own camera at ring time;
- Web Push (services/push, when configured): phones register with signed messages; a press
  pushes every subscribed phone of the ring group beside the invites, and a subscribed phone
  that is offline counts as being woken (``Calls.set_wake_check``): the call waits for it.
  The visitor snapshot's camera frame follows in a second push of the same call, while it
  still rings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from av import VideoFrame

from hal.inputs import Button, ButtonRole
from hal.io_devices import IoDevices
from services.callapi import DOOR_OPENED, Bell, Call, CallProperties, Calls, CallStatus, UserProfile
from services.callapi.door_release import UnlockRefused
from services.intercom.alarms import DoorAlarms
from services.intercom.calllog import CallLog
from services.intercom.door_opener import DoorOpener, ReleaseRecord
from services.intercom.escalation import Stage
from services.intercom.panel import FLAT_PREFIX, EntrancePanel
from services.intercom.service import IntercomService
from services.intercom.settings import DEFAULT_BELL, IntercomSettings
from services.intercom.snapshots import SnapshotStore
from services.push.service import PushService
from services.signaling.contacts import Right

_log = logging.getLogger(__name__)


class DoorStation(IntercomService):
    """The call service of a door station."""

    def __init__(
        self,
        calls: Calls,
        io: IoDevices,
        settings: IntercomSettings,
        *,
        call_log: CallLog | None = None,
        snapshots: SnapshotStore | None = None,
        push: PushService | None = None,
    ) -> None:
        super().__init__(calls, io, settings, call_log=call_log, snapshots=snapshots)
        self.push = push
        """Web Push to the phones of the ring group (None: not configured)."""
        self.opener = DoorOpener(
            io.relay, per_minute=settings.unlock_per_minute, on_record=self._released
        )
        self.presses: list[tuple[float, bool]] = []  # (unix time, started a call)
        self.alarms = DoorAlarms(
            calls,
            io,
            self.opener,
            settings.alarms,
            targets=self.ring_addresses,
            watchers=self.watchers,
        )
        """Door left open, forced open, tamper (services/intercom/alarms.py)."""
        self.panel = EntrancePanel(self, name=calls.address)
        """The bells: which one a button or code rings, its stages, the escalation."""

    async def start(self) -> None:
        """Take the doorbell and the door relay."""
        await super().start()
        self.calls.signaling.set_targets(self.settings.all_targets())  # every bell's
        self.calls.set_unlock_handler(self.opener)
        if self.push is not None:  # started and closed by its owner (the composition root)
            self.push.use_targets(self.ring_addresses)
            self.calls.handle_messages(self.push.request_types, self.push.registrar.on_message)
            self.calls.set_wake_check(self.push.can_wake)  # an offline phone is waited for
        self.spawn(self.prewarm())
        await self.alarms.start()

    async def prewarm(self) -> None:
        """Keep an offer ready per target while idle, so a press only has to send it."""
        props = self._ring_properties()
        if props.user is not None:
            await self.calls.prewarm(props, count=len(props.targets()))

    async def close(self) -> None:
        """Stop taking presses and release requests."""
        await self.alarms.close()
        self.calls.set_unlock_handler(None)
        if self.push is not None:
            self.calls.handle_messages(self.push.request_types, None)
            self.calls.set_wake_check(None)
        await super().close()
        await self.panel.stop()
        await self.opener.close()

    def apply_settings(self, settings: IntercomSettings) -> None:
        """New targets, limits and policies apply from the next press or request."""
        super().apply_settings(settings)
        self.calls.signaling.set_targets(settings.all_targets())
        self.opener.per_minute = settings.unlock_per_minute
        self.alarms.settings = settings.alarms
        self.spawn(self.prewarm())

    # inputs ---------------------------------------------------------------------------------

    async def button_pressed(self, button: Button) -> None:
        """A bell's button: ring its flat. Door release (the inside exit button): open."""
        if button.role == ButtonRole.DOORBELL:
            await self.ring(self.panel.bell(button.name, via="button"))
        elif button.role == ButtonRole.DOOR_RELEASE:
            try:
                await self.opener.open("exit button")
            except UnlockRefused as err:
                _log.warning("%s: exit button: %s", self.calls.address, err)
        else:
            await super().button_pressed(button)

    async def dial(self, code: str) -> bool:
        """A code dialled on the keypad: ring its bell; False (nothing rung) for an unknown code.

        True for a known code, also when the press is ignored because a call is in progress.
        """
        bell = self.panel.bell_for_code(code)
        if bell is None:
            _log.info("%s: dialled code of %d digits: no such bell", self.calls.address, len(code))
            return False
        await self.ring(bell)
        return True

    async def ring(self, bell: Bell | None = None) -> Call | None:
        """Ring ``bell`` (default: the doorbell) in stages; None when nobody can be rung now."""
        bell = bell or self.panel.bell(DEFAULT_BELL)
        call = None
        stages: list[Stage] = []
        if self.calls.is_call_in_progress():
            _log.info("%s: bell %s pressed during a call: ignored", self.calls.address, bell.name)
        else:
            stages = self.panel.stages(bell)
            if not stages:
                _log.error("%s: bell %s pressed but nobody to ring", self.calls.address, bell.name)
            else:
                props = self._ring_properties(stages[0].targets)
                props.bell = bell
                call = self.calls.call(props)
        self.presses.append((time.time(), call is not None))
        if self.watchers:
            rung = stages[0].targets if call is not None else ()
            for watcher in list(self.watchers):
                watcher.doorbell_pressed(call, rung, bell)
        if call is not None:
            await self.panel.escalate(call, stages[1:], self._stage_rung)
            if self.push is not None:  # beside the invites: a slow push service delays nothing
                self.spawn(self._push_ring(call, stages[0].targets, 0.0))
            await call.start(self.watch(call))
            self.spawn(self._snapshot_from_camera(call))
        return call

    def profile_of(self, address: str) -> UserProfile:
        """The best profile known of ``address`` (the panel tells phones by its role)."""
        return self.calls.profile_of(address)

    def in_flat(self, flat: str) -> list[str]:
        """The site directory's indoor units and phones of ``flat``."""
        return self.calls.signaling.contacts.in_flat(flat)

    def _stage_rung(self, call: Call, stage: Stage, rung: list[str]) -> None:
        if self.push is not None:
            self.spawn(self._push_ring(call, tuple(rung), stage.after_s))

    async def call_status(self, call: Call, status: CallStatus) -> None:
        """Also: an answer, or the end, of the door's call drops its pending stages."""
        await super().call_status(call, status)
        if not call.is_incoming() and (status == CallStatus.ANSWER or call.is_ended()):
            await self.panel.stop()

    async def _push_ring(self, call: Call, targets: Sequence[str], after_s: float) -> None:
        assert self.push is not None
        ring_s = max(1.0, call.props.ring_timeout_s - after_s)
        bell = call.props.bell  # the phone shows which flat's visitor (not the default bell's)
        label = bell.label or bell.name if bell and bell.name != DEFAULT_BELL else ""
        await self.push.ring(call.call_id, list(targets), ring_s, bell=label)

    def _ring_properties(self, targets: Sequence[str] | None = None) -> CallProperties:
        props = self.calls.create_call_properties(video=self.settings.video)
        targets = list(self.reachable_targets() if targets is None else targets)
        props.user = self.calls.profile_of(targets[0]) if targets else None
        props.extra_targets = [self.calls.profile_of(t) for t in targets[1:]]
        return props

    def ring_addresses(self, targets: Sequence[str] | None = None) -> list[str]:
        """The addresses the targets name (default: every bell's and the fallback), in order.

        ``flat:<flat>`` stands for that flat's indoor units and phones in the site directory
        (its contacts with that flat), in address order.
        """
        contacts = self.calls.signaling.contacts
        addresses: list[str] = []
        for target in self.settings.all_targets() if targets is None else targets:
            if target.startswith(FLAT_PREFIX):
                members = contacts.in_flat(target.removeprefix(FLAT_PREFIX))
            else:
                members = [target]
            addresses.extend(a for a in members if a not in addresses)
        return addresses

    def reachable_targets(self, targets: Sequence[str] | None = None) -> list[str]:
        """The targets (default: the doorbell's) whose keys are pinned.

        One untrusted unit must not silence the rest.
        """
        targets = self.settings.targets if targets is None else targets
        contacts = self.calls.signaling.contacts
        directory = self.calls.signaling.directory
        for target in targets:
            flat = target.removeprefix(FLAT_PREFIX)
            if not target.startswith(FLAT_PREFIX) or contacts.in_flat(flat):
                continue
            if directory is None or directory.current is None:
                _log.warning(
                    "%s: target %s: no site directory accepted yet (is [directory] admin_key "
                    "set, and the directory published?)",
                    self.calls.address,
                    target,
                )
            else:
                _log.error(
                    "%s: target %s: the site directory lists no indoor unit or phone of "
                    "flat %s: nobody there is rung",
                    self.calls.address,
                    target,
                    flat,
                )
        addresses = self.ring_addresses(targets)
        trusted = [t for t in addresses if contacts.get(t) is not None]
        for target in addresses:
            if target not in trusted:
                _log.error(
                    "%s: target %s is not a contact (trust its keys with `callbox keys "
                    "trust`): it is not rung",
                    self.calls.address,
                    target,
                )
        return trusted

    async def _snapshot_from_camera(self, call: Call) -> None:
        camera = self.calls.media.camera
        if camera is None or (self.snapshots is None and self.push is None):
            return
        try:
            _, frame = await asyncio.wait_for(
                camera.shared.next_frame(0), self.settings.snapshot_wait_s
            )
        except TimeoutError:
            _log.warning("%s: no camera frame for the visitor snapshot", self.calls.address)
            return
        if isinstance(frame, VideoFrame):
            if self.push is not None:  # the picture push goes beside the snapshot's file
                self.spawn(self.push.ring_snapshot(call.call_id, frame, lambda: _rings(call)))
            await self.keep_snapshot(call, frame)

    def _released(self, record: ReleaseRecord) -> None:
        call = self.calls.active_call
        if call is not None and call.call_id == record.call_id:
            self.note(call, "door opened" if record.opened else f"release refused: {record.reason}")
        elif record.opened and call is not None and not call.is_incoming() and _rings(call):
            self.note(call, f"door opened by {record.requester}")
        if record.opened and call is not None:  # any path: every callee stops ringing
            self.spawn(call.cancel_ring(DOOR_OPENED))
        for watcher in list(self.watchers):
            watcher.door_released(record)
        if record.opened and self.watchers:
            self.spawn(self._door_closed())

    async def _door_closed(self) -> None:
        """Tell the watchers once the relay pulse is over."""
        await self.opener.wait_idle()
        for watcher in list(self.watchers):
            watcher.door_closed()

    def status(self) -> dict[str, Any]:
        """The call service's status, and Web Push's when configured."""
        result = super().status()
        if self.push is not None:
            result["push"] = self.push.status()
        result["alarms"] = self.alarms.status()
        return result

    # incoming calls: "monitor" ------------------------------------------------------------------

    def on_incoming(self, profile: UserProfile, video: bool) -> CallProperties | None:
        """Answer a monitor call from an allowed unit at once; refuse everything else."""
        contact = self.calls.signaling.contacts.get(profile.address)
        if contact is None or Right.MONITOR not in contact.rights:
            _log.warning("%s: call from %s refused: no monitor right", self.calls.address, profile)
            return None
        if not self.settings.auto_answer_monitor:
            _log.info("%s: monitor call from %s refused by config", self.calls.address, profile)
            return None
        props = self.calls.create_call_properties(video=True)
        props.auto_answer = True
        return props


def _rings(call: Call) -> bool:
    """True while ``call`` rings: neither answered nor over."""
    return not call.is_answered() and not call.is_ended()
