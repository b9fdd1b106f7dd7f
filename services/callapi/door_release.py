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
from collections.abc import Awaitable, Callable
from typing import Any

from services.callapi.callstate import CallState, Leg
from services.callapi.status import CallError
from services.signaling.contacts import Right

_log = logging.getLogger(__name__)


class UnlockRefused(CallError):
    """The door refuses a release request; the message is the reason the requester sees."""


UnlockHandler = Callable[[CallState, str], Awaitable[None]]
"""Opens the door for a checked request (call, requester); raises UnlockRefused to refuse."""


class DoorRelease(CallState):
    """The ``unlock`` / ``unlock_result`` exchange of one call."""

    async def unlock(self, timeout: float = 5.0) -> bool:
        """Ask the door at the other end of this call to open; True when it opened.

        Raises CallError when the peer is not a door (no challenge), the call is over, or
        the door does not answer within ``timeout`` seconds. The outcome also reaches
        ``InProgressListener.on_door_release``.
        """
        challenge = self.unlock_challenge
        if challenge is None:
            raise CallError(f"call {self.call_id} is not with a door station: nothing to open")
        leg = self._active_leg()
        if leg is None or self.is_ended():
            raise CallError(f"call {self.call_id} is not in progress: cannot open the door")
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._unlock_waiters.append(waiter)
        try:
            await self._send_to_peer("unlock", {"challenge": challenge})
            opened = await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise CallError(f"the door did not answer the release request in {timeout} s") from None
        finally:
            if waiter in self._unlock_waiters:
                self._unlock_waiters.remove(waiter)
        return opened

    def _unlock_refusal(self, leg: Leg, body: dict[str, Any]) -> str | None:
        """Why ``leg``'s request may not open the door, or None when it may."""
        if not self._calls.issues_unlock_challenges:
            return "this endpoint has no door"
        challenge = body.get("challenge")
        expected = self.unlock_challenge
        if (
            not isinstance(challenge, str)
            or expected is None
            or not hmac.compare_digest(challenge.encode(), expected.encode())
        ):
            return "stale or wrong challenge"
        contact = self._calls.signaling.contacts.get(leg.address)
        has_right = contact is not None and Right.UNLOCK in contact.rights
        answered_peer = self.is_answered() and leg is self._active_leg()
        if not (answered_peer or has_right):
            return "not the answering party and no unlock right"
        return None

    async def _on_unlock(self, leg: Leg, body: dict[str, Any]) -> None:
        reason = self._unlock_refusal(leg, body)
        if reason is None:
            self.unlock_challenge = self._calls.new_unlock_challenge()  # used up: never twice
            handler = self._calls.unlock_handler
            try:
                if handler is None:
                    raise UnlockRefused("no door relay on this door station")
                await handler(self, leg.address)
            except UnlockRefused as err:
                reason = str(err) or "refused"
        if reason is None:
            _log.info("%s: door opened for %s", self._calls.address, leg.address)
        else:
            _log.warning(
                "%s: door release from %s refused: %s", self._calls.address, leg.address, reason
            )
        body_out: dict[str, Any] = {"opened": reason is None, "reason": reason or ""}
        if self.unlock_challenge is not None:
            body_out["challenge"] = self.unlock_challenge
        await self._calls.send_or_log(leg.address, "unlock_result", self.call_id, body_out)

    async def _on_unlock_result(self, leg: Leg, body: dict[str, Any]) -> None:
        opened = body.get("opened") is True
        reason = body.get("reason")
        reason_text = reason if isinstance(reason, str) else ""
        challenge = body.get("challenge")
        if isinstance(challenge, str) and challenge:
            self.unlock_challenge = challenge
        for waiter in self._unlock_waiters:
            if not waiter.done():
                waiter.set_result(opened)
        await self._emit("on_door_release", opened, reason_text)
