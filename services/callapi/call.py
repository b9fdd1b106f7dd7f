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
import time
from collections.abc import Awaitable, Callable
from typing import Any

from services.callapi.callstate import (
    DECLINE_STATUS,
    DTMF_DIGITS,
    ERROR_CODES,
    FAILURE_STATUS,
    Leg,
)
from services.callapi.controls import CallControls
from services.callapi.door_release import DoorRelease
from services.callapi.listeners import InProgressListener
from services.callapi.status import CallError, CallStatus, HangupReason, InCallSound
from services.callapi.supervision import LinkSupervision
from services.media.errors import MediaError, SecurityError
from services.signaling.endpoint import Message
from services.signaling.errors import SignalingError

_log = logging.getLogger(__name__)


class Call(CallControls, LinkSupervision, DoorRelease):
    """One call, incoming or outgoing (mesibo's Call)."""

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
        self.unlock_challenge = self._calls.new_unlock_challenge()
        await asyncio.gather(*(self._invite(t.address) for t in online))
        if self.is_ended():
            return
        self._every(self.props.connect_timeout_s, self._connect_timeout)
        self._every(self.props.ring_timeout_s, self._ring_timeout)

    async def _invite(self, address: str) -> None:
        session, sdp = await self._calls.prepared_offer(
            self.props, label=f"{self.call_id}>{address}"
        )
        if self.is_ended():  # hung up while the offer was made
            await session.close()
            return
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

    async def accept_invite(self, message: Message) -> None:
        """Answer the caller's SDP while ringing (early media), after telling it we ring."""
        session = self._calls.new_session(self.props, video=self._video, label=self.call_id)
        leg = Leg(message.sender, session)
        self._legs[message.sender] = leg
        self._watch(message.sender, session)
        offered = message.body.get("unlock_challenge")
        self.unlock_challenge = self._calls.new_unlock_challenge() or (
            offered if isinstance(offered, str) else None
        )
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
        answer: dict[str, Any] = {"sdp": sdp}
        if self._calls.issues_unlock_challenges and self.unlock_challenge is not None:
            answer["unlock_challenge"] = self.unlock_challenge
        await self._calls.signaling.send(message.sender, "answer", self.call_id, answer)
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
        challenge = body.get("unlock_challenge")
        if isinstance(challenge, str) and challenge and self.unlock_challenge is None:
            self.unlock_challenge = challenge  # we called a door ("monitor")
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
    "unlock": Call._on_unlock,
    "unlock_result": Call._on_unlock_result,
}
