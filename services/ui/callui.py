"""``DefaultCallUi``: the call screens callbox draws on a display, driven by the Call API.

It is the endpoint's default UI (``calls.set_default_ui(ui)``): ``Calls`` hands it the
incoming calls the app does not show itself (``on_show_user_interface`` returned False, as
in mesibo) and the calls placed with ``calls.call_ui``. For the call it shows it is an
InProgressListener (``call.add_listener``) and watches the peer's video
(``call.watch_remote_video``); missed calls, errors and key changes come through the
``DefaultUserInterface`` hooks. Touching a button calls the same Call API action as the
unit's GPIO button (answer, decline / hang up, door release, mute).

Rendering: a task on the event loop wakes on a new remote frame, a state change or the
clock, snapshots the state and has the render thread ("callbox-ui") draw it: swscale
conversion and drawing (``hal.canvas``) never run on the loop. Frames arriving while one is drawn
are coalesced to the newest, so the screen follows the received frame rate. While the
screen is blank (the handset at the face) nothing is drawn.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from av import VideoFrame

from hal.display import Display
from services.callapi import (
    AudioDevice,
    Call,
    CallError,
    CallProperties,
    Calls,
    CallStatus,
    DefaultUserInterface,
    HangupReason,
    InProgressListener,
    NotifyKind,
    UserProfile,
    is_ended,
)
from services.tasks import cancel_and_wait
from services.ui.layout import Layout, Rect
from services.ui.model import UiState, bell_words, caller_words, ended_words, timer_text
from services.ui.screens import ScreenRenderer

_log = logging.getLogger(__name__)

ENDED_SHOW_S = 4.0
"""How long the "ended" screen stays before the idle screen."""
PIP_FPS = 10.0
"""Frame rate of the local picture-in-picture."""
DOOR_TEXT_S = 6.0
"""How long "Door opened" stays on the in-call screen."""
AUDIO_DEVICE_WORDS = {
    AudioDevice.SPEAKER: "Speaker",
    AudioDevice.DEFAULT: "Speaker",
    AudioDevice.EARPIECE: "Handset",
    AudioDevice.HEADSET: "Headset",
    AudioDevice.BLUETOOTH: "Bluetooth",
}


class _CallView(InProgressListener):
    """The UI's listener on the call it shows."""

    def __init__(self, ui: DefaultCallUi) -> None:
        self._ui = ui

    def on_status(self, call: Call, status: CallStatus, video: bool) -> None:
        self._ui.call_status(call, status)

    def on_hangup(self, call: Call, reason: HangupReason) -> None:
        self._ui.changed()

    def on_mute(self, call: Call, audio: bool, video: bool, remote: bool) -> None:
        self._ui.changed()

    def on_audio_device_changed(self, call: Call, active: int, inactive: int) -> None:
        self._ui.changed()

    def on_video(self, call: Call, width: int, height: int, remote: bool) -> None:
        self._ui.changed()

    def on_door_release(self, call: Call, opened: bool, reason: str) -> None:
        self._ui.door_result("Door opened" if opened else f"Door did not open: {reason}")


