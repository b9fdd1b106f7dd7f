"""What door stations and indoor units share: the call log, snapshots, LEDs, missed calls.

``IntercomService`` is the app on top of the Call API (its IncomingListener) and the
HAL's buttons, sensors and outputs. The role classes (``DoorStation``, ``IndoorUnit``)
add what a press of each button means. Everything reaches the HAL and the Call API from
the event loop; button callbacks only spawn coroutines.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from av import VideoFrame

from hal.inputs import Button
from hal.io_devices import IoDevices
from hal.leds import LedPattern
from services.callapi import (
    Call,
    CallProperties,
    Calls,
    CallStatus,
    HangupReason,
    IncomingListener,
    InProgressListener,
    NotifyKind,
    UserProfile,
)
from services.intercom.calllog import CallLog, CallLogError, CallRecord
from services.intercom.dnd import ManualDnd
from services.intercom.observer import IntercomObserver
from services.intercom.settings import IntercomSettings
from services.intercom.snapshots import SnapshotError, SnapshotStore
from services.intercom.status_led import StatusLed

_log = logging.getLogger(__name__)


@dataclass
class CallNotes:
    """What the service learns about a call while it runs, for its log entry."""

    started_at: float = field(default_factory=time.time)
    answered_at: float | None = None
    missed: bool = False
    snapshot: str | None = None
    notes: list[str] = field(default_factory=list)


class CallWatcher(InProgressListener):
    """Forwards one call's progress to the service."""

    def __init__(self, service: IntercomService) -> None:
        self._service = service

    async def on_status(self, call: Call, status: CallStatus, video: bool) -> None:
        """Hand the call's new status to the service."""
        await self._service.call_status(call, status)

    async def on_hangup(self, call: Call, reason: HangupReason) -> None:
        """Tell the service the call is over."""
        await self._service.call_over(call)

    def on_door_release(self, call: Call, opened: bool, reason: str) -> None:
        """Note on the call's record that the door opened, or why the release was refused."""
        self._service.note(call, "door opened" if opened else f"door release refused: {reason}")


