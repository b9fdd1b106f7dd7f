"""An in-memory broker for tests: the site's mosquitto without a process or a socket.

``MemoryBroker().transport(address)`` gives each endpoint a :class:`MemoryTransport`, a
real :class:`~services.signaling.base.SignalingTransport` whose messages go through the
broker object instead of MQTT (as aiortc's tests pair real peers in memory). It keeps
the semantics callbox relies on from the real broker:

- an endpoint receives only its own inbox, and the presence and profile of the addresses it
  watches (every profile with ``all_profiles``); newly watched ones come from the retained
  store at once;
- presence and profile are retained: a new connection is handed the current ones (its
  own included), an empty payload clears one;
- a connection that dies (:meth:`MemoryBroker.cut`) has its last will published, its
  presence goes offline; the transport reconnects (``on_connecting`` first, then presence
  and profile announced anew) at once or when the test says (:meth:`MemoryBroker.restore`);
- a publish while disconnected waits for the connection, with the same timeout and error
  as the MQTT transport; a payload over the broker's ``max_packet_size`` is refused;
- delivery is asynchronous (``loop.call_soon``, in publish order, never from inside a
  publish) and bounded: at most ``MAX_PENDING_INBOUND`` messages wait per connection, as
  the MQTT transport's client queue; messages of a connection that died are lost with it.

It is for tests about the call state machine; tests about the broker itself (ACL,
passwords, TLS, restarts) keep the real mosquitto.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hal.closing import CloseOnce
from services.signaling.base import MAX_PENDING_INBOUND, Inbound, presence_payload, wait_connected
from services.signaling.errors import SignalingError
from services.signaling.topics import valid_name

_log = logging.getLogger(__name__)

MAX_PACKET_SIZE = 524288  # as the generated broker (BrokerSettings.max_packet_size)
"""What the generated mosquitto configuration lets through (BrokerSettings' default)."""


class MemoryBroker:
    """One site's broker in memory: retained presence and profile, and who is connected."""

    def __init__(self, max_packet_size: int = MAX_PACKET_SIZE) -> None:
        self.max_packet_size = max_packet_size
        self.retained: dict[tuple[str, str], bytes] = {}
        """The retained messages by (kind, address), kind "presence" or "profile"."""
        self._clients: dict[str, MemoryTransport] = {}
        self._online: dict[str, MemoryTransport] = {}

    def transport(self, address: str) -> MemoryTransport:
        """A new, not yet started transport logging in as ``address``."""
        address = valid_name("address", address)
        if address in self._clients and not self._clients[address].is_closed:
            raise SignalingError(f"{address} already has a transport on this broker")
        client = MemoryTransport(self, address)
        self._clients[address] = client
        return client

    def is_connected(self, address: str) -> bool:
        """True while ``address`` has a live connection."""
        return address in self._online

    # what a test does to the broker --------------------------------------------------------

    def cut(self, address: str, *, reconnect: bool = True) -> None:
        """``address``'s connection dies: its last will (offline) goes out.

        It reconnects at once, or only on :meth:`restore` when ``reconnect`` is False.
        """
        client = self._online.get(address)
        if client is None:
            raise SignalingError(f"{address} is not connected")
        client.lost(reconnect=reconnect)

    def restore(self, address: str) -> None:
        """Let ``address``'s transport, cut with ``reconnect=False``, connect again."""
        client = self._clients.get(address)
        if client is None or client.is_closed or address in self._online:
            raise SignalingError(f"{address} has no cut connection to restore")
        client.reconnect()

    def publish(self, kind: str, address: str, payload: bytes) -> None:
        """What a bare client publishing on ``address``'s ``kind`` topic causes.

        An inbox message, or a retained presence or profile (an empty payload clears it).
        """
        if kind == "inbox":
            self.publish_inbox(address, payload)
        elif kind in ("presence", "profile", "directory"):
            self.publish_retained(kind, address, payload)
        else:
            raise SignalingError(f"no topic kind {kind!r}")

    # what the transports do -----------------------------------------------------------------

    def connect(self, client: MemoryTransport) -> None:
        """Subscribe ``client``, then publish its profile and online presence.

        Retained messages are handed to the client as it subscribes, as the MQTT transport's
        announcement does.
        """
        if client.address in self._online:
            raise SignalingError(f"{client.address} is already connected")
        self._online[client.address] = client
        self.hand_retained(client, lambda kind, address: True)
        self.publish_retained("profile", client.address, json.dumps(client.profile).encode())
        self.publish_retained("presence", client.address, presence_payload(True))

    def hand_retained(self, client: MemoryTransport, which: Callable[[str, str], bool]) -> None:
        """Deliver to ``client`` the retained messages it wants for which ``which`` is true."""
        for (kind, address), payload in list(self.retained.items()):
            if which(kind, address) and client.wants(kind, address):
                client.deliver(Inbound(kind, address, payload, time.monotonic()))

    def disconnect(self, client: MemoryTransport, *, will: bool) -> None:
        """Drop ``client``'s connection; ``will``: publish its last will (offline)."""
        if self._online.get(client.address) is client:
            del self._online[client.address]
        if will:
            self.publish_retained("presence", client.address, presence_payload(False))

    def publish_retained(self, kind: str, address: str, payload: bytes) -> None:
        """Retain (or, when empty, clear) ``payload`` and hand it to every connection."""
        self._check_size(payload)
        if payload:
            self.retained[(kind, address)] = payload
        else:
            self.retained.pop((kind, address), None)
        for client in list(self._online.values()):
            if client.wants(kind, address):
                client.deliver(Inbound(kind, address, payload, time.monotonic()))

    def publish_inbox(self, recipient: str, payload: bytes) -> None:
        """Hand ``payload`` to ``recipient``'s inbox; lost when it is not connected.

        No persistent sessions, as with the MQTT transport's clean start.
        """
        self._check_size(payload)
        client = self._online.get(recipient)
        if client is not None:
            client.deliver(Inbound("inbox", recipient, payload, time.monotonic()))

    def _check_size(self, payload: bytes) -> None:
        if len(payload) > self.max_packet_size:
            raise SignalingError(
                f"{len(payload)} bytes are over the broker's max_packet_size {self.max_packet_size}"
            )


class MemoryTransport:
    """One endpoint's connection to a :class:`MemoryBroker` (a SignalingTransport)."""

    def __init__(self, broker: MemoryBroker, address: str) -> None:
        self.broker = broker
        self.address = address
        self.profile: Mapping[str, Any] = {}
        self.connected = asyncio.Event()
        self.connections = 0
        self.dropped = 0
        """Messages dropped because MAX_PENDING_INBOUND were waiting already."""
        self.on_message: Callable[[Inbound], None] | None = None
        self.admit: Callable[[Inbound], bool] | None = None
        """Asked about each inbox message before it is queued, as the MQTT transport does."""
        self.on_connecting: Callable[[], None] | None = None
        self._pending = 0
        self._close = CloseOnce()
        self.watched: frozenset[str] | None = None
        """None until :meth:`watch` is called: every presence and profile, as a bare client."""
        self.all_profiles = False

    def watch(self, addresses: Iterable[str], *, all_profiles: bool = False) -> None:
        """Receive the presence and profile of ``addresses`` only (every profile if asked)."""
        before = (self.watched, self.all_profiles)
        self.watched = frozenset(addresses)
        self.all_profiles = all_profiles
        if self.connected.is_set():
            old, old_all = before
            self.broker.hand_retained(
                self,
                lambda kind, a: (
                    old is not None and a not in old and not (kind == "profile" and old_all)
                ),
            )

    def wants(self, kind: str, address: str) -> bool:
        """True when this connection subscribes to ``address``'s ``kind`` topic."""
        if self.watched is None:
            return True
        return address in self.watched or (kind == "profile" and self.all_profiles)

    @property
    def is_closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._close.started

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and return once subscribed and announced (raises SignalingError)."""
        if self.on_message is None:
            raise SignalingError(f"{self.address}: started with nobody to hand messages to")
        if self._close.started:
            raise SignalingError(f"{self.address}: the connection was closed")
        if not self.connected.is_set():
            self._connect()
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
        except TimeoutError as err:
            raise SignalingError(f"{self.address}: no connection within {timeout} s") from err

    def _connect(self) -> None:
        if self.on_connecting is not None:
            self.on_connecting()
        self.connections += 1  # what is delivered from now on belongs to this connection
        try:
            self.broker.connect(self)
        except SignalingError:
            self.connections -= 1
            raise
        self.connected.set()

    def lost(self, *, reconnect: bool) -> None:
        """The connection died (the broker publishes the will); reconnect soon if asked."""
        self.connected.clear()
        self.broker.disconnect(self, will=True)
        if reconnect:
            asyncio.get_running_loop().call_soon(self.reconnect)

    def reconnect(self) -> None:
        """Connect again after a loss, unless closed meanwhile."""
        if self._close.started or self.connected.is_set():
            return
        try:
            self._connect()
        except SignalingError as err:
            _log.error("%s: reconnection refused: %s", self.address, err)

    def deliver(self, inbound: Inbound) -> None:
        """Queue ``inbound`` for :attr:`on_message` on the next loop turn (bounded).

        A message :attr:`admit` refuses is dropped here, before it is queued.
        """
        if self.admit is not None and not self.admit(inbound):
            return
        if self._pending >= MAX_PENDING_INBOUND:
            self.dropped += 1
            _log.warning("%s: %d messages waiting, one dropped", self.address, self._pending)
            return
        self._pending += 1
        asyncio.get_running_loop().call_soon(self._hand_over, self.connections, inbound)

    def _hand_over(self, connection: int, inbound: Inbound) -> None:
        self._pending -= 1
        if connection != self.connections or not self.connected.is_set():
            _log.debug("%s: %s lost with its connection", self.address, inbound.kind)
            return
        assert self.on_message is not None
        self.on_message(inbound)

    async def publish_inbox(self, recipient: str, payload: bytes, timeout: float = 5.0) -> None:
        """Publish an envelope into ``recipient``'s inbox, waiting for a connection if needed."""
        await wait_connected(self.connected, self.address, timeout)
        self.broker.publish_inbox(recipient, payload)

    async def close(self) -> None:
        """Say offline (retained) and disconnect for good.

        Idempotent, and a second call waits for the first.
        """
        if not await self._close.begin():
            return
        try:
            if self.connected.is_set():
                self.broker.publish_retained("presence", self.address, presence_payload(False))
                self.broker.disconnect(self, will=False)
            self.connected.clear()
        finally:
            self._close.finish()