class DefaultCallUi(DefaultUserInterface):
    """The default call UI of an indoor unit, on ``display``."""

    def __init__(
        self,
        calls: Calls,
        display: Display,
        *,
        name: str = "",
        answer_video: bool = True,
        dnd: Callable[[], bool] | None = None,
        clock: Callable[[], datetime.datetime] = datetime.datetime.now,
        ended_show_s: float = ENDED_SHOW_S,
        pip_fps: float = PIP_FPS,
    ) -> None:
        """A UI for ``calls`` on ``display``; ``answer_video``: what touching answer sends."""
        self.calls = calls
        self.display = display
        self.name = name or calls.name
        self.answer_video = answer_video
        self.dnd_active: Callable[[], bool] = dnd or (lambda: False)
        """Whether do-not-disturb is on now (the idle screen shows it)."""
        self._clock = clock
        self.ended_show_s = ended_show_s
        self.pip_fps = pip_fps
        self._renderer: ScreenRenderer | None = None  # made by start(): the size is known then
        self.alarms: tuple[str, ...] = ()
        """The door alarms the "alarm" notice lists (``show_alarms``)."""
        self.missed = 0
        """Missed calls since the badge was last cleared (touched)."""
        self.frames_rendered = 0
        self._call: Call | None = None
        self._view = _CallView(self)
        self._stop_video: Callable[[], None] | None = None
        self._remote: VideoFrame | None = None
        self._remote_at = 0.0
        self._local: VideoFrame | None = None
        self._ended_until = 0.0
        self._key_change: tuple[str, str] | None = None
        self._door: tuple[str, float] | None = None
        self._blank = False
        self._wake = asyncio.Event()
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._render_task: asyncio.Task[None] | None = None
        self._pip_task: asyncio.Task[None] | None = None
        self._last_state: UiState | None = None

    # lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the display's touches and start drawing (the idle screen first)."""
        if self._worker is not None:
            return
        width, height = self.display.size
        worker = self._worker = concurrent.futures.ThreadPoolExecutor(1, "callbox-ui")
        try:
            # made in the render thread: loading the drawing back-end (its library, its
            # fonts) reads files, which the event loop must not wait for
            renderer = await asyncio.get_running_loop().run_in_executor(
                worker, ScreenRenderer, width, height
            )
        except BaseException:
            self._worker = None
            worker.shutdown(wait=False)
            raise
        if self._worker is not worker:
            return  # closed while starting
        self._renderer = renderer
        self.display.on_touch = self._touched
        self._render_task = asyncio.create_task(self._render_loop(), name="ui-render")
        self.changed()

    async def close(self) -> None:
        """Stop drawing and listening; calling it again does nothing."""
        self.display.on_touch = None
        self._detach()
        tasks = [t for t in (self._render_task, self._pip_task) if t is not None]
        self._render_task = self._pip_task = None
        await cancel_and_wait([*tasks, *self._tasks])
        worker, self._worker = self._worker, None
        if worker is not None:
            await asyncio.get_running_loop().run_in_executor(None, worker.shutdown, True)

    @property
    def layout(self) -> Layout:
        """The geometry of the screen (known once started)."""
        if self._renderer is None:
            raise RuntimeError("the call UI is not started: its screen size is not known yet")
        return self._renderer.layout

    # what is shown ------------------------------------------------------------------------------

    @property
    def call(self) -> Call | None:
        """The call on screen (also a call that just ended, while "ended" shows)."""
        return self._call

    @property
    def screen(self) -> str:
        """The screen shown now: one of ``services.ui.model.SCREENS``."""
        return self.state().screen

    @property
    def shown(self) -> UiState | None:
        """The state drawn in the frame the display shows now (None before the first)."""
        return self._last_state

    @property
    def status_text(self) -> str:
        """The main words on the screen now ("Front door is calling", "Ringing…", …)."""
        return self.state().status_text

    def _screen_now(self) -> str:
        if self._blank:
            return "blank"
        call = self._call
        if call is not None and not call.is_ended():
            return _call_screen(call)
        if call is not None and time.monotonic() < self._ended_until:
            return "ended"
        if self._key_change is not None:
            return "key_changed"
        if self.alarms:
            return "alarm"
        return "idle"

    def state(self) -> UiState:
        """A snapshot of everything the screen shows now."""
        screen = self._screen_now()
        now = self._clock()
        common: dict[str, Any] = {
            "name": self.name,
            "clock": now.strftime("%H:%M"),
            "date": now.strftime("%A %d %B"),
            "online": self.calls.connected,
            "dnd": self.dnd_active(),
            "missed": self.missed,
        }
        if screen in ("idle", "blank"):
            text = "Screen off" if screen == "blank" else _idle_words(common)
            return UiState(screen=screen, status_text=text, **common)
        if screen == "alarm":
            text = "Alarm: " + "; ".join(self.alarms)
            return UiState(screen=screen, status_text=text, alarms=self.alarms, **common)
        if screen == "key_changed":
            assert self._key_change is not None
            address, detail = self._key_change
            peer = self.calls.profile_of(address).display_name()
            return UiState(
                screen=screen,
                status_text=f"Security key of {peer} changed: confirm it",
                peer_name=peer,
                detail=detail,
                **common,
            )
        call = self._call
        assert call is not None
        return self._call_state(screen, call, common)

    def _call_state(self, screen: str, call: Call, common: dict[str, Any]) -> UiState:
        peer = call.props.ui.title or call.peer.display_name()
        timer = timer_text(call.duration()) if call.is_answered() else ""
        detail = ""
        bell = bell_words(call.props.bell) if call.is_incoming() else ""
        if screen == "incoming":
            text = f"{caller_words(peer, bell)} is calling"
        elif screen == "outgoing":
            ringing = call.status == CallStatus.RINGING
            text = "Ringing…" if ringing else "Connecting…"
            detail = "ringback tone playing" if ringing and call.props.in_call_sounds else ""
        elif screen == "in_call":
            text = f"In call with {peer} {timer}"
        elif screen == "reconnecting":
            text = "Reconnecting…"
        else:
            text, detail = ended_words(
                call.status,
                incoming=call.is_incoming(),
                answered=call.is_answered(),
                reason=call.hangup_reason,
                peer=caller_words(peer, bell),
                end_reason=call.end_reason,
            )
        door = self._door
        door_text = door[0] if door is not None and time.monotonic() < door[1] else ""
        camera = self.calls.media.camera is not None
        return UiState(
            screen=screen,
            status_text=text,
            call_id=call.call_id,
            peer_name=peer,
            video=call.is_video_call(),
            timer=timer,
            muted=call.get_mute_status(audio=True, video=False),
            audio_device=AUDIO_DEVICE_WORDS.get(self.calls.audio_device, "Speaker"),
            door_text=door_text,
            can_open_door=call.unlock_challenge is not None,
            pip=camera and screen == "in_call" and call.sends_video(),
            detail=detail,
            bell=bell,
            **common,
        )

    # the Call API -------------------------------------------------------------------------------

    def show_call(self, call: Call) -> None:
        """Show ``call`` from now on (its statuses, its video, its buttons)."""
        self._detach()
        self._call = call
        self._remote = None
        self._door = None
        call.add_listener(self._view)
        self._stop_video = call.watch_remote_video(self._remote_frame)
        if call.last_remote_frame is not None:
            self._remote = call.last_remote_frame
        self.changed()

    def _detach(self) -> None:
        if self._stop_video is not None:
            self._stop_video()
            self._stop_video = None
        if self._call is not None:
            self._call.remove_listener(self._view)

    def call_status(self, call: Call, status: CallStatus) -> None:
        """The call on screen moved to ``status``."""
        if call is not self._call:
            return
        if is_ended(status):
            self._ended_until = time.monotonic() + self.ended_show_s
            self._detach()
            self._remote = None
        if status in (CallStatus.ANSWER, CallStatus.CONNECTED) and self._pip_task is None:
            self._pip_task = asyncio.create_task(self._pip_loop(call), name="ui-pip")
        self.changed()

    def door_result(self, text: str) -> None:
        """Show the door's answer to a release request for a few seconds."""
        self._door = (text, time.monotonic() + DOOR_TEXT_S)
        self.changed()

    def on_notify(self, kind: NotifyKind, profile: UserProfile, video: bool) -> None:
        """A missed call: the badge counts it."""
        if kind == NotifyKind.MISSED:
            self.missed += 1
            self.changed()

    def on_error(self, props: CallProperties, error: int) -> None:
        """A call failed (the ended screen says how); redraw."""
        self.changed()

    def on_key_changed(self, address: str, detail: str) -> None:
        """Show the key-changed screen until a person confirms the new key."""
        self._key_change = (address, detail)
        self.changed()

    def show_alarms(self, lines: tuple[str, ...]) -> None:
        """Show a door's active alarms (one line each) on the "alarm" notice while idle; () clears.

        A call, and a key to confirm, come first; the notice is back when they are over.
        """
        if lines != self.alarms:
            self.alarms = lines
            self.changed()

    def changed(self) -> None:
        """Something on screen changed: draw again soon."""
        self._wake.set()

    def _remote_frame(self, frame: VideoFrame) -> None:
        self._remote = frame
        self._remote_at = time.monotonic()
        self._wake.set()

    # blanking -----------------------------------------------------------------------------------

    @property
    def blank(self) -> bool:
        """True while the screen is blanked."""
        return self._blank

    async def set_blank(self, blank: bool) -> None:
        """Blank (stop drawing, backlight off) or show the screen again."""
        if blank == self._blank:
            return
        self._blank = blank
        self._last_state = None
        await self.display.set_blank(blank)
        self.changed()

    # touch --------------------------------------------------------------------------------------

    def buttons(self) -> dict[str, Rect]:
        """The on-screen buttons of the screen shown now: name -> rectangle (pixels)."""
        return self.layout.buttons(self.state())

    def button_at(self, x: int, y: int) -> str | None:
        """The on-screen button at pixel (x, y) of the screen shown now, or None."""
        return self.layout.button_at(self.state(), x, y)

    def _touched(self, x: int, y: int) -> None:
        name = self.button_at(x, y) if self._renderer is not None else None
        if name is not None:
            self._spawn(self.press(name))

    async def press(self, name: str) -> None:
        """Do what on-screen button ``name`` does (the GPIO buttons' Call API actions)."""
        call = self._call if self._call is not None and not self._call.is_ended() else None
        _log.info("%s: touch %s", self.calls.address, name)
        if name == "answer" and call is not None and call.is_incoming():
            await call.answer(self.answer_video)
        elif name in ("decline", "hangup") and call is not None:
            await call.hangup()
        elif name == "mute" and call is not None and call.is_answered():
            await call.toggle_audio_mute()
        elif name == "door_release" and call is not None:
            await self._open_door(call)
        elif name == "confirm_key" and self._key_change is not None:
            address = self._key_change[0]
            self._key_change = None
            try:
                await self.calls.confirm_key_change(address)
            except CallError as err:
                _log.warning("%s: %s", self.calls.address, err)
        elif name == "clear_missed":
            self.missed = 0
        self.changed()

    async def _open_door(self, call: Call) -> None:
        try:
            await call.unlock()
        except CallError as err:
            _log.warning("%s: door release failed: %s", self.calls.address, err)
            self.door_result("Door did not answer")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("%s: UI action failed", self.calls.address, exc_info=task.exception())

    # drawing ------------------------------------------------------------------------------------

    def _seconds_to_tick(self) -> float:
        """Until the next whole second (clock and timer), or the end of the ended screen."""
        now = time.monotonic()
        wait = 1.0 - (time.time() % 1.0) + 0.01
        if now < self._ended_until:
            wait = min(wait, self._ended_until - now + 0.01)
        return wait

    async def _render_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._seconds_to_tick())
            self._wake.clear()
            renderer = self._renderer
            if self._blank or self._worker is None or renderer is None:
                continue
            state = self.state()
            remote, self._remote = self._remote, None
            local, self._local = self._local, None
            if remote is None and local is None and state == self._last_state:
                continue  # nothing new to draw (a clock tick within the same minute)
            image = await loop.run_in_executor(self._worker, renderer.render, state, remote, local)
            if self._blank:
                continue  # blanked while drawing: show nothing
            self._last_state = state
            await self.display.show(image)
            self.frames_rendered += 1

    async def _pip_loop(self, call: Call) -> None:
        """Feed this unit's own camera to the picture-in-picture while the call sends video."""
        camera = self.calls.media.camera
        try:
            if camera is None:
                return
            seq = 0
            while not call.is_ended():
                if call.sends_video() and not self._blank:
                    seq, frame = await camera.shared.next_frame(seq)
                    if isinstance(frame, VideoFrame):
                        self._local = frame
                        if time.monotonic() - self._remote_at > 2.0 / self.pip_fps:
                            self._wake.set()  # no remote video to draw the PiP with
                await asyncio.sleep(1.0 / self.pip_fps)  # the PiP's own, lower frame rate
        finally:
            self._pip_task = None


def _call_screen(call: Call) -> str:
    status = call.status
    if status == CallStatus.RECONNECTING:
        return "reconnecting"
    if call.is_answered() and status >= CallStatus.ANSWER:
        return "in_call"
    return "incoming" if call.is_incoming() else "outgoing"


def _idle_words(common: dict[str, Any]) -> str:
    words = "Ready" if common["online"] else "Offline"
    if common["dnd"]:
        words += ", do not disturb"
    missed = int(common["missed"])
    if missed:
        words += f", {missed} missed call" + ("s" if missed > 1 else "")
    return words
