"""A call in progress: the mesibo ``Call`` object, outgoing (to one or more targets) or incoming.

A ``Call`` owns its state: identity, answer and end times, its legs (legs.py), its
status and listeners (events.py) and its timers (timers.py). Three components with
their own state do the rest behind narrow protocols: the in-call controls (controls.py),
link supervision (supervision.py) and door release (door_release.py). A call reaches
its endpoint only through ``CallEndpoint`` (port.py).

An outgoing call invites all of its targets at once; the first to accept wins and the
others are cancelled with "answered elsewhere". Every status reaches the listeners in
order, and a terminal status (``status & 0x40``) exactly once, followed by ``on_hangup``.
Each message type of a call has exactly one handler, in :meth:`Call._message_table`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from av import VideoFrame

from services.callapi.controls import CallControls
from services.callapi.door_release import DOOR_OTHER_LEG, DoorRelease
from services.callapi.events import CallEvents
from services.callapi.legs import Leg, Legs
from services.callapi.observer import CallObserver
from services.callapi.port import CallEndpoint
from services.callapi.properties import CallProperties, UserProfile, bell_json
from services.callapi.reasons import (
    DECLINE_STATUS,
    ERROR_CODES,
    FAILURE_REASONS,
    FAILURE_STATUS,
    NOT_MISSED,
)
from services.callapi.status import (
    AudioDevice,
    CallError,
    CallErrorCode,
    CallStatus,
    HangupReason,
    InCallSound,
)
from services.callapi.supervision import LinkSupervisor
from services.callapi.timers import CallTimers
from services.media.errors import MediaError, SecurityError
from services.media.session import MediaSession
from services.signaling.endpoint import Message
from services.signaling.errors import SignalingError

_log = logging.getLogger(__name__)

MessageHandler = Callable[[Leg, dict[str, Any]], Awaitable[None]]
"""Acts on the body of a verified message from one of the call's legs."""


