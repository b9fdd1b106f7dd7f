"""The state every part of a call shares: legs, statuses, mute and video flags, listeners.

``Call`` (call.py) is built from this base, the in-call controls (controls.py) and the link
supervision (supervision.py); this module also holds the tables that map protocol reasons
to statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from av import VideoFrame

from services.callapi.listeners import InProgressListener, notify
from services.callapi.properties import CallProperties, UserProfile
from services.callapi.status import (
    CallErrorCode,
    CallStatus,
    HangupReason,
    InCallSound,
    is_ended,
)
from services.media.session import MediaSession
from services.media.tones import BUSY, RINGBACK, TonePattern
from services.signaling.errors import SignalingError

if TYPE_CHECKING:
    from services.callapi.calls import Calls


_log = logging.getLogger(__name__)

MEDIA_SILENCE_S = 1.0
WATCHDOG_PERIOD_S = 0.2
DTMF_DIGITS = "0123456789*#ABCD"
IN_CALL_TONES: dict[InCallSound, TonePattern] = {
    InCallSound.RINGING: RINGBACK,
    InCallSound.BUSY: BUSY,
}
ERROR_CODES = {
    CallStatus.BUSY: CallErrorCode.BUSY,
    CallStatus.UNREACHABLE: CallErrorCode.NETWORK,
    CallStatus.OFFLINE: CallErrorCode.NETWORK,
    CallStatus.NETWORKERROR: CallErrorCode.NETWORK,
    CallStatus.ERROR: CallErrorCode.NETWORK,
    CallStatus.SECURITYERROR: CallErrorCode.SECURITY,
    CallStatus.HWERROR: CallErrorCode.HARDWARE,
}
"""Terminal statuses that ``IncomingListener.on_error`` hears about (refusals are not errors)."""
GROUP_OUTCOME_PRIORITY = (
    CallStatus.BUSY,
    CallStatus.NOTALLOWED,
    CallStatus.BLOCKED,
    CallStatus.NOANSWER,
    CallStatus.SECURITYERROR,
    CallStatus.NETWORKERROR,
    CallStatus.UNREACHABLE,
    CallStatus.OFFLINE,
)
"""How a ring group ends when its callees ended differently: the first outcome listed."""
FAILURE_REASONS = {
    CallStatus.SECURITYERROR: "security",
    CallStatus.NETWORKERROR: "network",
    CallStatus.ERROR: "error",
}
"""What a side that gives up on a peer tells it (cancel, decline or hangup ``reason``)."""
FAILURE_STATUS = {reason: status for status, reason in FAILURE_REASONS.items()}
DECLINE_STATUS = {
    "busy": CallStatus.BUSY,
    "declined": CallStatus.BUSY,
    "notallowed": CallStatus.NOTALLOWED,
    "blocked": CallStatus.BLOCKED,
    "timeout": CallStatus.NOANSWER,
    "novideo": CallStatus.NOVIDEOCALLS,
    "error": CallStatus.ERROR,
    "security": CallStatus.SECURITYERROR,
    "network": CallStatus.NETWORKERROR,
}


def new_call_id() -> str:
    """A fresh random call id (128 bits, base64url)."""
    return secrets.token_urlsafe(16)


@dataclass
class Leg:
    """One callee of a call (or, for an incoming call, the caller) and its media session."""

    address: str
    session: MediaSession
    rang: bool = False
    outcome: CallStatus | None = None
    generation: int = 0


class CallState:
    """What one call knows about itself, and the helpers every part of it uses."""

    def __init__(
        self,
        calls: Calls,
        props: CallProperties,
        *,
        call_id: str,
        incoming: bool,
        peer: UserProfile,
    ) -> None:
        self._calls = calls
        self.props = props
        self.call_id = call_id
        self.peer = peer
        self.status = CallStatus.NONE
        self.hangup_reason: HangupReason | None = None
        self.created_at = time.monotonic()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.ended = asyncio.Event()
        self._incoming = incoming
        self._video = props.video.enabled
        self._send_video = props.video.enabled and props.video.send
        self._remote_sends_video = props.video.enabled
        self._remote_video_size = (0, 0)
        self._sound: InCallSound | None = None
        self._former_legs: set[str] = set()
        self._listener: InProgressListener | None = None
        self._more_listeners: list[InProgressListener] = []
        self._video_watchers: list[Callable[[VideoFrame], None]] = []
        self._started = False
        self._legs: dict[str, Leg] = {}
        self._winner: str | None = None
        self._muted = {"audio": False, "video": False}
        self._remote_muted = {"audio": False, "video": False}
        self._timers: list[asyncio.Task[None]] = []
        self._status_lock = asyncio.Lock()
        self._reconnecting_since: float | None = None
        self._generation = 0
        self.unlock_challenge: str | None = None
        self._unlock_waiters: list[asyncio.Future[bool]] = []
        self._camera_muted = False
        self.last_remote_frame: VideoFrame | None = None
        self.remote_frame = asyncio.Event()
        self.statuses: list[CallStatus] = []

    # state queries (mesibo names) -------------------------------------------------------------

    def is_incoming(self) -> bool:
        """True for a call this endpoint received."""
        return self._incoming

    def is_video_call(self) -> bool:
        """True while the call carries video."""
        return self._video

    def is_answered(self) -> bool:
        """True once the call was answered (by this endpoint or, outgoing, by a callee)."""
        return self.answered_at is not None

    def is_link_up(self) -> bool:
        """True while media flows with the peer."""
        leg = self._active_leg()
        return leg is not None and leg.session.state == "connected" and not self.is_ended()

    def is_ended(self) -> bool:
        """True once a terminal status was reached."""
        return is_ended(self.status)

    def answer_time(self) -> float | None:
        """When the call was answered (time.monotonic()), or None."""
        return self.answered_at

    def duration(self) -> float:
        """Seconds since answer (0 before), until the end."""
        if self.answered_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.answered_at

    def sends_video(self) -> bool:
        """True while this side sends its camera's video (on for the call, not muted)."""
        return self._video and self._send_video and not self._muted["video"]

    def get_mute_status(self, audio: bool, video: bool, remote: bool = False) -> bool:
        """True if every asked-for stream (audio and/or video) is muted, here or at the peer."""
        state = self._remote_muted if remote else self._muted
        asked = [state["audio"]] * audio + [state["video"]] * video
        return bool(asked) and all(asked)

    def add_listener(self, listener: InProgressListener) -> None:
        """Let ``listener`` hear this call too, after the one given to ``start()``.

        The default call UI listens this way to a call the app started with its own
        listener. Only the first listener's ``on_play_in_call_sound`` result counts.
        """
        if listener not in self._more_listeners:
            self._more_listeners.append(listener)

    def remove_listener(self, listener: InProgressListener) -> None:
        """Stop telling ``listener`` (one added with :meth:`add_listener`) about this call."""
        if listener in self._more_listeners:
            self._more_listeners.remove(listener)

    def watch_remote_video(self, callback: Callable[[VideoFrame], None]) -> Callable[[], None]:
        """Call ``callback(frame)`` on the event loop for every video frame the peer sends.

        Frames of the leg shown (the winner's, or while ringing any callee's). The callback
        must be quick (hand the frame to a worker); it returns the function that stops it.
        """
        self._video_watchers.append(callback)

        def stop() -> None:
            if callback in self._video_watchers:
                self._video_watchers.remove(callback)

        return stop

    @property
    def session(self) -> MediaSession | None:
        """The media session with the peer (the winner's, for an outgoing ring group)."""
        leg = self._active_leg()
        return leg.session if leg else None

    @property
    def legs(self) -> dict[str, Leg]:
        """The callees of an outgoing call (the caller of an incoming one), by address."""
        return self._legs

    def _active_leg(self) -> Leg | None:
        if self._winner is not None:
            return self._legs.get(self._winner)
        if self._incoming and self._legs:
            return next(iter(self._legs.values()))
        return None

    def _open_gates(self, session: MediaSession) -> None:
        """Send what this side may send now: audio unless muted, video if on and not muted."""
        session.set_sending(
            audio=not self._muted["audio"], video=self._send_video and not self._muted["video"]
        )

    def _watch(self, address: str, session: MediaSession) -> None:
        """Follow a session's link state and the size of the video it receives."""
        session.on_state = self._state_callback(address)

        def frame(frame: VideoFrame) -> None:
            if self._active_leg() is None or self._active_leg() is self._legs.get(address):
                self.last_remote_frame = frame
                self.remote_frame.set()
                for watcher in list(self._video_watchers):
                    try:
                        watcher(frame)
                    except Exception:  # noqa: BLE001 - a faulty watcher must not stop video
                        _log.exception("%s: a remote video watcher failed", self._calls.address)
            size = (frame.width, frame.height)
            if size != self._remote_video_size:
                self._remote_video_size = size
                self._calls.spawn(self._emit("on_video", size[0], size[1], True))

        session.on_video_frame = frame

    # listener plumbing ------------------------------------------------------------------------

    async def _set_status(self, status: CallStatus) -> None:
        async with self._status_lock:
            if self.is_ended() or (status == self.status and not is_ended(status)):
                return
            self.status = status
            self.statuses.append(status)
        _log.info("%s: call %s %s", self._calls.address, self.call_id, status.name)
        for listener in self._listeners():
            await notify("on_status", listener.on_status, self, status, self._video)

    def _listeners(self) -> list[InProgressListener]:
        first = [self._listener] if self._listener is not None else []
        return first + [extra for extra in self._more_listeners if extra is not self._listener]

    async def _emit(self, name: str, *args: Any) -> Any:
        result = None
        for index, listener in enumerate(self._listeners()):
            value = await notify(name, getattr(listener, name), self, *args)
            if index == 0 and listener is self._listener:
                result = value
        return result

    def _every(self, delay: float, action: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)  # a call timer
            await action()

        self._timers.append(asyncio.create_task(run(), name=f"timer-{self.call_id}"))

    async def _send_to_peer(self, type: str, body: dict[str, Any]) -> None:
        leg = self._active_leg()
        if leg is None:
            return
        try:
            await self._calls.signaling.send(leg.address, type, self.call_id, body)
        except SignalingError as err:
            _log.error(
                "%s: could not send %s to %s: %s", self._calls.address, type, leg.address, err
            )

    async def _tell_failure(self, address: str, reason: str) -> None:
        """Tell a peer that this side gave up on it, so it does not wait for a timeout."""
        if self.is_answered():
            type = "hangup"
        elif self._incoming:
            type = "decline"
        else:
            type = "cancel"
        with contextlib.suppress(SignalingError):
            await self._calls.signaling.send(address, type, self.call_id, {"reason": reason})

    def _group_outcome(self) -> CallStatus:
        outcomes = {lg.outcome for lg in self._legs.values() if lg.outcome is not None}
        if len(outcomes) == 1:
            return outcomes.pop()
        return next((s for s in GROUP_OUTCOME_PRIORITY if s in outcomes), CallStatus.ERROR)

    def _state_callback(self, address: str) -> Callable[[str], None]:
        def changed(state: str) -> None:
            self._calls.spawn(self._link_state(address, state))

        return changed

    async def _link_state(self, address: str, state: str) -> None:
        """A leg's media link changed state (link supervision implements it)."""
        raise NotImplementedError

    async def _end(self, status: CallStatus, reason: HangupReason) -> None:
        """Reach a terminal status and release everything (``Call`` implements it)."""
        raise NotImplementedError
