"""Link supervision: connected, failed, silent media, reconnection, a vanished or forged peer.

aiortc has no ICE restart and notices a dead peer only when ICE consent expires (~30 s).
A call therefore watches its media itself: a peer whose presence goes offline (its last
will) ends the call at once; media silent for ``MEDIA_SILENCE_S`` while the peer is not
muted shows RECONNECTING, the caller builds a fresh signed session inside the same call,
and the call ends with NETWORKERROR after the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from services.callapi.callstate import (
    FAILURE_REASONS,
    MEDIA_SILENCE_S,
    WATCHDOG_PERIOD_S,
    CallState,
    Leg,
)
from services.callapi.status import (
    CallStatus,
    HangupReason,
)
from services.media.errors import MediaError, SecurityError
from services.media.session import MediaSession

_log = logging.getLogger(__name__)


class LinkSupervision(CallState):
    """Watches a call's links and rebuilds or ends it when they fail."""

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
        if self.is_ended():  # ended while the offer was made: the session is nobody's
            await session.close()
            return
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
        if self.is_ended():  # ended while the answer was made: the session is nobody's
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