class IntercomService(IncomingListener):
    """The call service of one endpoint: HAL events <-> Call API (see the role classes)."""

    def __init__(
        self,
        calls: Calls,
        io: IoDevices,
        settings: IntercomSettings,
        *,
        call_log: CallLog | None = None,
        snapshots: SnapshotStore | None = None,
        manual_dnd: ManualDnd | None = None,
    ) -> None:
        self.calls = calls
        self.io = io
        self.settings = settings
        self.call_log = call_log
        self.snapshots = snapshots
        self._notes: dict[str, CallNotes] = {}
        self._started = False
        self.observers: list[Callable[[Call, CallStatus], None]] = []
        self.watchers: list[IntercomObserver] = []
        """Onlookers told what the service did (Home Assistant); they never act on calls."""
        self.manual_dnd = manual_dnd or ManualDnd()
        """Do-not-disturb switched by hand, beside the schedule of ``settings.dnd``."""
        self.status_led = StatusLed(io.led)
        """The status LED: the call state (the LED handling here), flashes over it."""

    # lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Take over the Call API's listener and the HAL's inputs."""
        self.calls.set_listener(self)
        for button in (*self.io.buttons.values(), *self.io.bells.values()):
            self._bind(button)
        self.status_led.show(LedPattern.IDLE)
        self._started = True

    async def close(self) -> None:
        """Stop reacting to inputs (the composition root closes the devices); idempotent."""
        if not self._started:
            return
        self._started = False
        for button in (*self.io.buttons.values(), *self.io.bells.values()):
            button.on_press = None
            button.on_release = None
        self.status_led.show(LedPattern.OFF)  # ends a flash under way too

    def apply_settings(self, settings: IntercomSettings) -> None:
        """Use ``settings`` from now on; a call in progress keeps going."""
        if settings.role != self.settings.role:
            raise ValueError("the role of a running service cannot change")
        self.settings = settings

    def dnd_active(self, now: datetime.datetime | None = None) -> bool:
        """Whether do-not-disturb is in force at local time ``now`` (default: now).

        Switched on by hand, or in the hours of the ``[dnd]`` schedule.
        """
        if self.manual_dnd.on:
            return True
        return self.settings.dnd.is_active(now or datetime.datetime.now())

    def set_manual_dnd(self, on: bool) -> None:
        """Switch the manual do-not-disturb; the schedule keeps applying in its hours."""
        if self.manual_dnd.on != on:
            self.manual_dnd.on = on
            _log.info("%s: manual do-not-disturb %s", self.calls.address, "on" if on else "off")
        for watcher in list(self.watchers):
            watcher.dnd_changed()

    def flash_led(self, pattern: LedPattern) -> None:
        """Flash ``pattern`` on the status LED (keypad feedback), then the call state again.

        A call-state change during the flash wins (`StatusLed`); nothing while stopped.
        """
        if self._started:
            self.status_led.flash(pattern)

    def _bind(self, button: Button) -> None:
        def pressed() -> None:
            self.spawn(self.button_pressed(button))

        def released() -> None:
            self.spawn(self.button_released(button))

        button.on_press = pressed
        button.on_release = released

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background (the Call API keeps and logs the task)."""
        self.calls.spawn(coro)

    async def button_pressed(self, button: Button) -> None:
        """A counted press of ``button`` (the role classes say what it does)."""
        _log.info("%s: %s pressed, nothing to do", self.calls.address, button.role.value)

    async def button_released(self, button: Button) -> None:
        """The end of a counted press of ``button``."""

    async def place_call(self, address: str, video: bool) -> Call | None:
        """Call ``address`` (``callbox call``); None when a call is in progress."""
        props = self.calls.create_call_properties(video)
        props.user = self.calls.profile_of(address)
        call = self.calls.call(props)
        if call is not None:
            await self.calls.show_call_ui(call)  # when the endpoint has a default call UI
            await call.start(self.watch(call))
        return call

    # call events ----------------------------------------------------------------------------

    def watch(self, call: Call) -> CallWatcher:
        """Start keeping notes on ``call``; returns the listener to start it with."""
        self._notes[call.call_id] = CallNotes()
        return CallWatcher(self)

    def note(self, call: Call, text: str) -> None:
        """Add ``text`` to the log entry of ``call``."""
        notes = self._notes.get(call.call_id)
        if notes is not None:
            notes.notes.append(text)

    async def call_status(self, call: Call, status: CallStatus) -> None:
        """Follow a status change: observers, LEDs, answer time (the role classes add more)."""
        for observer in list(self.observers):
            observer(call, status)
        for watcher in list(self.watchers):
            watcher.call_changed(call)
        notes = self._notes.get(call.call_id)
        if status == CallStatus.ANSWER and notes is not None:
            notes.answered_at = time.time()
        if status in (CallStatus.INCOMING, CallStatus.INPROGRESS, CallStatus.RINGING):
            self.status_led.show(LedPattern.RINGING)
        elif status in (CallStatus.ANSWER, CallStatus.CONNECTED):
            self.status_led.show(LedPattern.IN_CALL)

    async def call_over(self, call: Call) -> None:
        """A call ended: LED back to idle, log entry written."""
        self.status_led.show(LedPattern.IDLE)
        notes = self._notes.pop(call.call_id, CallNotes())
        record = CallRecord(
            call_id=call.call_id,
            peer=call.peer.address,
            peer_name=call.peer.name,
            direction="in" if call.is_incoming() else "out",
            video=call.is_video_call(),
            started_at=notes.started_at,
            answered_at=notes.answered_at,
            ended_at=time.time(),
            status=call.status.name,
            missed=notes.missed,
            snapshot=notes.snapshot,
            note="; ".join(notes.notes),
            bell=_bell_label(call),
        )
        await self.log_record(record)
        for watcher in list(self.watchers):
            watcher.call_changed(call)
            watcher.missed_changed()

    async def log_record(self, record: CallRecord) -> None:
        """Append ``record`` to the call log (a failure is logged, the service goes on)."""
        if self.call_log is None:
            return
        try:
            await self.call_log.add(record)
        except CallLogError as err:  # a full disk must not stop the intercom
            _log.error("%s: could not write the call log: %s", self.calls.address, err)

    async def keep_snapshot(self, call: Call, frame: VideoFrame) -> None:
        """Save ``frame`` as the visitor snapshot of ``call``."""
        if self.snapshots is None:
            return
        try:
            path = await self.snapshots.save(frame, call.peer.address)
        except SnapshotError as err:  # a full disk must not stop the call
            _log.error("%s: could not save the visitor snapshot: %s", self.calls.address, err)
            return
        for watcher in list(self.watchers):
            watcher.snapshot_saved(path)
        notes = self._notes.get(call.call_id)
        if notes is not None:
            notes.snapshot = path.name
        else:  # the call ended before the picture was written: attach nothing, keep it
            _log.info("%s: snapshot %s kept after the call ended", self.calls.address, path)

    # IncomingListener -----------------------------------------------------------------------

    async def on_show_user_interface(self, call: Call, props: CallProperties) -> bool:
        """Start the incoming call with our watcher; True: nothing else needs to show it."""
        await call.start(self.watch(call))
        return True

    async def on_notify(self, kind: NotifyKind, profile: UserProfile, video: bool) -> None:
        """A missed call: mark the ringing call missed, or log a call we never took."""
        if kind != NotifyKind.MISSED:
            return
        call = self.calls.active_call
        if call is not None and call.peer.address == profile.address:
            notes = self._notes.get(call.call_id)
            if notes is not None:
                notes.missed = True
                return
        await self.log_missed(profile, video, "busy in another call", CallStatus.BUSY)

    async def log_missed(
        self, profile: UserProfile, video: bool, note: str, status: CallStatus
    ) -> None:
        """Log a call that never rang here (busy, do-not-disturb) as missed."""
        for watcher in list(self.watchers):
            watcher.missed_changed()
        now = time.time()
        await self.log_record(
            CallRecord(
                call_id="",
                peer=profile.address,
                peer_name=profile.name,
                direction="in",
                video=video,
                started_at=now,
                answered_at=None,
                ended_at=now,
                status=status.name,
                missed=True,
                note=note,
            )
        )

    def on_error(self, props: CallProperties, error: int) -> None:
        """A call failed: show it on the LED until the next call."""
        _log.warning("%s: call error %d", self.calls.address, error)
        self.status_led.show(LedPattern.ERROR)

    # status -----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``callbox status`` shows about calls and hardware."""
        call = self.calls.active_call
        active = None
        if call is not None and not call.is_ended():
            active = {
                "peer": call.peer.address,
                "status": call.status.name,
                "incoming": call.is_incoming(),
                "video": call.is_video_call(),
                "duration_s": round(call.duration(), 1),
            }
        return {
            "role": self.settings.role,
            "active_call": active,
            "missed_calls": self.calls.missed_calls,
            "hardware": self.io.state(),
        }


def _bell_label(call: Call) -> str:
    """What the call log keeps of the bell that rang: its label, else its name ("" none)."""
    bell = call.props.bell
    return "" if bell is None else bell.label or bell.name
