"""Door release inside a call: the challenge scheme of docs/protocol.md ("Door release").

A door station issues a fresh ``unlock_challenge`` per leg: every invite of a ring group
carries its own (and the door's answer, when it is called). The other side opens the door
with ``await call.unlock()``, which sends ``unlock`` carrying its leg's challenge. The door
checks the challenge of that leg and who sends it, then hands the request to the app's
unlock handler (the intercom service: rate limit, relay pulse, audit log) and answers
``unlock_result`` with the outcome and the leg's next challenge, so a resident can press
door-release again in the same call while a recorded ``unlock`` never opens the door twice.

A leg's messages touch only its own challenge: a ring-group member cannot spend or replace
the answering resident's. ``unlock_result`` is taken only from the leg talked to, never by
a door; the door messages of other legs are dropped, counted and reported (``Call.drop``).
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


DOOR_OTHER_LEG = "door_other_leg"
"""Why a door message was dropped: it came from a leg other than the one door release is with."""


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

    async def drop(self, sender: str, message_type: str, reason: str, detail: str) -> None:
        """Drop a message of the call without acting on it: log, count, tell the listeners."""
        ...


class DoorRelease:
    """The ``unlock`` / ``unlock_result`` exchange of one call."""

    def __init__(self, call: ReleasingCall, policy: UnlockPolicy, log_name: str) -> None:
        self._call = call
        self._policy = policy
        self._log_name = log_name
        self._challenges: dict[str, str] = {}
        self._waiters: list[asyncio.Future[bool]] = []

    @property
    def challenge(self) -> str | None:
        """The challenge of the leg talked to (None when there is none, or no door)."""
        leg = self._call.active_leg()
        return self._challenges.get(leg.address) if leg is not None else None

    @challenge.setter
    def challenge(self, challenge: str | None) -> None:
        leg = self._call.active_leg()
        if leg is None:
            return
        if challenge is None:
            self._challenges.pop(leg.address, None)
        else:
            self._challenges[leg.address] = challenge

    def challenge_of(self, address: str) -> str | None:
        """The current challenge of the leg with ``address``."""
        return self._challenges.get(address)

    def issue(self, address: str, offered: object = None) -> str | None:
        """The challenge of a new leg: a fresh one when we drive a door, else the one offered."""
        challenge = self._policy.new_challenge() or (
            offered if isinstance(offered, str) and offered else None
        )
        if challenge is not None:
            self._challenges[address] = challenge
        return challenge

    def learn(self, address: str, offered: object) -> None:
        """The door we called sends its challenge in its answer ("monitor")."""
        if isinstance(offered, str) and offered and address not in self._challenges:
            self._challenges[address] = offered

    def challenge_to_send(self, address: str) -> str | None:
        """The challenge our answer to ``address`` carries: only a door issues one."""
        return self._challenges.get(address) if self._policy.drives_door else None

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
        expected = self._challenges.get(leg.address)
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
            fresh = self._policy.new_challenge()  # used up: never twice
            assert fresh is not None  # a door always makes one
            self._challenges[leg.address] = fresh
            reason = await self._open(leg.address)
        if reason is None:
            _log.info("%s: door opened for %s", self._log_name, leg.address)
        else:
            _log.warning(
                "%s: door release from %s refused: %s", self._log_name, leg.address, reason
            )
        result: dict[str, Any] = {"opened": reason is None, "reason": reason or ""}
        challenge = self._challenges.get(leg.address)
        if challenge is not None:
            result["challenge"] = challenge
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
        """The door answered our request: wake ``unlock()`` and tell the listeners.

        Only the leg talked to answers our requests, and a door asks nothing: any other
        ``unlock_result`` is dropped and leaves every challenge as it is.
        """
        if self._policy.drives_door or leg is not self._call.active_leg():
            who = "a door takes no unlock_result" if self._policy.drives_door else "not the peer"
            await self._call.drop(
                leg.address, "unlock_result", DOOR_OTHER_LEG, f"{who}; the challenge is kept"
            )
            return
        opened = body.get("opened") is True
        reason = body.get("reason")
        challenge = body.get("challenge")
        if isinstance(challenge, str) and challenge:
            self._challenges[leg.address] = challenge
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(opened)
        await self._call.emit("on_door_release", opened, reason if isinstance(reason, str) else "")
