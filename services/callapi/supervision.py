"""Link supervision: connected, silent media, outages ridden out, a peer that is gone.

aiortc has no ICE restart and notices a dead peer only when ICE consent expires (~30 s).
A call therefore watches its media itself. Media silent for ``MEDIA_SILENCE_S`` after the
answer, while the peer has not muted it, shows RECONNECTING. The old path is kept: after an
outage with the same addresses its ICE and DTLS state are still valid and media resumes on
it at once. Meanwhile a fresh path is tried inside the same signed call (make before break):
the caller re-offers (``reoffer``/``reanswer``), the callee asks it to (``restart``), every
``RESTART_RETRY_S`` and as soon as the peer is back online; the fresh session replaces the
old one only once it connected (a peer whose address changed). The call ends with
NETWORKERROR after ``CallProperties.reconnect_grace_s``.

The peer's last will (the broker says its connection died) is evidence only together with
the media: a host that loses its network cannot close its broker connection, so its will
comes a keepalive (~7.5 s) after its media stopped, and the call rides it out. A will that
comes while the peer's media was live, followed by silence (what the receive buffers still
held plays out first), means the peer's host closed the connection: its process is gone,
and the call ends within a second. A will followed by
more media (an attacker's, or a broker hiccup) changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
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
RESTART_RETRY_S = 2.0
"""While reconnecting, a fresh media path is tried this often."""
PROCESS_GONE_WINDOW_S = 1.0
"""A last will this soon after the peer's last media: its host closed the connection."""
GONE_CONFIRM_S = 0.6
"""After such a will, how long to watch for more media before calling the peer gone."""
GONE_SILENCE_S = 0.3
"""...and how long its media must then have been silent: more than the receive buffers hold
(the audio playout's target delay is at most 200 ms), far less than a live peer's 20 ms."""
HANGUP_SEND_S = 1.0
"""How long the side that gives up waits to tell the peer before it ends anyway."""
DTLS_MISMATCH = (
    "the DTLS handshake failed after ICE connected: the peer's certificate does not match the"
    " DTLS fingerprint of its signed SDP"
)
"""Why a call ends with SECURITYERROR when its DTLS handshake fails (logged)."""


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
        """The peer's media failed verification: end the call (SECURITYERROR), naming why."""
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


@dataclass
class _Candidate:
    """A fresh media path being negotiated while the old one is kept."""

    session: MediaSession
    generation: int