class Call:
    """One call, incoming or outgoing (mesibo's Call)."""

    def __init__(
        self,
        endpoint: CallEndpoint,
        props: CallProperties,
        *,
        call_id: str,
        incoming: bool,
        peer: UserProfile,
    ) -> None:
        self._endpoint = endpoint
        self._name = endpoint.address
        self.props = props
        self.call_id = call_id
        self.peer = peer
        self.hangup_reason: HangupReason | None = None
        self.created_at = endpoint.now()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.ended = asyncio.Event()
        """Set once the call is over and everything is released."""
        self.last_remote_frame: VideoFrame | None = None
        self.remote_frame = asyncio.Event()
        """Set by the first video frame from the peer."""
        self._incoming = incoming
        self._video = props.video.enabled
        self._started = False
        self._ring_deadline = self.created_at + props.ring_timeout_s
        self._remote_video_size = (0, 0)
        self._video_watchers: list[Callable[[VideoFrame], None]] = []
        self._events: CallEvents[Call] = CallEvents(
            self, f"{endpoint.address}: call {call_id}", self._video
        )
        self._legs = Legs(incoming)
        self._timers = CallTimers(call_id)
        self._controls = CallControls(
            self, endpoint.devices, send_video=props.video.enabled and props.video.send
        )
        self._link = LinkSupervisor(self, endpoint.address)
        self._door = DoorRelease(self, endpoint.unlock_policy, endpoint.address)
        self._handlers = self._message_table()
        self._next_stage: Callable[[], Awaitable[bool]] | None = None
        self.end_reason = ""
        """The ``reason`` of the ``cancel`` that ended a ringing call (sent or received), e.g.
        ``"door-opened"``; "" otherwise."""

    def _message_table(self) -> dict[str, MessageHandler]:
        """Every message type a call takes (``invite`` goes to ``Calls``), and its handler."""
        return {
            "ringing": self._on_ringing,
            "answer": self._on_answer,
            "accept": self._on_accept,
            "busy": self._on_busy,
            "decline": self._on_decline,
            "cancel": self._on_cancel,
            "hangup": self._on_hangup,
            "mute": self._controls.on_mute,
            "dtmf": self._controls.on_dtmf,
            "reoffer": self._link.on_reoffer,
            "reanswer": self._link.on_reanswer,
            "restart": self._link.on_restart,
            "unlock": self._door.on_unlock,
            "unlock_result": self._door.on_unlock_result,
        }

    @property
    def handled_types(self) -> frozenset[str]:
        """The message types this call acts on."""
        return frozenset(self._handlers)

    # state queries (mesibo names) -------------------------------------------------------------

    @property
    def status(self) -> CallStatus:
        """The current status (mesibo's CallStatus)."""
        return self._events.status

    @property
    def statuses(self) -> list[CallStatus]:
        """Every status the call went through, in order."""
        return self._events.statuses

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
        leg = self.active_leg()
        return leg is not None and leg.session.state == "connected" and not self.is_ended()

    def is_ended(self) -> bool:
        """True once a terminal status was reached."""
        return self._events.is_ended()

    def answer_time(self) -> float | None:
        """When the call was answered (time.monotonic()), or None."""
        return self.answered_at

    def duration(self) -> float:
        """Seconds since answer (0 before), until the end."""
        if self.answered_at is None:
            return 0.0
        return (self.ended_at or self._endpoint.now()) - self.answered_at

    def sends_video(self) -> bool:
        """True while this side sends its camera's video (on for the call, not muted)."""
        return self._controls.sends_video()

    def get_mute_status(self, audio: bool, video: bool, remote: bool = False) -> bool:
        """True if every asked-for stream (audio and/or video) is muted, here or at the peer."""
        return self._controls.get_mute_status(audio, video, remote)

    @property
    def session(self) -> MediaSession | None:
        """The media session with the peer (the winner's, for an outgoing ring group)."""
        leg = self.active_leg()
        return leg.session if leg else None

    @property
    def legs(self) -> dict[str, Leg]:
        """The callees of an outgoing call (the caller of an incoming one), by address."""
        return self._legs.by_address

    @property
    def unlock_challenge(self) -> str | None:
        """The door-release challenge of the leg talked to (None when no door is in it)."""
        return self._door.challenge

    @unlock_challenge.setter
    def unlock_challenge(self, challenge: str | None) -> None:
        self._door.challenge = challenge

    def unlock_challenge_of(self, address: str) -> str | None:
        """The door-release challenge of the leg with ``address`` (each invite has its own)."""
        return self._door.challenge_of(address)

    def was_leg(self, address: str) -> bool:
        """True for a callee this call stopped ringing (its late messages are expected)."""
        return self._legs.was_leg(address)

    # listeners and video watchers -------------------------------------------------------------

    def add_listener(self, listener: CallObserver[Call]) -> None:
        """Let ``listener`` hear this call too, after the one given to ``start()``.

        The default call UI listens this way to a call the app started with its own
        listener. Only the first listener's ``on_play_in_call_sound`` result counts.
        """
        self._events.add(listener)

    def remove_listener(self, listener: CallObserver[Call]) -> None:
        """Stop telling ``listener`` (one added with :meth:`add_listener`) about this call."""
        self._events.remove(listener)

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

    # in-call controls (mesibo names; controls.py does the work) -------------------------------

    async def mute(self, audio: bool, video: bool, enable: bool) -> None:
        """Mute (``enable=True``) or unmute the local audio and/or video; the peer is told."""
        await self._controls.mute(audio, video, enable)

    async def toggle_audio_mute(self) -> bool:
        """Flip the audio mute; returns True when audio is now muted."""
        return await self._controls.toggle("audio")

    async def toggle_video_mute(self) -> bool:
        """Flip the video mute; returns True when video is now muted."""
        return await self._controls.toggle("video")

    async def send_dtmf(self, digit: int) -> None:
        """Send a DTMF digit (0-9, 10='*', 11='#', 12-15='A'-'D') to the peer's ``on_dtmf``."""
        await self._controls.send_dtmf(digit)

    async def set_audio_device(self, device: AudioDevice, enable: bool = True) -> None:
        """Play the call on another output (speaker, earpiece/handset, headset)."""
        await self._controls.set_audio_device(device, enable)

    async def switch_source(self, name: str | None = None) -> str:
        """Send video from camera ``name`` (default: the next camera); returns its name."""
        return await self._controls.switch_source(name)

    async def change_video_format(self, width: int, height: int, fps: int) -> None:
        """Capture and send at another size and frame rate, mid-call."""
        await self._controls.change_video_format(width, height, fps)

    def set_video_bitrate(self, kbps: int) -> None:
        """Cap the video bitrate (kbps) of the running call (CallError when out of range)."""
        self._controls.set_video_bitrate(kbps)

    async def play_in_call_sound(self, kind: InCallSound, loops: int = 0) -> None:
        """Play ringback or the busy tone on this endpoint's speaker, unless the app does.

        ``loops`` cycles of the tone's cadence, 0 for until stopped.
        """
        await self._controls.play_in_call_sound(kind, loops)

    async def stop_in_call_sound(self) -> None:
        """Stop the in-call sound (and tell the app, which may be the one playing it)."""
        await self._controls.stop_in_call_sound()

    async def unlock(self, timeout: float = 5.0) -> bool:
        """Ask the door at the other end of this call to open; True when it opened.

        Raises CallError when the peer is not a door (no challenge), the call is over, or
        the door does not answer within ``timeout`` seconds. The outcome also reaches
        ``InProgressListener.on_door_release``.
        """
        return await self._door.unlock(timeout)

    async def camera_lost(self, err: Exception) -> None:
        """The camera failed mid-call: go on audio-only.

        The peer sees video muted, the app hears HWERROR (``on_error``); the camera is retried and
        video resumes by itself.
        """
        _log.error("%s: call %s goes on without video: %s", self._name, self.call_id, err)
        await self._controls.camera_lost()
        await self._endpoint.notify_error(self.props, CallErrorCode.HARDWARE)

    async def camera_back(self) -> None:
        """The camera works again: unmute the video this side muted for it."""
        await self._controls.camera_back()

    # starting ---------------------------------------------------------------------------------

    async def start(self, listener: CallObserver[Call] | None = None) -> None:
        """Start the call: an outgoing call invites its targets, an incoming one starts ringing."""
        if self._started:
            if listener is not None:
                self._events.first = listener
            return
        self._started = True
        self._events.first = listener
        if self._incoming:
            await self.set_status(CallStatus.INCOMING)
            return
        await self._start_outgoing()

    async def _start_outgoing(self) -> None:
        await self.set_status(CallStatus.INPROGRESS)
        self._endpoint.devices.apply_video_format(self.props)
        self._ring_deadline = self._endpoint.now() + self.props.ring_timeout_s
        rung = await self._ring(self.props.targets())
        if self.is_ended():
            return
        if not rung and not await self._ask_next_stage():
            await self.end(CallStatus.OFFLINE, HangupReason.ERROR)
            return
        if self.is_ended():
            return
        self._timers.after(self.props.connect_timeout_s, self._connect_timeout)
        self._timers.after(self._ring_time_left(), self._ring_timeout)

    async def _ring(self, targets: Sequence[UserProfile]) -> list[str]:
        """Invite the online ``targets``, wait for the offline ones; who rings or is waited for.

        An offline target is invited if it comes online while the call rings (a late
        joiner); only one being woken (a push) counts as rung before it is online.
        """
        addresses = [t.address for t in targets if t.address not in self._legs]
        await self._endpoint.follow(addresses)
        if self.is_ended():
            return []
        online = [a for a in addresses if self._endpoint.is_online(a)]
        woken = []
        for address in addresses:
            if address not in online:
                wakeable = self._endpoint.can_wake(address)
                self._legs.wait_for(address, wakeable=wakeable)
                if wakeable:
                    woken.append(address)
                _log.info(
                    "%s: %s is offline%s; invited if it comes online while the call rings",
                    self._name,
                    address,
                    " (being woken)" if wakeable else "",
                )
        await asyncio.gather(*(self._invite(address) for address in online))
        return online + woken

    async def add_targets(self, targets: Sequence[UserProfile]) -> list[str]:
        """Ring more targets while this outgoing call still rings (a later stage of a ring group).

        Each gets its own leg and offer in the same call, its invite's ``ring_timeout_ms``
        being what is left of the ring timeout (counted from ``start()``); the first answer
        of any leg wins, as for the first targets. Returns the addresses invited now or
        waited for (offline but being woken); [] when the call no longer rings. Targets
        already rung are skipped.
        """
        if self._incoming or self.is_ended() or self.is_answered() or not self._started:
            return []
        return await self._ring(targets)

    def set_next_stage(self, next_stage: Callable[[], Awaitable[bool]] | None) -> None:
        """Who adds the next stage when every leg of this ring group has ended (declined, offline).

        ``next_stage()`` is awaited then, while the call still rings: it calls
        :meth:`add_targets` and returns True when someone rings now, or False when there is
        no stage left (the call then ends with the ring group's outcome, as without stages).
        """
        self._next_stage = next_stage

    async def _ask_next_stage(self) -> bool:
        """True when a later stage rings someone now (see :meth:`set_next_stage`)."""
        if self._next_stage is None or self.is_ended() or self.is_answered():
            return False
        return await self._next_stage()

    async def cancel_ring(self, reason: str) -> bool:
        """Stop this outgoing call while it still rings, telling every callee why.

        Every leg still ringing gets ``cancel`` with ``reason`` (e.g. ``"door-opened"``),
        nobody more is invited (no waiting target, no later stage) and the call ends
        CANCEL with ``end_reason`` = ``reason``. An answered or ended call, or an incoming
        one, is untouched: False.
        """
        if self._incoming or self.is_ended() or self.is_answered():
            return False
        self._next_stage = None
        self.end_reason = reason
        ringing = [leg.address for leg in self._legs if leg.outcome is None]
        await asyncio.gather(
            *(self.send_or_log(address, "cancel", {"reason": reason}) for address in ringing)
        )
        await self.end(CallStatus.CANCEL, HangupReason.USER)
        return True

    def waits_for(self, address: str) -> bool:
        """True when ``address`` is a target that was offline and the call still rings."""
        return not self._incoming and not self.is_ended() and self._legs.waits_for(address)

    async def invite_late_joiner(self, address: str) -> None:
        """``address`` came online while the call rings: invite it too (first answer wins)."""
        if self.is_ended() or self.is_answered() or not self._legs.take_waiting(address):
            return
        _log.info("%s: call %s: %s came online; inviting it", self._name, self.call_id, address)
        await self._invite(address)

    async def _invite(self, address: str) -> None:
        session, sdp = await self._endpoint.prepared_offer(
            self.props, label=f"{self.call_id}>{address}"
        )
        if self.is_ended():  # hung up while the offer was made
            await session.close()
            return
        self._legs.add(Leg(address, session))
        self._watch(address, session)
        self._controls.open_gates(session)  # early media: the preview (unless muted before start)
        body: dict[str, Any] = {
            "sdp": sdp,
            "video": self._video,
            "profile": self._endpoint.profile_json(),
            "ring_timeout_ms": int(self._ring_time_left() * 1000),
        }
        if self.props.bell is not None:
            body["bell"] = bell_json(self.props.bell)
        challenge = self._door.issue(address)  # every invite its own
        if challenge is not None:
            body["unlock_challenge"] = challenge
        relays = self._endpoint.invite_ice_servers(address)  # minted for this callee
        if relays:
            body["ice_servers"] = relays
        try:
            await self._endpoint.send(address, "invite", self.call_id, body)
        except SignalingError as err:
            _log.error("%s: invite to %s failed: %s", self._name, address, err)
            await self.leg_failed(address, CallStatus.UNREACHABLE)

    def _ring_time_left(self) -> float:
        """What is left of the ring timeout (all of it for the first invites)."""
        return max(0.0, self._ring_deadline - self._endpoint.now())

    async def _connect_timeout(self) -> None:
        if self._legs.wakeable_waiting():
            return  # a phone being woken may take longer to connect: the ring timeout decides
        if not self.is_ended() and not any(leg.rang for leg in self._legs):
            await self._cancel_all("unreachable")
            await self.end(CallStatus.UNREACHABLE, HangupReason.ERROR)

    async def _ring_timeout(self) -> None:
        if self.is_ended() or self.is_answered():
            return
        if self._incoming:
            await self.send_to_peer("decline", {"reason": "timeout"})
            await self._missed()
        else:
            await self._cancel_all("timeout")
        await self.end(CallStatus.NOANSWER, HangupReason.REMOTE)

    # incoming side ----------------------------------------------------------------------------

    async def accept_invite(self, message: Message) -> None:
        """Answer the caller's SDP while ringing (early media), after telling it we ring."""
        session = self._endpoint.new_session(self.props, video=self._video, label=self.call_id)
        self._legs.add(Leg(message.sender, session))
        self._watch(message.sender, session)
        self._door.issue(message.sender, message.body.get("unlock_challenge"))
        await self._endpoint.send(message.sender, "ringing", self.call_id, {})
        failure: tuple[CallStatus, Exception] | None = None
        try:
            sdp = await session.accept_offer(str(message.body.get("sdp", "")))
        except SecurityError as err:
            failure = (CallStatus.SECURITYERROR, err)
        except (MediaError, ValueError) as err:
            failure = (CallStatus.ERROR, err)
        if failure is not None:
            status, error = failure
            _log.error("%s: refused the offer of %s: %s", self._name, message.sender, error)
            await self.send_to_peer("decline", {"reason": "error"})
            await self.end(status, HangupReason.ERROR)
            return
        answer: dict[str, Any] = {"sdp": sdp}
        challenge = self._door.challenge_to_send(message.sender)
        if challenge is not None:
            answer["unlock_challenge"] = challenge
        await self._endpoint.send(message.sender, "answer", self.call_id, answer)
        self._timers.after(self.props.ring_timeout_s + 5.0, self._ring_timeout)

    async def answer(self, video: bool = True) -> None:
        """Answer an incoming call, with or without sending video (mesibo's ``answer``)."""
        if not self._incoming:
            raise CallError(
                "answer() is for incoming calls; an outgoing call is answered by the peer"
            )
        if self.is_ended() or self.is_answered():
            return
        leg = self.active_leg()
        assert leg is not None
        self._controls.send_video = self._controls.send_video and video
        self.answered_at = self._endpoint.now()
        if self._controls.send_video:
            self._endpoint.devices.apply_video_format(self.props)
        await self._endpoint.devices.stop_ringing()
        leg.session.set_playback(True)
        self._controls.open_gates(leg.session)
        await self.send_to_peer("accept", {"video": self._controls.send_video})
        await self._answered(leg)

    async def _answered(self, leg: Leg) -> None:
        """Both sides: report ANSWER, start supervising, report CONNECTED if the link is up."""
        await self.set_status(CallStatus.ANSWER)
        self._timers.run(self._link.watch(), f"supervise-{self.call_id}")
        if self.props.max_duration_s > 0:
            self._timers.after(self.props.max_duration_s, self._duration_exceeded)
        if leg.session.state == "connected":
            await self.set_status(CallStatus.CONNECTED)

    async def _duration_exceeded(self) -> None:
        if not self.is_ended():
            await self.send_to_peer("hangup", {"reason": "duration"})
            await self.end(CallStatus.DURATIONEXCEEDED, HangupReason.DURATION)

    # outgoing side ----------------------------------------------------------------------------

    async def _on_ringing(self, leg: Leg, body: dict[str, Any]) -> None:
        if self._incoming:
            return
        leg.rang = True
        if self.status < CallStatus.RINGING:
            await self.set_status(CallStatus.RINGING)
            if self.props.in_call_sounds:
                await self.play_in_call_sound(InCallSound.RINGING)

    async def _on_answer(self, leg: Leg, body: dict[str, Any]) -> None:
        if self._incoming:
            return
        self._door.learn(leg.address, body.get("unlock_challenge"))  # we called a door
        try:
            await leg.session.apply_answer(str(body.get("sdp", "")))
        except SecurityError as err:
            _log.error("%s: refused the answer of %s: %s", self._name, leg.address, err)
            await self.leg_failed(leg.address, CallStatus.SECURITYERROR)
        except (MediaError, ValueError) as err:
            _log.error("%s: bad answer from %s: %s", self._name, leg.address, err)
            await self.leg_failed(leg.address, CallStatus.ERROR)

    async def _on_accept(self, leg: Leg, body: dict[str, Any]) -> None:
        if self._incoming:
            return
        if self._legs.winner is not None:
            await self.send_or_log(leg.address, "cancel", {"reason": "answered_elsewhere"})
            return
        self._legs.winner = leg.address
        self.peer = self._endpoint.profile_of(leg.address)
        self.answered_at = self._endpoint.now()
        await self.stop_in_call_sound()
        for other in [a for a in self.legs if a != leg.address]:
            await self._close_leg(other, "answered_elsewhere")
        self._controls.remote_sends_video = self._video and bool(body.get("video", True))
        leg.session.set_playback(True)
        self._controls.open_gates(leg.session)
        await self._answered(leg)

    async def _close_leg(self, address: str, reason: str) -> None:
        leg = self._legs.retire(address)
        if leg is not None:
            await self.send_or_log(address, "cancel", {"reason": reason})
            await leg.session.close()

    async def _cancel_all(self, reason: str) -> None:
        for leg in self._legs:
            if leg.outcome is None:
                await self.send_or_log(leg.address, "cancel", {"reason": reason})

    # messages ---------------------------------------------------------------------------------

    async def handle(self, message: Message) -> None:
        """Act on a verified message that belongs to this call."""
        leg = self._legs.get(message.sender)
        if leg is None or self.is_ended():
            return
        handler = self._handlers.get(message.type)
        if handler is None:
            _log.warning("%s: %s not expected in a call", self._name, message.type)
            return
        await handler(leg, message.body)

    async def handle_late(self, message: Message) -> None:
        """A message from a callee that lost the race: dropped; a late accept is told to stop.

        Its door messages are counted and reported: door release is with the answering leg.
        """
        if message.type in ("unlock", "unlock_result"):
            await self.drop(message.sender, message.type, DOOR_OTHER_LEG, "its leg was cancelled")
            return
        _log.info("%s: late %s from %s dropped", self._name, message.type, message.sender)
        if message.type == "accept":
            await self.send_or_log(message.sender, "cancel", {"reason": "answered_elsewhere"})

    async def drop(self, sender: str, message_type: str, reason: str, detail: str) -> None:
        """Drop a message naming this call without acting on it; the call goes on.

        Logged, counted by the endpoint under ``reason`` (``callbox status``) and reported
        to the listeners (``on_message_dropped``).
        """
        _log.warning(
            "%s: call %s: dropped %s from %s (%s): %s; the call goes on",
            self._name,
            self.call_id,
            message_type,
            sender,
            reason,
            detail,
        )
        self._endpoint.count_dropped(reason)
        await self.report_dropped(sender, message_type, reason, detail)

    async def report_dropped(
        self, sender: str, message_type: str, reason: str, detail: str
    ) -> None:
        """Tell the listeners about a message naming this call that was dropped (no change)."""
        await self._events.emit_optional("on_message_dropped", sender, message_type, reason, detail)

    async def _on_decline(self, leg: Leg, body: dict[str, Any]) -> None:
        if not self._incoming:
            outcome = DECLINE_STATUS.get(str(body.get("reason", "busy")), CallStatus.BUSY)
            await self.leg_failed(leg.address, outcome)

    async def _on_busy(self, leg: Leg, body: dict[str, Any]) -> None:
        if not self._incoming:
            await self.leg_failed(leg.address, CallStatus.BUSY)

    async def _on_cancel(self, leg: Leg, body: dict[str, Any]) -> None:
        if not self._incoming:
            return
        reason = str(body.get("reason", "caller"))
        if reason in FAILURE_STATUS:
            self._log_peer_failure(leg, "cancel", reason)
            await self.end(FAILURE_STATUS[reason], HangupReason.ERROR)
            return
        if self.is_answered() and reason != "answered_elsewhere":
            await self.end(CallStatus.COMPLETE, HangupReason.REMOTE)
            return
        self.end_reason = reason
        if reason not in NOT_MISSED:
            await self._missed()
        status = CallStatus.NOANSWER if reason == "timeout" else CallStatus.CANCEL
        await self.end(status, HangupReason.REMOTE)

    async def _on_hangup(self, leg: Leg, body: dict[str, Any]) -> None:
        if not (self._incoming or leg.address == self._legs.winner):
            return
        reason = str(body.get("reason", "user"))
        if reason in FAILURE_STATUS:
            self._log_peer_failure(leg, "hangup", reason)
            await self.end(FAILURE_STATUS[reason], HangupReason.ERROR)
        elif not self.is_answered() and self._incoming:
            await self._missed()
            await self.end(CallStatus.CANCEL, HangupReason.REMOTE)
        else:
            await self.end(CallStatus.COMPLETE, HangupReason.REMOTE)

    # failures ---------------------------------------------------------------------------------

    def _log_peer_failure(self, leg: Leg, message_type: str, reason: str) -> None:
        cause = (
            "our media failed its verification (DTLS fingerprint or SDP fingerprint)"
            if reason == "security"
            else f"it gave up ({reason})"
        )
        _log.error(
            "%s: call %s: %s's signed %s says %s",
            self._name,
            self.call_id,
            leg.address,
            message_type,
            cause,
        )

    async def leg_failed(self, address: str, outcome: CallStatus) -> None:
        """A leg failed with ``outcome``: end the call, or drop the leg of a ring group."""
        leg = self._legs.get(address)
        if leg is None or self.is_ended():
            return
        if outcome in FAILURE_REASONS:
            await self._tell_failure(address, FAILURE_REASONS[outcome])
        if self._legs.winner == address or self._incoming:
            await self.end(outcome, HangupReason.ERROR)
            return
        leg.outcome = outcome
        await leg.session.close()
        if self._legs.all_ended() and not self._legs.wakeable_waiting():
            if await self._ask_next_stage():
                return
            final = self._legs.group_outcome()
            failed = final in FAILURE_REASONS
            await self.end(final, HangupReason.ERROR if failed else HangupReason.REMOTE)

    async def _tell_failure(self, address: str, reason: str) -> None:
        """Tell a peer that this side gave up on it, so it does not wait for a timeout."""
        if self.is_answered():
            message_type = "hangup"
        elif self._incoming:
            message_type = "decline"
        else:
            message_type = "cancel"
        await self.send_or_log(address, message_type, {"reason": reason})

    async def peer_went_offline(self, address: str) -> None:
        """The broker says ``address`` is gone (its last will).

        Before the answer the leg is dropped (a callee that has not answered records a
        missed call). After it, the link supervisor weighs the will against the peer's media:
        an outage is ridden out, a process that is gone ends the call.
        """
        if self.is_ended() or address not in self._legs:
            return
        leg = self._legs.get(address)
        if self._incoming and not self.is_answered():
            await self._missed()
            await self.end(CallStatus.CANCEL, HangupReason.REMOTE)
        elif leg is not None and leg is self.active_leg() and self.is_answered():
            await self._link.peer_offline(leg)
        elif self._incoming or address == self._legs.winner:
            await self.end(CallStatus.NETWORKERROR, HangupReason.ERROR)
        else:
            await self.leg_failed(address, CallStatus.OFFLINE)

    def peer_came_online(self, address: str) -> None:
        """The broker says ``address`` is online again: a reconnecting call retries now."""
        leg = self._legs.get(address)
        if not self.is_ended() and leg is not None and leg is self.active_leg():
            self._link.peer_online(leg)

    async def security_failure(self, address: str, detail: str) -> None:
        """The authenticated peer's media failed verification: end its leg with SECURITYERROR.

        Only media evidence comes here (its DTLS certificate is not the fingerprint of its
        signed SDP, or that SDP has no acceptable fingerprint); a message that fails its
        own verification is dropped instead (``Calls``) and never ends a call.
        """
        if self.is_ended() or address not in self._legs:
            return
        _log.error(
            "%s: call %s: media of %s failed verification (SECURITYERROR): %s",
            self._name,
            self.call_id,
            address,
            detail,
        )
        await self.leg_failed(address, CallStatus.SECURITYERROR)

    # hanging up and ending --------------------------------------------------------------------

    async def hangup(self) -> None:
        """End the call: cancel while ringing, decline an incoming call, or hang up."""
        if self.is_ended():
            return
        if not self._started and not self._incoming:
            await self.end(CallStatus.CANCEL, HangupReason.USER)
            return
        if self._incoming and not self.is_answered():
            await self.send_to_peer("decline", {"reason": "declined"})
            await self.end(CallStatus.CANCEL, HangupReason.USER)
        elif not self._incoming and not self.is_answered():
            await self._cancel_all("caller")
            await self.end(CallStatus.CANCEL, HangupReason.USER)
        else:
            await self.send_to_peer("hangup", {"reason": "user"})
            await self.end(CallStatus.COMPLETE, HangupReason.USER)

    async def end(self, status: CallStatus, reason: HangupReason) -> None:
        """Reach the terminal ``status``: stop timers and sounds, close media, tell everyone."""
        if self.is_ended():
            return
        await self.set_status(status)
        self.hangup_reason = reason
        self.ended_at = self._endpoint.now()
        self._timers.cancel()
        self._legs.stop_waiting()
        await self._link.close()
        await self.stop_in_call_sound()
        await self._endpoint.devices.stop_ringing()
        for leg in self._legs:
            await leg.session.close()
        self._endpoint.call_ended(self)
        await self.emit("on_hangup", reason)
        code = ERROR_CODES.get(status)
        if code is not None:
            await self._endpoint.notify_error(self.props, code)
        if status == CallStatus.BUSY and not self._incoming and self.props.in_call_sounds:
            await self.play_in_call_sound(InCallSound.BUSY, loops=3)
        self.ended.set()

    async def _missed(self) -> None:
        await self._endpoint.report_missed(self.peer, self._video)

    # what the components use ------------------------------------------------------------------

    def active_leg(self) -> Leg | None:
        """The leg talked to: the winner, or the caller of an incoming call."""
        return self._legs.active()

    def every_leg(self) -> Iterable[Leg]:
        """Every leg of the call (the callees an outgoing call rings)."""
        return iter(self._legs)

    def peer_silent_by_choice(self) -> bool:
        """True when the peer muted everything it sends (its silence is no link loss)."""
        return self._controls.peer_silent_by_choice()

    async def set_status(self, status: CallStatus) -> None:
        """Move to ``status`` and tell the listeners (nothing after a terminal status)."""
        await self._events.set_status(status)

    async def emit(self, name: str, *args: Any) -> Any:
        """Call listener method ``name`` on every listener; the first listener's result."""
        return await self._events.emit(name, *args)

    async def send_to_peer(self, message_type: str, body: dict[str, Any]) -> None:
        """Send to the active leg (nothing when there is none); a failure is logged."""
        leg = self.active_leg()
        if leg is not None:
            await self.send_or_log(leg.address, message_type, body)

    async def send_or_log(self, address: str, message_type: str, body: dict[str, Any]) -> None:
        """Send a message of this call; a failure is logged (timers handle a lost message)."""
        try:
            await self._endpoint.send(address, message_type, self.call_id, body)
        except SignalingError as err:
            _log.error("%s: could not send %s to %s: %s", self._name, message_type, address, err)

    async def new_offer(self, label: str) -> tuple[MediaSession, str]:
        """A fresh session with its offer ready (the link supervisor rebuilds with it)."""
        return await self._endpoint.prepared_offer(self.props, label=label)

    def new_answering_session(self, label: str) -> MediaSession:
        """A fresh session that answers an offer (the link supervisor rebuilds with it)."""
        return self._endpoint.new_session(self.props, video=self._video, label=label)

    def replace_session(self, leg: Leg, session: MediaSession) -> MediaSession:
        """Make ``session`` the leg's, open for media both ways; the old one (to close)."""
        old, leg.session = leg.session, session
        self._watch(leg.address, session)
        session.set_playback(True)
        self._controls.open_gates(session)
        return old

    def _watch(self, address: str, session: MediaSession) -> None:
        """Follow a session's link state and the video it receives."""

        def state_changed(state: str) -> None:
            self._endpoint.spawn(self._link_changed(address, state))

        def frame(frame: VideoFrame) -> None:
            if self._legs.shows(address):
                self.last_remote_frame = frame
                self.remote_frame.set()
                for watcher in list(self._video_watchers):
                    try:
                        watcher(frame)
                    except Exception:  # noqa: BLE001 - a faulty watcher must not stop video
                        _log.exception("%s: a remote video watcher failed", self._name)
            size = (frame.width, frame.height)
            if size != self._remote_video_size:
                self._remote_video_size = size
                self._endpoint.spawn(self.emit("on_video", size[0], size[1], True))

        session.on_state = state_changed
        session.on_video_frame = frame

    async def _link_changed(self, address: str, state: str) -> None:
        leg = self._legs.get(address)
        if leg is not None and not self.is_ended():
            await self._link.link_state(leg, state)
