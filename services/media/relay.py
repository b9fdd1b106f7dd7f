"""Why a TURN allocation failed, told instead of swallowed.

aioice asks the TURN server for a relayed candidate while gathering and, when that fails,
drops the candidate without a word: a call whose only path is the relay then hangs in
"checking" until ICE gives up, and nobody learns that the credentials were refused. aioice
looks the module function ``aioice.ice.relayed_candidate`` up at call time; we wrap it once
with one that records each failure, described for a person (server, and "credentials
refused" / "credentials expired" / "no answer"), in the list of the gathering that asked
(a context variable, as services/media/ice.py does for host addresses). The failure is
re-raised unchanged, so aioice behaves as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import aioice.ice
from aioice import stun
from aiortc import RTCPeerConnection

from services.media.errors import MediaError
from services.media.turn import credential_expiry

_failures: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "callbox_relay_failures", default=None
)

RelayedCandidate = Callable[..., Coroutine[Any, Any, Any]]


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


@contextlib.contextmanager
def relay_failures() -> Iterator[list[str]]:
    """Collect, in the yielded list, why each TURN allocation started in this block failed."""
    _install_wrapper()
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
