"""Why a TURN allocation failed, told instead of swallowed; a gone relay never holds a close.

aioice asks the TURN server for a relayed candidate while gathering and, when that fails,
drops the candidate without a word: a call whose only path is the relay then hangs in
"checking" until ICE gives up, and nobody learns that the credentials were refused. aioice
looks the module function ``aioice.ice.relayed_candidate`` up at call time; we wrap it once
with one that records each failure, described for a person (server, and "credentials
refused" / "credentials expired" / "no answer"), in the list of the gathering that asked
(a context variable, as services/media/ice.py does for host addresses). The failure is
re-raised unchanged, so aioice behaves as before.

Closing a session deletes its allocation, and aioice waits for the relay's answer through all
its retransmissions (about a minute when the relay is gone), so a hangup, a reload or a
shutdown would wait that long. ``TurnClientMixin.delete`` is bounded to
``DELETE_TIMEOUT_S``: the server frees an allocation nobody refreshes by itself (RFC 8656).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import aioice.ice
import aioice.turn
from aioice import stun
from aiortc import RTCPeerConnection

from services.media.errors import MediaError
from services.media.turn import credential_expiry

_failures: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "callbox_relay_failures", default=None
)

RelayedCandidate = Callable[..., Coroutine[Any, Any, Any]]
DELETE_TIMEOUT_S = 2.0
"""How long closing a session waits for the relay to confirm an allocation's release."""
_log = logging.getLogger(__name__)


def describe_relay_failure(
    server: tuple[str, int], username: str | None, err: BaseException, now: float
) -> str:
    """One sentence naming the TURN server and why it gave no relayed candidate."""
    where = f"TURN server {server[0]}:{server[1]}"
    if isinstance(err, stun.TransactionFailed):
        code, reason = err.response.attributes.get("ERROR-CODE", (0, "no error code"))
        if code in (401, 437, 438, 441):
            expiry = credential_expiry(username)
            if expiry is not None and expiry <= now:
                return (
                    f"{where} refused the credentials: they expired "
                    f"{int(now - expiry)} s ago ({code} {reason})"
                )
            return f"{where} refused the credentials ({code} {reason}): credentials refused"
        return f"{where} refused the allocation ({code} {reason})"
    if isinstance(err, stun.TransactionTimeout | asyncio.CancelledError | TimeoutError):
        return f"{where} did not answer (no relayed candidate)"
    return f"{where} could not be used: {type(err).__name__}: {err}"


def _install_wrapper() -> None:
    current: RelayedCandidate = aioice.ice.relayed_candidate
    if getattr(current, "__callbox_wrapper__", False):
        return

    async def relayed_candidate(*args: Any, **kwargs: Any) -> Any:
        try:
            return await current(*args, **kwargs)
        except BaseException as err:
            sink = _failures.get()
            if sink is not None:
                server = kwargs.get("turn_server", ("?", 0))
                username = kwargs.get("turn_username")
                sink.append(describe_relay_failure(server, username, err, time.time()))
            raise

    relayed_candidate.__callbox_wrapper__ = True  # type: ignore[attr-defined]
    aioice.ice.relayed_candidate = relayed_candidate


def _bound_delete() -> None:
    mixin = aioice.turn.TurnClientMixin
    current = mixin.delete
    if getattr(current, "__callbox_wrapper__", False):
        return

    async def delete(self: aioice.turn.TurnClientMixin) -> None:
        try:
            await asyncio.wait_for(current(self), DELETE_TIMEOUT_S)
        except TimeoutError:  # the inner delete closed its transport when cancelled
            _log.info(
                "TURN server %s did not confirm the release of %s within %.0f s: "
                "it expires by itself",
                getattr(self, "server", "?"),
                getattr(self, "relayed_address", "?"),
                DELETE_TIMEOUT_S,
            )

    delete.__callbox_wrapper__ = True  # type: ignore[attr-defined]
    mixin.delete = delete  # type: ignore[method-assign]


@contextlib.contextmanager
def relay_failures() -> Iterator[list[str]]:
    """Collect, in the yielded list, why each TURN allocation started in this block failed.

    Also bounds the wait for a gone relay when the allocations are deleted (``DELETE_TIMEOUT_S``).
    """
    _install_wrapper()
    _bound_delete()
    found: list[str] = []
    token = _failures.set(found)
    try:
        yield found
    finally:
        _failures.reset(token)


def selected_pair_types(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """The (local, remote) candidate types of ``pc``'s nominated pair, or None before one.

    aiortc reports no candidate-pair statistics; the nominated pair lives in aioice's
    ``Connection._nominated`` (component 1 carries everything under BUNDLE). MediaError
    when aiortc or aioice moved it (tests/media/test_turn_relay.py notices).
    """
    types: set[tuple[str, str]] = set()
    for transceiver in pc.getTransceivers():
        ice = transceiver.receiver.transport.transport
        connection = getattr(ice, "_connection", None)
        nominated = getattr(connection, "_nominated", None)
        if connection is None or not isinstance(nominated, dict):
            raise MediaError("aiortc/aioice moved the nominated ICE pair (Connection._nominated)")
        pair = nominated.get(1)
        if pair is not None:
            types.add((pair.local_candidate.type, pair.remote_candidate.type))
    return next(iter(types)) if types else None