class LinkSupervisor:
    """Watches a call's link, rides out outages, rebuilds the path, ends it past the grace."""

    def __init__(
        self, call: SupervisedCall, log_name: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._call = call
        self._log_name = log_name
        self._clock = clock
        self._reconnecting_since: float | None = None
        self._watching_since = clock()
        self._last_attempt = float("-inf")
        self._generation = 0
        self._candidate: _Candidate | None = None
        self._offering = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def reconnecting(self) -> bool:
        """True while the call shows RECONNECTING."""
        return self._reconnecting_since is not None

    async def link_state(self, leg: Leg, state: str) -> None:
        """The leg's current media link changed state."""
        call = self._call
        # CONNECTED only once ANSWER was reported: answer() and on_accept() set answered_at
        # before they await (stop tones, send accept), and the link may come up meanwhile.
        answer_reported = call.status >= CallStatus.ANSWER
        if state == "connected" and answer_reported and leg is call.active_leg():
            await self._back(leg)
            await call.set_status(CallStatus.CONNECTED)
        elif state == "failed" and not call.is_answered() and not call.is_incoming():
            # ICE worked but DTLS failed: the peer's certificate does not match the
            # fingerprint of its signed SDP (or the handshake was tampered with)
            if leg.session.failed_after_connectivity():
                await call.security_failure(leg.address, DTLS_MISMATCH)
            else:
                await call.leg_failed(leg.address, CallStatus.NETWORKERROR)

    async def watch(self) -> None:
        """Check the answered call's link every ``WATCHDOG_PERIOD_S`` until the call ends."""
        self._watching_since = self._clock()
        while not self._call.is_ended():
            await asyncio.sleep(WATCHDOG_PERIOD_S)  # periodic link check
            leg = self._call.active_leg()
            if leg is None:
                return
            await self._check(leg)

    async def close(self) -> None:
        """The call ended: stop trying and close a fresh path still being negotiated."""
        # the call may end from one of these tasks (a listener reacting to CONNECTED)
        others = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._drop_candidate()

    async def _check(self, leg: Leg) -> None:
        """Show RECONNECTING on silence, retry a fresh path, end past the grace."""
        call = self._call
        now = self._clock()
        lost = self._link_lost(leg.session, now)
        if self._reconnecting_since is None:
            if lost:
                _log.warning("%s: media from %s lost, reconnecting", self._log_name, leg.address)
                self._reconnecting_since = now
                await call.set_status(CallStatus.RECONNECTING)
                self._attempt(leg)
        elif not lost:
            _log.info("%s: media from %s back on the same path", self._log_name, leg.address)
            await self._back(leg)
            await call.set_status(CallStatus.CONNECTED)
        elif now - self._reconnecting_since > call.props.reconnect_grace_s:
            _log.warning(
                "%s: no media from %s for the %.0f s grace, ending",
                self._log_name,
                leg.address,
                call.props.reconnect_grace_s,
            )
            try:
                async with asyncio.timeout(HANGUP_SEND_S):
                    await call.send_to_peer("hangup", {"reason": "network"})
            except TimeoutError:
                _log.info("%s: the hangup could not be sent in time", self._log_name)
            await call.end(CallStatus.NETWORKERROR, HangupReason.ERROR)
        elif now - self._last_attempt >= RESTART_RETRY_S:
            self._attempt(leg)

    def _link_lost(self, session: MediaSession, now: float) -> bool:
        if session.state in ("failed", "closed"):
            return True
        if self._call.peer_silent_by_choice():
            return False
        last = session.stats.last_media_at
        if last is None and not session.expects_remote_media():
            return False
        since = max(last or 0.0, self._watching_since)
        return now - since > MEDIA_SILENCE_S

    async def _back(self, leg: Leg) -> None:
        """The link works again: forget the outage and any fresh path not needed any more."""
        self._reconnecting_since = None
        self._watching_since = self._clock()
        if self._candidate is not None and not self._call.is_incoming():
            # the caller decides; the callee's answering side dies with the caller's offer
            await self._drop_candidate()

    # the peer's presence ------------------------------------------------------------------

    async def peer_offline(self, leg: Leg) -> None:
        """The broker published the peer's last will during the answered call."""
        call = self._call
        will_at = self._clock()
        last = leg.session.stats.last_media_at
        if last is None or will_at - last > PROCESS_GONE_WINDOW_S:
            _log.warning(
                "%s: %s lost its broker connection after its media stopped: a network"
                " outage, riding it out for the %.0f s grace",
                self._log_name,
                leg.address,
                call.props.reconnect_grace_s,
            )
            if self._reconnecting_since is None:
                self._reconnecting_since = will_at
                await call.set_status(CallStatus.RECONNECTING)
            return
        await asyncio.sleep(GONE_CONFIRM_S)  # does the peer's media go on after its will?
        last = leg.session.stats.last_media_at
        if last is not None and self._clock() - last < GONE_SILENCE_S:
            _log.warning(
                "%s: the broker says %s is offline but its media goes on: keeping the call",
                self._log_name,
                leg.address,
            )
            return
        if call.is_ended() or leg is not call.active_leg():
            return
        _log.warning(
            "%s: %s closed its broker connection while its media was live and sent nothing"
            " since: its process is gone",
            self._log_name,
            leg.address,
        )
        await call.end(CallStatus.NETWORKERROR, HangupReason.ERROR)

    def peer_online(self, leg: Leg) -> None:
        """The peer's presence is back: if the call is reconnecting, try a fresh path now."""
        if self._reconnecting_since is not None and not self._call.is_ended():
            self._attempt(leg)

    # fresh paths --------------------------------------------------------------------------

    def _attempt(self, leg: Leg) -> None:
        """Try a fresh path: the caller re-offers, the callee asks the caller to."""
        self._last_attempt = self._clock()
        if self._call.is_incoming():
            self._spawn(self._call.send_to_peer("restart", {"generation": leg.generation}))
        elif not self._offering:
            self._spawn(self._reoffer(leg))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"link-{self._log_name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_restart(self, leg: Leg, body: dict[str, Any]) -> None:
        """The callee lost our media and asks for a fresh path (caller side)."""
        call = self._call
        if call.is_incoming() or not call.is_answered() or self._offering:
            return
        if self._reconnecting_since is not None:
            return  # we lost its media too and try fresh paths already
        if self._clock() - self._last_attempt < RESTART_RETRY_S:
            return  # a fresh path is being negotiated for an earlier request
        _log.info("%s: %s asks for a fresh media path", self._log_name, leg.address)
        self._attempt(leg)

    async def _reoffer(self, leg: Leg) -> None:
        call = self._call
        self._offering = True
        try:
            self._generation = max(self._generation, leg.generation) + 1
            generation = self._generation
            label = f"{call.call_id}>{leg.address}#{generation}"
            try:
                session, sdp = await call.new_offer(label)
            except MediaError as err:
                _log.error("%s: no fresh offer for %s: %s", self._log_name, leg.address, err)
                return
            if not await self._take_candidate(leg, session, generation):
                return
        finally:
            self._offering = False
        await call.send_to_peer("reoffer", {"sdp": sdp, "generation": generation})

    async def _take_candidate(self, leg: Leg, session: MediaSession, generation: int) -> bool:
        """Make ``session`` the fresh path being tried; False (closed) if the call ended."""
        if self._call.is_ended():  # ended while the session was made: it is nobody's
            await session.close()
            return False
        await self._drop_candidate()
        self._adopt(leg, _Candidate(session, generation))
        return True

    def _adopt(self, leg: Leg, candidate: _Candidate) -> None:
        """Follow ``candidate``'s link: it replaces the leg's session once it connected."""
        self._candidate = candidate

        def state_changed(state: str) -> None:
            self._spawn(self._candidate_state(leg, candidate, state))

        candidate.session.on_state = state_changed

    async def _candidate_state(self, leg: Leg, candidate: _Candidate, state: str) -> None:
        call = self._call
        if candidate is not self._candidate or call.is_ended():
            return
        if state == "connected":
            self._candidate = None
            leg.generation = candidate.generation
            old = call.replace_session(leg, candidate.session)
            _log.info(
                "%s: fresh media path #%d to %s connected",
                self._log_name,
                candidate.generation,
                leg.address,
            )
            await self._back(leg)
            await call.set_status(CallStatus.CONNECTED)
            await old.close()
        elif state in ("failed", "closed"):
            await self._drop_candidate()

    async def _drop_candidate(self) -> None:
        candidate, self._candidate = self._candidate, None
        if candidate is not None:
            await candidate.session.close()

    async def on_reoffer(self, leg: Leg, body: dict[str, Any]) -> None:
        """The caller offers a fresh path: answer it, keep the old path until it connects."""
        call = self._call
        if not call.is_incoming() or not call.is_answered():
            return
        generation = body.get("generation")
        newest = max(leg.generation, self._candidate.generation if self._candidate else 0)
        if not isinstance(generation, int) or generation <= newest:
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
        if await self._take_candidate(leg, session, generation):
            await call.send_to_peer("reanswer", {"sdp": sdp, "generation": generation})

    async def on_reanswer(self, leg: Leg, body: dict[str, Any]) -> None:
        """The callee answered our fresh offer (caller side)."""
        candidate = self._candidate
        if self._call.is_incoming() or candidate is None:
            return
        if body.get("generation") != candidate.generation:
            return
        try:
            await candidate.session.apply_answer(str(body.get("sdp", "")))
        except SecurityError as err:
            await self._call.security_failure(leg.address, f"reanswer: {err}")
        except (MediaError, ValueError) as err:
            _log.error("%s: bad reanswer from %s: %s", self._log_name, leg.address, err)
