"""Link supervision: connected, failed, silent media, reconnection, a vanished peer.

aiortc has no ICE restart and notices a dead peer only when ICE consent expires (~30 s).
A call therefore watches its media itself: media silent for ``MEDIA_SILENCE_S`` while the
peer is not muted shows RECONNECTING, the caller builds a fresh signed session inside
the same call (``reoffer`` / ``reanswer``), and the call ends with NETWORKERROR after the
grace period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from services.callapi.legs import Leg
from services.callapi.properties import CallProperties
from services.callapi.status import CallStatus, HangupReason
from services.media.errors import MediaError, SecurityError
from services.media.session import MediaSession

_log = logging.getLogger(__name__)

MEDIA_SILENCE_S = 1.0
"""Media silent this long, while the peer has not muted it, means the link is lost."""
WATCHDOG_PERIOD_S = 0.2
"""How often an answered call checks its link."""


class SupervisedCall(Protocol):
    """What link supervision needs of its call."""

    call_id: str
    props: CallProperties

    @property
    def status(self) -> CallStatus:
        """The current status."""
        ...

    def is_incoming(self) -> bool:
        """True for a call this endpoint received."""
        ...

    def is_answered(self) -> bool:
        """True once the call was answered."""
        ...

    def is_ended(self) -> bool:
        """True once the call is over."""
        ...

    def active_leg(self) -> Leg | None:
        """The leg talked to."""
        ...

    def peer_silent_by_choice(self) -> bool:
        """True when the peer muted everything it sends."""
        ...

    async def set_status(self, status: CallStatus) -> None:
        """Move to ``status`` and tell the listeners."""
        ...

    async def end(self, status: CallStatus, reason: HangupReason) -> None:
        """Reach a terminal status and release everything."""
        ...

    async def leg_failed(self, address: str, outcome: CallStatus) -> None:
        """A leg failed with ``outcome``: end the call or drop the leg."""
        ...

    async def security_failure(self, address: str, detail: str) -> None:
        """The peer failed verification: end the call."""
        ...

    async def send_to_peer(self, message_type: str, body: dict[str, Any]) -> None:
        """Send to the active leg; a failure is logged."""
        ...

    async def new_offer(self, label: str) -> tuple[MediaSession, str]:
        """A fresh session with its offer, on this endpoint's devices."""
        ...

    def new_answering_session(self, label: str) -> MediaSession:
        """A fresh session that will answer an offer."""
        ...

    def replace_session(self, leg: Leg, session: MediaSession) -> MediaSession:
        """Make ``session`` the leg's, opened for media; returns the old one (to close)."""
        ...


class LinkSupervisor:
    """Watches a call's link and rebuilds or ends it when the link fails."""

    def __init__(self, call: SupervisedCall, log_name: str) -> None:
        self._call = call
        self._log_name = log_name
        self._reconnecting_since: float | None = None
        self._generation = 0

    async def link_state(self, leg: Leg, state: str) -> None:
        """A leg's media link changed state."""
        call = self._call
        # CONNECTED only once ANSWER was reported: answer() and on_accept() set answered_at
        # before they await (stop tones, send accept), and the link may come up meanwhile.
        answer_reported = call.status >= CallStatus.ANSWER
        if state == "connected" and answer_reported and leg is call.active_leg():
            self._reconnecting_since = None
            await call.set_status(CallStatus.CONNECTED)
        elif state == "failed" and not call.is_answered() and not call.is_incoming():
            # ICE worked but DTLS failed: the peer's certificate does not match the
            # fingerprint of its signed SDP (or the handshake was tampered with)
            security = leg.session.failed_after_connectivity()
            await call.leg_failed(
                leg.address, CallStatus.SECURITYERROR if security else CallStatus.NETWORKERROR
            )

    async def watch(self) -> None:
        """Check the answered call's link every ``WATCHDOG_PERIOD_S`` until the call ends."""
        while not self._call.is_ended():
            await asyncio.sleep(WATCHDOG_PERIOD_S)  # periodic link check
            leg = self._call.active_leg()
            if leg is None:
                return
            await self._check(leg)

    async def _check(self, leg: Leg) -> None:
        """On silence or failure show RECONNECTING and rebuild; give up after the grace."""
        call = self._call
        if self._reconnecting_since is not None:
            waited = time.monotonic() - self._reconnecting_since
            if waited > call.props.reconnect_grace_s:
                await call.send_to_peer("hangup", {"reason": "network"})
                await call.end(CallStatus.NETWORKERROR, HangupReason.ERROR)
        elif self._link_lost(leg.session):
            self._reconnecting_since = time.monotonic()
            await call.set_status(CallStatus.RECONNECTING)
            if not call.is_incoming():
                await self._reoffer(leg)

    def _link_lost(self, session: MediaSession) -> bool:
        if session.state == "failed":
            return True
        if self._call.peer_silent_by_choice():
            return False
        last = session.stats.last_media_at
        return last is not None and time.monotonic() - last > MEDIA_SILENCE_S

    async def _reoffer(self, leg: Leg) -> None:
        call = self._call
        self._generation += 1
        session, sdp = await call.new_offer(f"{call.call_id}>{leg.address}#{self._generation}")
        if call.is_ended():  # ended while the offer was made: the session is nobody's
            await session.close()
            return
        leg.generation = self._generation
        await call.replace_session(leg, session).close()
        await call.send_to_peer("reoffer", {"sdp": sdp, "generation": self._generation})

    async def on_reoffer(self, leg: Leg, body: dict[str, Any]) -> None:
        """The caller rebuilt the media path: answer its new offer (callee side)."""
        call = self._call
        if not call.is_incoming() or not call.is_answered():
            return
        generation = body.get("generation")
        if not isinstance(generation, int) or generation <= leg.generation:
            _log.warning("%s: stale reoffer %r ignored", self._log_name, generation)
            return
        session = call.new_answering_session(f"{call.call_id}#{generation}")
        try:
            sdp = await session.accept_offer(str(body.get("sdp", "")))
        except SecurityError as err:
            await session.close()
            await call.security_failure(leg.address, f"reoffer: {err}")
            return
        except (MediaError, ValueError) as err:
            _log.error("%s: bad reoffer from %s: %s", self._log_name, leg.address, err)
            await session.close()
            return
        if call.is_ended():  # ended while the answer was made: the session is nobody's
            await session.close()
            return
        leg.generation = generation
        old = call.replace_session(leg, session)
        if self._reconnecting_since is None:
            self._reconnecting_since = time.monotonic()
            await call.set_status(CallStatus.RECONNECTING)
        await old.close()
        await call.send_to_peer("reanswer", {"sdp": sdp, "generation": generation})

    async def on_reanswer(self, leg: Leg, body: dict[str, Any]) -> None:
        """The callee answered our new offer (caller side)."""
        if self._call.is_incoming() or body.get("generation") != leg.generation:
            return
        try:
            await leg.session.apply_answer(str(body.get("sdp", "")))
        except SecurityError as err:
            await self._call.security_failure(leg.address, f"reanswer: {err}")
        except (MediaError, ValueError) as err:
            _log.error("%s: bad reanswer from %s: %s", self._log_name, leg.address, err)
