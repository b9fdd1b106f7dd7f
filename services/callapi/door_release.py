"""Door release inside a call: the challenge scheme of docs/protocol.md ("Door release").

A door station issues a fresh ``unlock_challenge`` per call (in its invite, or in its
answer when it is called). The other side opens the door with ``await call.unlock()``,
which sends ``unlock`` carrying that challenge. The door checks the challenge and who
sends it here, then hands the request to the app's unlock handler (the intercom service:
rate limit, relay pulse, audit log) and answers ``unlock_result`` with the outcome and
the next challenge, so a resident can press door-release again in the same call while a
recorded ``unlock`` never opens the door twice.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from services.callapi.legs import Leg
from services.callapi.status import CallError

_log = logging.getLogger(__name__)


class UnlockRefused(CallError):
    """The door refuses a release request; the message is the reason the requester sees."""


@dataclass(frozen=True)
class UnlockRequest:
    """A checked door release request: in which call, from whom."""

    call_id: str
    requester: str


UnlockHandler = Callable[[UnlockRequest], Awaitable[None]]
"""Opens the door for a checked request; raises UnlockRefused to refuse."""


class UnlockPolicy:
    """An endpoint's part in door release: does it drive a door, who may open it, and how."""

    def __init__(self, *, drives_door: bool, has_unlock_right: Callable[[str], bool]) -> None:
        self.drives_door = drives_door
        self.has_unlock_right = has_unlock_right
        self.handler: UnlockHandler | None = None

    def new_challenge(self) -> str | None:
        """A fresh challenge when this endpoint drives a door, else None."""
        return secrets.token_urlsafe(16) if self.drives_door else None


class ReleasingCall(Protocol):
    """What door release needs of its call."""

    call_id: str

    def is_answered(self) -> bool:
        """True once the call was answered."""
        ...

    def is_ended(self) -> bool:
        """True once the call is over."""
        ...

    def active_leg(self) -> Leg | None:
        """The leg talked to."""
        ...

    async def send_to_peer(self, message_type: str, body: dict[str, Any]) -> None:
        """Send to the active leg; a failure is logged."""
        ...

    async def send_or_log(self, address: str, message_type: str, body: dict[str, Any]) -> None:
        """Send to ``address``; a failure is logged."""
        ...

    async def emit(self, name: str, *args: Any) -> Any:
        """Tell the call's listeners."""
        ...


class DoorRelease:
    """The ``unlock`` / ``unlock_result`` exchange of one call."""

    def __init__(self, call: ReleasingCall, policy: UnlockPolicy, log_name: str) -> None:
        self._call = call
        self._policy = policy
        self._log_name = log_name
        self.challenge: str | None = None
        self._waiters: list[asyncio.Future[bool]] = []

    def issue(self, offered: object = None) -> None:
        """A fresh challenge for this call: ours when we drive a door, else the one offered."""
        self.challenge = self._policy.new_challenge() or (
            offered if isinstance(offered, str) else None
        )

    def learn(self, offered: object) -> None:
        """The door we called sends its challenge in its answer ("monitor")."""
        if isinstance(offered, str) and offered and self.challenge is None:
            self.challenge = offered

    def challenge_to_send(self) -> str | None:
        """The challenge our answer carries: only a door issues one."""
        return self.challenge if self._policy.drives_door else None

    async def unlock(self, timeout: float) -> bool:
        """Ask the door at the other end of this call to open; True when it opened."""
        call = self._call
        challenge = self.challenge
        if challenge is None:
            raise CallError(f"call {call.call_id} is not with a door station: nothing to open")
        if call.active_leg() is None or call.is_ended():
            raise CallError(f"call {call.call_id} is not in progress: cannot open the door")
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await call.send_to_peer("unlock", {"challenge": challenge})
            opened = await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise CallError(f"the door did not answer the release request in {timeout} s") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return opened

    def _refusal(self, leg: Leg, body: dict[str, Any]) -> str | None:
        """Why ``leg``'s request may not open the door, or None when it may."""
        if not self._policy.drives_door:
            return "this endpoint has no door"
        challenge = body.get("challenge")
        expected = self.challenge
        if (
            not isinstance(challenge, str)
            or expected is None
            or not hmac.compare_digest(challenge.encode(), expected.encode())
        ):
            return "stale or wrong challenge"
        answered_peer = self._call.is_answered() and leg is self._call.active_leg()
        if not (answered_peer or self._policy.has_unlock_right(leg.address)):
            return "not the answering party and no unlock right"
        return None

    async def on_unlock(self, leg: Leg, body: dict[str, Any]) -> None:
        """The peer asks this door to open: check, open through the handler, answer."""
        reason = self._refusal(leg, body)
        if reason is None:
            self.challenge = self._policy.new_challenge()  # used up: never twice
            reason = await self._open(leg.address)
        if reason is None:
            _log.info("%s: door opened for %s", self._log_name, leg.address)
        else:
            _log.warning(
                "%s: door release from %s refused: %s", self._log_name, leg.address, reason
            )
        result: dict[str, Any] = {"opened": reason is None, "reason": reason or ""}
        if self.challenge is not None:
            result["challenge"] = self.challenge
        await self._call.send_or_log(leg.address, "unlock_result", result)

    async def _open(self, requester: str) -> str | None:
        handler = self._policy.handler
        try:
            if handler is None:
                raise UnlockRefused("no door relay on this door station")
            await handler(UnlockRequest(self._call.call_id, requester))
        except UnlockRefused as err:
            return str(err) or "refused"
        return None

    async def on_unlock_result(self, leg: Leg, body: dict[str, Any]) -> None:
        """The door answered our request: wake ``unlock()`` and tell the listeners."""
        opened = body.get("opened") is True
        reason = body.get("reason")
        challenge = body.get("challenge")
        if isinstance(challenge, str) and challenge:
            self.challenge = challenge
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(opened)
        await self._call.emit("on_door_release", opened, reason if isinstance(reason, str) else "")
