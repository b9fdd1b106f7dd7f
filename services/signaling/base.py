"""The seam between a signaling endpoint and the thing that carries its messages.

:class:`SignalingTransport` is all a :class:`~services.signaling.endpoint.SignalingEndpoint`
needs from a broker connection: start and close it, publish into a recipient's inbox, know
whether it is connected, and be handed every inbox, presence and profile message. The MQTT
connection (:mod:`services.signaling.transport`) implements it; the tests' in-memory broker
(``tests/memory_broker.py``) implements it too, so the call state machine runs without
mosquitto (as aiortc's ``BaseSignaling`` lets its examples swap TCP for a file or a pipe).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from services.signaling.errors import SignalingError

MAX_PENDING_INBOUND = 1000
"""At most this many received messages wait for the endpoint per connection; more are
dropped (mosquitto's own per-client queue, ``max_queued_messages``, defaults to 1000)."""

MAX_PENDING_INBOUND_BYTES = 2 * 1024 * 1024
"""And at most this many payload bytes (a flood of 128 KB messages would otherwise hold
128 MB in a queue of MAX_PENDING_INBOUND): each queue in front of the endpoint (the MQTT
client's, the endpoint's inbox) is bounded by both."""


@dataclass(frozen=True)
class Inbound:
    """A message received from the broker: which topic kind, whose, and the payload."""

    kind: str  # "inbox", "presence", "profile" or "directory" (address "")
    address: str
    payload: bytes
    received_at: float
    retained: bool = False
    """Delivered from the broker's retained store (on subscribing), not as it was published."""


def presence_payload(online: bool) -> bytes:
    """The retained presence message (also the last will when ``online`` is False)."""
    return json.dumps({"state": "online" if online else "offline"}).encode()


async def wait_connected(connected: asyncio.Event, address: str, timeout: float) -> None:
    """Wait up to ``timeout`` s for a transport to be connected (SignalingError if it is not).

    A message sent during a short broker outage goes out once the connection is back.
    """
    if connected.is_set():
        return
    try:
        await asyncio.wait_for(connected.wait(), timeout)
    except TimeoutError as err:
        raise SignalingError(f"{address}: not connected to the broker") from err


class SignalingTransport(Protocol):
    """One endpoint's connection to the site's message broker, kept up until closed.

    Broker semantics every implementation keeps: the endpoint receives only its own inbox,
    the presence and profile of the addresses it watches (:meth:`watch`) and the site
    directory; presence, profile and directory are retained (a new connection is handed the
    current ones); the endpoint's
    presence says online while it is connected and offline after :meth:`close` or, as the
    broker's last will, after its connection dies; a lost connection is re-established,
    calling :attr:`on_connecting` first and announcing presence and :attr:`profile` again.
    Messages are handed to :attr:`on_message` one at a time, never from inside a publish.
    """

    profile: Mapping[str, Any]
    """The retained profile announced on every connection (set before :meth:`start`)."""

    on_message: Callable[[Inbound], None] | None
    """Called with every admitted inbox, presence and profile message."""

    admit: Callable[[Inbound], bool] | None
    """Asked about each message as soon as it arrives, before it is buffered.

    False drops it (the endpoint counted why): a flood is refused before it takes memory or
    a place in a queue. None admits everything.
    """

    dropped: int
    """Messages dropped because the transport's own queue was full (count or bytes)."""

    on_connecting: Callable[[], None] | None
    """Called on every (re)connection before subscribing: retained state comes anew."""

    @property
    def address(self) -> str:
        """The endpoint address this connection logs in as."""
        ...

    @property
    def connected(self) -> asyncio.Event:
        """Set while connected, subscribed and announced; cleared while reconnecting."""
        ...

    @property
    def connections(self) -> int:
        """How many times this transport has connected (1 + reconnections)."""
        ...

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and return once subscribed and announced (raises SignalingError)."""
        ...

    def watch(self, addresses: Iterable[str], *, all_profiles: bool = False) -> None:
        """Receive the presence and profile of ``addresses`` only, from now on.

        What is newly watched is delivered from the retained store, as on connecting.
        ``all_profiles``: every profile of the site instead (first-use pinning).
        """
        ...

    async def publish_inbox(self, recipient: str, payload: bytes, timeout: float = 5.0) -> None:
        """Publish ``payload`` into ``recipient``'s inbox.

        Waits up to ``timeout`` s for a connection (raises SignalingError).
        """
        ...

    async def close(self) -> None:
        """Say offline, disconnect and stop reconnecting.

        Idempotent, and a second call made while a close is under way waits for it.
        """
        ...
