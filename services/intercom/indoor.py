"""The indoor unit: rings, answers, declines, opens the door, blanks the screen.

- an incoming call rings (ringtone on the speaker, status LED blinking) and shows the
  visitor preview (early media); the first preview frame becomes the visitor snapshot;
- answer button or lifting the handset (off-hook) -> answer; the handset carries the
  audio while it is off the hook;
- decline button -> decline while ringing, hang up in a call; putting the handset back
  (on-hook) -> hang up;
- door-release button during a call with a door -> ``call.unlock()``;
- mute button -> toggle the microphone; monitor button (idle) -> see and hear the door
  station, the microphone muted until the mute button opens it;
- proximity near -> screen off (``hide_on_proximity``) during audio calls and whenever
  the handset is off the hook; audio to the handset (``disable_speaker_on_proximity``);
  screen back on when far or when the call ends;
- do-not-disturb: calls in the schedule, or while it is switched on by hand (Home
  Assistant's switch), are refused and logged as missed;
- with a display, the default call UI (``services.ui``) shows every call: the unit starts
  each call with its own watcher and returns False from ``on_show_user_interface``, so
  ``Calls`` hands the call to the UI (mesibo's rule); blanking also stops the UI drawing.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from typing import Any

from hal.errors import HalError
from hal.inputs import Button, ButtonRole
from hal.io_devices import IoDevices
from services.callapi import (
    AudioDevice,
    Call,
    CallError,
    CallProperties,
    Calls,
    CallStatus,
    NotifyKind,
    UserProfile,
)
from services.intercom.alarm_inbox import AlarmInbox
from services.intercom.calllog import CallLog
from services.intercom.dnd import ManualDnd
from services.intercom.service import IntercomService
from services.intercom.settings import IntercomSettings
from services.intercom.snapshots import SnapshotStore
from services.ui import DefaultCallUi

_log = logging.getLogger(__name__)


class IndoorUnit(IntercomService):
    """The call service of an indoor unit."""

    def __init__(
        self,
        calls: Calls,
        io: IoDevices,
        settings: IntercomSettings,
        *,
        call_log: CallLog | None = None,
        snapshots: SnapshotStore | None = None,
        clock: Callable[[], datetime.datetime] = datetime.datetime.now,
        ui: DefaultCallUi | None = None,
        manual_dnd: ManualDnd | None = None,
    ) -> None:
        super().__init__(
            calls, io, settings, call_log=call_log, snapshots=snapshots, manual_dnd=manual_dnd
        )
        self._clock = clock
        self.ui = ui
        """The default call UI on the unit's display, if it has one (blanked with it)."""
        self.off_hook = False
        self.alarms = AlarmInbox(calls, doors=lambda: self.settings.targets)
        """The active alarms of the door stations (services/intercom/alarm_inbox.py)."""
        self.alarms.on_change = self._alarms_changed

    async def start(self) -> None:
        """Take the buttons, the hook switch and the proximity sensor."""
        await super().start()
        hook = self.io.button(ButtonRole.HOOK)
        self.off_hook = hook is not None and hook.is_pressed
        self.io.proximity.on_change = self._proximity_changed
        self.alarms.start()

    async def close(self) -> None:
        """Stop reacting to inputs and leave the screen on."""
        self.alarms.close()
        self.io.proximity.on_change = None
        await super().close()
        await self._set_screen(True)

    # inputs ---------------------------------------------------------------------------------

    async def button_pressed(self, button: Button) -> None:
        """What each button does (see the module docstring)."""
        call = self._current_call()
        role = button.role
        if role == ButtonRole.HOOK:
            self.off_hook = True
            await self._route_audio()
            if call is not None and call.is_incoming() and not call.is_answered():
                await call.answer(self.settings.video)
            await self._update_screen()
        elif role == ButtonRole.ANSWER:
            if call is not None and call.is_incoming() and not call.is_answered():
                await call.answer(self.settings.video)
        elif role == ButtonRole.DECLINE:
            if call is not None:
                await call.hangup()
        elif role == ButtonRole.DOOR_RELEASE:
            await self._open_door(call)
        elif role == ButtonRole.MUTE:
            if call is not None and call.is_answered():
                await call.toggle_audio_mute()
        elif role == ButtonRole.MONITOR:
            await self.monitor()
        else:
            await super().button_pressed(button)

    async def button_released(self, button: Button) -> None:
        """Handset back on the hook: hang up, back to the speaker."""
        if button.role != ButtonRole.HOOK:
            return
        self.off_hook = False
        call = self._current_call()
        if call is not None and call.is_answered():
            await call.hangup()
        await self._route_audio()
        await self._update_screen()

    async def _open_door(self, call: Call | None) -> None:
        if call is None or call.unlock_challenge is None:
            _log.info("%s: door release pressed without a call with a door", self.calls.address)
            return
        try:
            opened = await call.unlock()
        except CallError as err:
            _log.warning("%s: door release failed: %s", self.calls.address, err)
            return
        _log.info("%s: door %s", self.calls.address, "opened" if opened else "did not open")

    async def monitor(self) -> Call | None:
        """Look at the (first) door station: its video and sound, nothing sent back.

        The resident's microphone starts muted and no video goes to the door (privacy);
        the mute button opens the microphone to talk. None when busy or no door is set.
        """
        if not self.settings.targets:
            _log.warning("%s: monitor pressed, no door station configured", self.calls.address)
            return None
        props = self.calls.create_call_properties(video=True)
        props.user = self.calls.profile_of(self.settings.targets[0])
        props.video.send = False
        props.in_call_sounds = False
        call = self.calls.call(props)
        if call is None:
            _log.info("%s: monitor pressed during a call: ignored", self.calls.address)
            return None
        await call.mute(audio=True, video=False, enable=True)
        await self.calls.show_call_ui(call)
        await call.start(self.watch(call))
        return call

    def _alarms_changed(self) -> None:
        if self.ui is not None:
            self.ui.show_alarms(self.alarms.lines())

    def status(self) -> dict[str, Any]:
        """The call service's status and the door stations' active alarms."""
        result = super().status()
        result["alarms"] = self.alarms.status()
        return result

    def _current_call(self) -> Call | None:
        call = self.calls.active_call
        return call if call is not None and not call.is_ended() else None

    # proximity and screen ---------------------------------------------------------------------

    def _proximity_changed(self, near: bool) -> None:
        self.spawn(self._proximity(near))

    async def _proximity(self, near: bool) -> None:
        await self._route_audio()
        await self._update_screen()

    def _screen_should_be_off(self) -> bool:
        call = self._current_call()
        if not self.io.proximity.is_near:
            return False
        if self.off_hook:
            return call is None or call.props.hide_on_proximity
        return (
            call is not None
            and call.is_answered()
            and not call.is_video_call()
            and call.props.hide_on_proximity
        )

    async def _update_screen(self) -> None:
        await self._set_screen(not self._screen_should_be_off())

    async def _set_screen(self, on: bool) -> None:
        if self.ui is not None:
            await self.ui.set_blank(not on)
        backlight = self.io.backlight
        if backlight.is_on == on:
            return
        try:
            await backlight.set_power(on)
        except HalError as err:
            _log.error("%s: backlight: %s", self.calls.address, err)

    async def _route_audio(self) -> None:
        """Handset while off the hook or held to the ear (if configured), else the speaker."""
        call = self._current_call()
        if call is None:
            return
        near = self.io.proximity.is_near and call.props.disable_speaker_on_proximity
        device = AudioDevice.EARPIECE if (self.off_hook or near) else AudioDevice.SPEAKER
        if self.calls.audio_device == device:
            return
        try:
            await call.set_audio_device(device)
        except CallError as err:
            _log.warning("%s: %s", self.calls.address, err)

    # calls ------------------------------------------------------------------------------------

    async def on_incoming(self, profile: UserProfile, video: bool) -> CallProperties | None:
        """Ring for every contact, unless do-not-disturb is on now."""
        if self.dnd_active(self._clock()):
            _log.info("%s: call from %s refused: do not disturb", self.calls.address, profile)
            await self.calls.report_missed(profile, video)
            return None
        return self.calls.create_call_properties(video)

    async def on_notify(self, kind: NotifyKind, profile: UserProfile, video: bool) -> None:
        """Missed calls while DND is on are logged as such."""
        if kind == NotifyKind.MISSED and self.dnd_active(self._clock()):
            call = self.calls.active_call
            if call is None or call.is_ended() or call.peer.address != profile.address:
                await self.log_missed(profile, video, "do not disturb", CallStatus.NOTALLOWED)
                return
        await super().on_notify(kind, profile, video)

    async def on_show_user_interface(self, call: Call, props: CallProperties) -> bool:
        """Start the call, keep the first preview frame as the visitor snapshot.

        False (the default UI shows the call) when the unit has a display.
        """
        shown = await super().on_show_user_interface(call, props)
        if call.is_video_call():
            self.spawn(self._snapshot_from_preview(call))
        return shown and self.calls.default_ui is None

    async def _snapshot_from_preview(self, call: Call) -> None:
        try:
            await asyncio.wait_for(call.remote_frame.wait(), self.settings.snapshot_wait_s)
        except TimeoutError:
            _log.warning("%s: no preview frame for the visitor snapshot", self.calls.address)
            return
        if call.last_remote_frame is not None:
            await self.keep_snapshot(call, call.last_remote_frame)

    async def call_status(self, call: Call, status: CallStatus) -> None:
        """Also route audio and the screen when a call is answered."""
        await super().call_status(call, status)
        if status == CallStatus.ANSWER:
            await self._route_audio()
            await self._update_screen()

    async def call_over(self, call: Call) -> None:
        """Screen back on, audio back to the speaker, then the log entry."""
        await self._set_screen(not (self.off_hook and self.io.proximity.is_near))
        if self.calls.audio_device != AudioDevice.SPEAKER and not self.off_hook:
            try:
                await self.calls.use_audio_device(AudioDevice.SPEAKER)
            except CallError as err:
                _log.warning("%s: %s", self.calls.address, err)
        await super().call_over(call)
