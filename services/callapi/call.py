"""A call in progress: the mesibo ``Call`` object, outgoing (to one or more targets) or incoming.

A ``Call`` owns one media session per callee ("leg"). An outgoing call invites all of
its targets at once; the first to accept wins and the others are cancelled with
"answered elsewhere". Every status reaches the InProgressListener in order, and a
terminal status (``status & 0x40``) exactly once, followed by ``on_hangup``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from av import VideoFrame

from hal.media_types import VideoFormat
from services.callapi.listeners import InProgressListener, notify
from services.callapi.properties import CallProperties, UserProfile
from services.callapi.status import (
    AudioDevice,
    CallError,
    CallErrorCode,
    CallStatus,
    HangupReason,
    InCallSound,
    is_ended,
)
from services.media.errors import MediaError, SecurityError
from services.media.session import MediaSession
from services.media.tones import BUSY, RINGBACK, TonePattern
from services.signaling.endpoint import Message
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


class Call:
    """One call, incoming or outgoing (mesibo's Call)."""

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

    def get_mute_status(self, audio: bool, video: bool, remote: bool = False) -> bool:
        """True if every asked-for stream (audio and/or video) is muted, here or at the peer."""
        state = self._remote_muted if remote else self._muted
        asked = [state["audio"]] * audio + [state["video"]] * video
        return bool(asked) and all(asked)

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
        if self._listener is not None:
            await notify("on_status", self._listener.on_status, self, status, self._video)

    async def _emit(self, name: str, *args: Any) -> Any:
        if self._listener is None:
            return None
        return await notify(name, getattr(self._listener, name), self, *args)

    # starting ---------------------------------------------------------------------------------

    async def start(self, listener: InProgressListener | None = None) -> None:
        """Start the call: an outgoing call invites its targets, an incoming one starts ringing."""
        if self._started:
            if listener is not None:
                self._listener = listener
            return
        self._started = True
        self._listener = listener
        if self._incoming:
            await self._set_status(CallStatus.INCOMING)
            return
        await self._start_outgoing()

    async def _start_outgoing(self) -> None:
        await self._set_status(CallStatus.INPROGRESS)
        self._calls.apply_video_format(self.props)
        targets = self.props.targets()
        online = [t for t in targets if self._calls.signaling.is_online(t.address)]
        for target in targets:
            if target not in online:
                _log.info("%s: %s is offline", self._calls.address, target.address)
        if not online:
            await self._end(CallStatus.OFFLINE, HangupReason.ERROR)
            return
        self.unlock_challenge = self._calls.unlock_challenge_for(self)
        await asyncio.gather(*(self._invite(t.address) for t in online))
        if self.is_ended():
            return
        self._every(self.props.connect_timeout_s, self._connect_timeout)
        self._every(self.props.ring_timeout_s, self._ring_timeout)

    async def _invite(self, address: str) -> None:
        session, sdp = await self._calls.prepared_offer(
            self.props, label=f"{self.call_id}>{address}"
        )
        self._legs[address] = Leg(address, session)
        self._watch(address, session)
        self._open_gates(session)  # early media: the visitor preview (unless muted before start)
        body: dict[str, Any] = {
            "sdp": sdp,
            "video": self._video,
            "profile": self._calls.profile_json(),
            "ring_timeout_ms": int(self.props.ring_timeout_s * 1000),
        }
        if self.unlock_challenge is not None:
            body["unlock_challenge"] = self.unlock_challenge
        try:
            await self._calls.signaling.send(address, "invite", self.call_id, body)
        except SignalingError as err:
            _log.error("%s: invite to %s failed: %s", self._calls.address, address, err)
            await self._leg_failed(address, CallStatus.UNREACHABLE)

    def _every(self, delay: float, action: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)  # a call timer
            await action()

        self._timers.append(asyncio.create_task(run(), name=f"timer-{self.call_id}"))

    async def _connect_timeout(self) -> None:
        if not self.is_ended() and not any(leg.rang for leg in self._legs.values()):
            await self._cancel_all("unreachable")
            await self._end(CallStatus.UNREACHABLE, HangupReason.ERROR)

    async def _ring_timeout(self) -> None:
        if self.is_ended() or self.is_answered():
            return
        if self._incoming:
            await self._send_to_peer("decline", {"reason": "timeout"})
            await self._calls.notify_missed(self)
        else:
            await self._cancel_all("timeout")
        await self._end(CallStatus.NOANSWER, HangupReason.REMOTE)

    # incoming side ----------------------------------------------------------------------------

    async def _accept_invite(self, message: Message) -> None:
        """Answer the caller's SDP while ringing (early media), after telling it we ring."""
        session = self._calls.new_session(self.props, video=self._video, label=self.call_id)
        leg = Leg(message.sender, session)
        self._legs[message.sender] = leg
        self._watch(message.sender, session)
        self.unlock_challenge = message.body.get("unlock_challenge")
        await self._calls.signaling.send(message.sender, "ringing", self.call_id, {})
        failure: tuple[CallStatus, Exception] | None = None
        try:
            sdp = await session.accept_offer(str(message.body.get("sdp", "")))
        except SecurityError as err:
            failure = (CallStatus.SECURITYERROR, err)
        except (MediaError, ValueError) as err:
            failure = (CallStatus.ERROR, err)
        if failure is not None:
            status, error = failure
            _log.error(
                "%s: refused the offer of %s: %s", self._calls.address, message.sender, error
            )
            await self._send_to_peer("decline", {"reason": "error"})
            await self._end(status, HangupReason.ERROR)
            return
        await self._calls.signaling.send(message.sender, "answer", self.call_id, {"sdp": sdp})
        self._every(self.props.ring_timeout_s + 5.0, self._ring_timeout)

    async def answer(self, video: bool = True) -> None:
        """Answer an incoming call, with or without sending video (mesibo's ``answer``)."""
        if not self._incoming:
            raise CallError(
                "answer() is for incoming calls; an outgoing call is answered by the peer"
            )
        if self.is_ended() or self.is_answered():
            return
        leg = self._active_leg()
        assert leg is not None
        self._send_video = self._send_video and video
        self.answered_at = time.monotonic()
        if self._send_video:
            self._calls.apply_video_format(self.props)
        await self._calls.stop_ringing()
        leg.session.set_playback(True)
        self._open_gates(leg.session)
        await self._send_to_peer("accept", {"video": self._send_video})
        await self._set_status(CallStatus.ANSWER)
        self._after_answer()
        if leg.session.state == "connected":
            await self._set_status(CallStatus.CONNECTED)

    # outgoing side ----------------------------------------------------------------------------

    async def _on_ringing(self, leg: Leg) -> None:
        leg.rang = True
        if self.status < CallStatus.RINGING:
            await self._set_status(CallStatus.RINGING)
            if self.props.in_call_sounds:
                await self.play_in_call_sound(InCallSound.RINGING)

    async def _on_answer_sdp(self, leg: Leg, body: dict[str, Any]) -> None:
        try:
            await leg.session.apply_answer(str(body.get("sdp", "")))
        except SecurityError as err:
            _log.error("%s: refused the answer of %s: %s", self._calls.address, leg.address, err)
            await self._leg_failed(leg.address, CallStatus.SECURITYERROR)
        except (MediaError, ValueError) as err:
            _log.error("%s: bad answer from %s: %s", self._calls.address, leg.address, err)
            await self._leg_failed(leg.address, CallStatus.ERROR)

    async def _on_accept(self, leg: Leg, body: dict[str, Any]) -> None:
        if self._winner is not None:
            await self._calls.signaling.send(
                leg.address, "cancel", self.call_id, {"reason": "answered_elsewhere"}
            )
            return
        self._winner = leg.address
        self.peer = self._calls.profile_of(leg.address)
        self.answered_at = time.monotonic()
        await self.stop_in_call_sound()
        for other in [a for a in self._legs if a != leg.address]:
            await self._close_leg(other, "answered_elsewhere")
        self._remote_sends_video = self._video and bool(body.get("video", True))
        leg.session.set_playback(True)
        self._open_gates(leg.session)
        await self._set_status(CallStatus.ANSWER)
        self._after_answer()
        if leg.session.state == "connected":
            await self._set_status(CallStatus.CONNECTED)

    async def _close_leg(self, address: str, reason: str) -> None:
        leg = self._legs.pop(address, None)
        if leg is None:
            return
        self._former_legs.add(address)
        with contextlib.suppress(SignalingError):
            await self._calls.signaling.send(address, "cancel", self.call_id, {"reason": reason})
        await leg.session.close()

    async def _leg_failed(self, address: str, outcome: CallStatus) -> None:
        leg = self._legs.get(address)
        if leg is None or self.is_ended():
            return
        if outcome in FAILURE_REASONS:
            await self._tell_failure(address, FAILURE_REASONS[outcome])
        if self._winner == address or self._incoming:
            await self._end(outcome, HangupReason.ERROR)
            return
        leg.outcome = outcome
        await leg.session.close()
        if all(lg.outcome is not None for lg in self._legs.values()):
            final = self._group_outcome()
            failed = final in FAILURE_REASONS
            await self._end(final, HangupReason.ERROR if failed else HangupReason.REMOTE)

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

    async def _cancel_all(self, reason: str) -> None:
        for address, leg in list(self._legs.items()):
            if leg.outcome is None:
                with contextlib.suppress(SignalingError):
                    await self._calls.signaling.send(
                        address, "cancel", self.call_id, {"reason": reason}
                    )

    # messages ---------------------------------------------------------------------------------

    async def handle(self, message: Message) -> None:
        """Act on a verified message that belongs to this call."""
        leg = self._legs.get(message.sender)
        if leg is None or self.is_ended():
            return
        handler = _HANDLERS.get(message.type)
        if handler is None:
            _log.warning("%s: %s not expected in a call", self._calls.address, message.type)
            return
        await handler(self, leg, message.body)

    def was_leg(self, address: str) -> bool:
        """True for a callee this call stopped ringing (its late messages are expected)."""
        return address in self._former_legs

    async def handle_late(self, message: Message) -> None:
        """A message from a callee that lost the race: a late accept is told to stop."""
        _log.info("%s: late %s from %s", self._calls.address, message.type, message.sender)
        if message.type == "accept":
            with contextlib.suppress(SignalingError):
                await self._calls.signaling.send(
                    message.sender, "cancel", self.call_id, {"reason": "answered_elsewhere"}
                )

    async def _on_refusal(self, leg: Leg, body: dict[str, Any]) -> None:
        reason = str(body.get("reason", "busy"))
        outcome = DECLINE_STATUS.get(reason, CallStatus.BUSY)
        if self._incoming:
            return
        await self._leg_failed(leg.address, outcome)

    async def _on_busy(self, leg: Leg, body: dict[str, Any]) -> None:
        if not self._incoming:
            await self._leg_failed(leg.address, CallStatus.BUSY)

    async def _on_cancel(self, leg: Leg, body: dict[str, Any]) -> None:
        if not self._incoming:
            return
        reason = str(body.get("reason", "caller"))
        if reason in FAILURE_STATUS:
            await self._end(FAILURE_STATUS[reason], HangupReason.ERROR)
            return
        if self.is_answered() and reason != "answered_elsewhere":
            await self._end(CallStatus.COMPLETE, HangupReason.REMOTE)
            return
        if reason != "answered_elsewhere":
            await self._calls.notify_missed(self)
        status = CallStatus.NOANSWER if reason == "timeout" else CallStatus.CANCEL
        await self._end(status, HangupReason.REMOTE)

    async def _on_hangup(self, leg: Leg, body: dict[str, Any]) -> None:
        if not (self._incoming or leg.address == self._winner):
            return
        reason = str(body.get("reason", "user"))
        if reason in FAILURE_STATUS:
            await self._end(FAILURE_STATUS[reason], HangupReason.ERROR)
        elif not self.is_answered() and self._incoming:
            await self._calls.notify_missed(self)
            await self._end(CallStatus.CANCEL, HangupReason.REMOTE)
        else:
            await self._end(CallStatus.COMPLETE, HangupReason.REMOTE)

    async def _on_mute(self, leg: Leg, body: dict[str, Any]) -> None:
        self._remote_muted = {"audio": bool(body.get("audio")), "video": bool(body.get("video"))}
        await self._emit("on_mute", self._remote_muted["audio"], self._remote_muted["video"], True)

    async def _on_dtmf(self, leg: Leg, body: dict[str, Any]) -> None:
        digit = body.get("digit")
        if isinstance(digit, int) and 0 <= digit < len(DTMF_DIGITS):
            await self._emit("on_dtmf", digit)
        else:
            _log.warning("%s: bad dtmf digit %r from %s", self._calls.address, digit, leg.address)

    async def _on_accept_message(self, leg: Leg, body: dict[str, Any]) -> None:
        if not self._incoming:
            await self._on_accept(leg, body)

    async def _on_answer_message(self, leg: Leg, body: dict[str, Any]) -> None:
        if not self._incoming:
            await self._on_answer_sdp(leg, body)

    async def _on_ringing_message(self, leg: Leg, body: dict[str, Any]) -> None:
        if not self._incoming:
            await self._on_ringing(leg)

    # in-call controls -------------------------------------------------------------------------

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

    async def hangup(self) -> None:
        """End the call: cancel while ringing, decline an incoming call, or hang up."""
        if self.is_ended():
            return
        if not self._started and not self._incoming:
            await self._end(CallStatus.CANCEL, HangupReason.USER)
            return
        if self._incoming and not self.is_answered():
            await self._send_to_peer("decline", {"reason": "declined"})
            await self._end(CallStatus.CANCEL, HangupReason.USER)
        elif not self._incoming and not self.is_answered():
            await self._cancel_all("caller")
            await self._end(CallStatus.CANCEL, HangupReason.USER)
        else:
            await self._send_to_peer("hangup", {"reason": "user"})
            await self._end(CallStatus.COMPLETE, HangupReason.USER)

    async def mute(self, audio: bool, video: bool, enable: bool) -> None:
        """Mute (``enable=True``) or unmute the local audio and/or video; the peer is told."""
        if audio:
            self._muted["audio"] = enable
        if video:
            self._muted["video"] = enable
        leg = self._active_leg()
        if leg is not None and self.is_answered():
            self._open_gates(leg.session)
            await self._send_to_peer("mute", dict(self._muted))
        elif not self._incoming:
            # still ringing: the early media (the preview) goes to every callee, so the mute
            # gates and is told to every leg, not only to a winner there is not yet
            for ringing in list(self._legs.values()):
                self._open_gates(ringing.session)
                with contextlib.suppress(SignalingError):
                    await self._calls.signaling.send(
                        ringing.address, "mute", self.call_id, dict(self._muted)
                    )
        else:
            await self._send_to_peer("mute", dict(self._muted))
        await self._emit("on_mute", self._muted["audio"], self._muted["video"], False)

    async def toggle_audio_mute(self) -> bool:
        """Flip the audio mute; returns True when audio is now muted."""
        await self.mute(True, False, not self._muted["audio"])
        return self._muted["audio"]

    async def toggle_video_mute(self) -> bool:
        """Flip the video mute; returns True when video is now muted."""
        await self.mute(False, True, not self._muted["video"])
        return self._muted["video"]

    async def send_dtmf(self, digit: int) -> None:
        """Send a DTMF digit (0-9, 10='*', 11='#', 12-15='A'-'D') to the peer's ``on_dtmf``."""
        if not 0 <= digit < len(DTMF_DIGITS):
            raise CallError(f"dtmf digit {digit} must be within 0..{len(DTMF_DIGITS) - 1}")
        await self._send_to_peer("dtmf", {"digit": digit})

    async def set_audio_device(self, device: AudioDevice, enable: bool = True) -> None:
        """Play the call on another output (speaker, earpiece/handset, headset)."""
        previous = self._calls.audio_device
        target = device if enable else AudioDevice.SPEAKER
        speaker = await self._calls.use_audio_device(target)
        leg = self._active_leg()
        if leg is not None:
            leg.session.set_speaker(speaker)
        if target != previous:
            await self._emit("on_audio_device_changed", int(target), int(previous))

    async def switch_source(self, name: str | None = None) -> str:
        """Send video from camera ``name`` (default: the next camera); returns its name."""
        media = self._calls.media
        names = media.camera_names()
        if media.camera is None or not names:
            raise CallError("this endpoint has no camera to switch to")
        if name is None:
            current = media.camera.camera.name
            name = names[(names.index(current) + 1) % len(names)] if current in names else names[0]
        try:
            await media.switch_camera(name)
        except MediaError as err:
            raise CallError(str(err)) from err
        await self._emit("on_video_source_changed", name, names.index(name))
        return name

    async def change_video_format(self, width: int, height: int, fps: int) -> None:
        """Capture and send at another size and frame rate, mid-call."""
        media = self._calls.media
        if media.camera is None:
            raise CallError("this endpoint has no camera")
        try:
            fmt = VideoFormat(width, height, fps)
        except ValueError as err:
            raise CallError(f"video format {width}x{height}@{fps}: {err}") from err
        media.camera.set_format(fmt)
        self.props.video.width, self.props.video.height, self.props.video.fps = width, height, fps
        await self._emit("on_video", width, height, False)

    def set_video_bitrate(self, kbps: int) -> None:
        """Cap the video bitrate (kbps) of the running call (CallError when out of range)."""
        replace(self.props.video, bitrate_kbps=kbps).validate()
        self.props.video.bitrate_kbps = kbps
        for leg in self._legs.values():
            leg.session.set_video_bitrate(kbps * 1000)

    async def play_in_call_sound(self, kind: InCallSound, loops: int = 0) -> None:
        """Play ringback or the busy tone on this endpoint's speaker, unless the app does.

        ``loops`` cycles of the tone's cadence, 0 for until stopped.
        """
        await self.stop_in_call_sound()
        self._sound = kind
        handled = await self._emit("on_play_in_call_sound", kind, True)
        tones = self._calls.media.tones
        if handled or tones is None:
            return
        await tones.play(IN_CALL_TONES[kind], loops)

    async def stop_in_call_sound(self) -> None:
        """Stop the in-call sound (and tell the app, which may be the one playing it)."""
        kind, self._sound = self._sound, None
        if kind is None:
            return
        tones = self._calls.media.tones
        if tones is not None and tones.playing is IN_CALL_TONES[kind]:
            await tones.stop()
        await self._emit("on_play_in_call_sound", kind, False)

    # link supervision and reconnection --------------------------------------------------------

    def _state_callback(self, address: str) -> Callable[[str], None]:
        def changed(state: str) -> None:
            self._calls.spawn(self._link_state(address, state))

        return changed

    async def _link_state(self, address: str, state: str) -> None:
        if self.is_ended() or address not in self._legs:
            return
        leg = self._legs[address]
        # CONNECTED only once ANSWER was reported: answer() and _on_accept() set answered_at
        # before they await (stop tones, send accept), and the link may come up meanwhile.
        answer_reported = self.status >= CallStatus.ANSWER
        if state == "connected" and answer_reported and leg is self._active_leg():
            self._reconnecting_since = None
            await self._set_status(CallStatus.CONNECTED)
        elif state == "failed" and not self.is_answered() and not self._incoming:
            # ICE worked but DTLS failed: the peer's certificate does not match the
            # fingerprint of its signed SDP (or the handshake was tampered with)
            security = leg.session.failed_after_connectivity()
            await self._leg_failed(
                address, CallStatus.SECURITYERROR if security else CallStatus.NETWORKERROR
            )

    def _after_answer(self) -> None:
        self._timers.append(
            asyncio.create_task(self._supervise(), name=f"supervise-{self.call_id}")
        )
        if self.props.max_duration_s > 0:
            self._every(self.props.max_duration_s, self._duration_exceeded)

    async def _duration_exceeded(self) -> None:
        if not self.is_ended():
            await self._send_to_peer("hangup", {"reason": "duration"})
            await self._end(CallStatus.DURATIONEXCEEDED, HangupReason.DURATION)

    async def _supervise(self) -> None:
        """Watch media; on silence or failure show RECONNECTING, rebuild, give up after grace."""
        while not self.is_ended():
            await asyncio.sleep(WATCHDOG_PERIOD_S)  # periodic link check
            leg = self._active_leg()
            if leg is None:
                return
            if self._reconnecting_since is not None:
                waited = time.monotonic() - self._reconnecting_since
                if waited > self.props.reconnect_grace_s:
                    await self._send_to_peer("hangup", {"reason": "network"})
                    await self._end(CallStatus.NETWORKERROR, HangupReason.ERROR)
            elif self._link_lost(leg.session):
                self._reconnecting_since = time.monotonic()
                await self._set_status(CallStatus.RECONNECTING)
                if not self._incoming:
                    await self._reoffer(leg)

    def _link_lost(self, session: MediaSession) -> bool:
        if session.state == "failed":
            return True
        if self._remote_muted["audio"] and (
            self._remote_muted["video"] or not self._remote_sends_video
        ):
            return False
        last = session.stats.last_media_at
        return last is not None and time.monotonic() - last > MEDIA_SILENCE_S

    async def _reoffer(self, leg: Leg) -> None:
        self._generation += 1
        session, sdp = await self._calls.prepared_offer(
            self.props, label=f"{self.call_id}>{leg.address}#{self._generation}"
        )
        old, leg.session = leg.session, session
        leg.generation = self._generation
        self._watch(leg.address, session)
        self._open_media(session)
        await old.close()
        await self._send_to_peer("reoffer", {"sdp": sdp, "generation": self._generation})

    def _open_media(self, session: MediaSession) -> None:
        session.set_playback(True)
        self._open_gates(session)

    async def _on_reoffer(self, leg: Leg, body: dict[str, Any]) -> None:
        if not self._incoming or not self.is_answered():
            return
        generation = body.get("generation")
        if not isinstance(generation, int) or generation <= leg.generation:
            _log.warning("%s: stale reoffer %r ignored", self._calls.address, generation)
            return
        session = self._calls.new_session(
            self.props, video=self._video, label=f"{self.call_id}#{generation}"
        )
        try:
            sdp = await session.accept_offer(str(body.get("sdp", "")))
        except SecurityError as err:
            await session.close()
            await self.security_failure(leg.address, f"reoffer: {err}")
            return
        except (MediaError, ValueError) as err:
            _log.error("%s: bad reoffer from %s: %s", self._calls.address, leg.address, err)
            await session.close()
            return
        old, leg.session = leg.session, session
        leg.generation = generation
        self._watch(leg.address, session)
        self._open_media(session)
        if self._reconnecting_since is None:
            self._reconnecting_since = time.monotonic()
            await self._set_status(CallStatus.RECONNECTING)
        await old.close()
        await self._send_to_peer("reanswer", {"sdp": sdp, "generation": generation})

    async def _on_reanswer(self, leg: Leg, body: dict[str, Any]) -> None:
        if self._incoming or body.get("generation") != leg.generation:
            return
        try:
            await leg.session.apply_answer(str(body.get("sdp", "")))
        except SecurityError as err:
            await self.security_failure(leg.address, f"reanswer: {err}")
        except (MediaError, ValueError) as err:
            _log.error("%s: bad reanswer from %s: %s", self._calls.address, leg.address, err)

    async def peer_went_offline(self, address: str) -> None:
        """The broker says ``address`` is gone (its last will): end the call or drop the leg."""
        if self.is_ended() or address not in self._legs:
            return
        if self._incoming and not self.is_answered():
            await self._calls.notify_missed(self)
            await self._end(CallStatus.CANCEL, HangupReason.REMOTE)
        elif self._incoming or address == self._winner:
            await self._end(CallStatus.NETWORKERROR, HangupReason.ERROR)
        else:
            await self._leg_failed(address, CallStatus.OFFLINE)

    async def security_failure(self, address: str, detail: str) -> None:
        """A message claiming to be from this call's peer failed verification: end the call."""
        if self.is_ended() or address not in self._legs:
            return
        _log.error("%s: security failure in call %s: %s", self._calls.address, self.call_id, detail)
        await self._leg_failed(address, CallStatus.SECURITYERROR)

    # ending -----------------------------------------------------------------------------------

    async def _end(self, status: CallStatus, reason: HangupReason) -> None:
        if self.is_ended():
            return
        await self._set_status(status)
        self.hangup_reason = reason
        self.ended_at = time.monotonic()
        current = asyncio.current_task()
        for timer in self._timers:
            if timer is not current:
                timer.cancel()
        await self.stop_in_call_sound()
        await self._calls.stop_ringing()
        for leg in list(self._legs.values()):
            await leg.session.close()
        self._calls.call_ended(self)
        await self._emit("on_hangup", reason)
        code = ERROR_CODES.get(status)
        if code is not None:
            await self._calls.notify_error(self.props, code)
        if status == CallStatus.BUSY and not self._incoming and self.props.in_call_sounds:
            await self.play_in_call_sound(InCallSound.BUSY, loops=3)
        self.ended.set()


_Handler = Callable[[Call, Leg, dict[str, Any]], Awaitable[None]]
_HANDLERS: dict[str, _Handler] = {
    "ringing": Call._on_ringing_message,
    "answer": Call._on_answer_message,
    "accept": Call._on_accept_message,
    "busy": Call._on_busy,
    "decline": Call._on_refusal,
    "cancel": Call._on_cancel,
    "hangup": Call._on_hangup,
    "mute": Call._on_mute,
    "dtmf": Call._on_dtmf,
    "reoffer": Call._on_reoffer,
    "reanswer": Call._on_reanswer,
}
