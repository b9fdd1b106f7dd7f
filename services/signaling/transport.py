"""One endpoint's MQTT 5 connection to the site broker, kept up across broker restarts.

It subscribes to the endpoint's inbox and to the presence and profile of each address the
endpoint watches (:meth:`MqttTransport.watch`: its contacts and ring-group targets, one
topic each, so what a connection receives does not grow with the site), publishes its
own presence (retained, with a last will that says offline) and profile
(retained), and hands every message to the callbacks it was given. TCP_NODELAY is set
on the socket: signaling messages are small and latency-bound. It is the production
:class:`~services.signaling.base.SignalingTransport`; :func:`mqtt_transport` builds one.

aiomqtt's incoming queue is bounded in messages and bytes (:class:`IncomingQueue`, given
to aiomqtt as its ``queue_type``): each message is put to the endpoint's ``admit``
as it arrives, and what is refused or does not fit is dropped and counted, never queued.
A retained message found on the endpoint's own inbox (anyone in the site may have left
one) is handed on marked ``retained`` and cleared from the broker.

A lost connection is retried after a random delay (:class:`~services.signaling.backoff.Backoff`,
full jitter): a broker restart does not bring a whole building back in the same instant.
The connection waits patiently for the broker's acknowledgements while announcing
(:data:`ANNOUNCE_TIMEOUT_S`, a keepalive of :data:`KEEPALIVE_S`): a broker busy delivering
to many clients at once is slow, not gone, and giving up would only start the flood again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from hal.closing import CloseOnce
from services.signaling.backoff import Backoff
from services.signaling.base import (
    MAX_PENDING_INBOUND,
    MAX_PENDING_INBOUND_BYTES,
    Inbound,
    presence_payload,
    wait_connected,
)
from services.signaling.errors import SignalingError
from services.signaling.limits import QuietLog
from services.signaling.tlsclient import PinnedCa, pinned_ca, tls_refusal
from services.signaling.topics import SiteTopics, valid_name
from services.tasks import cancel_and_wait

_log = logging.getLogger(__name__)

KEEPALIVE_S = 15
"""MQTT keepalive: the broker declares a silent endpoint dead (its last will: offline) after
1.5 times this; the endpoint gives up on a broker whose ping answer takes longer."""
CONNECT_TIMEOUT_S = 5.0
"""How long a connection waits for the broker's CONNACK. aiomqtt waits this long too for a
connection the broker's front closed before answering (one of too many at once): short."""
ANNOUNCE_TIMEOUT_S = 30.0
"""How long subscribing and announcing may wait for the broker's answers: a broker handing
many units their retained messages at once answers late, but answers."""
PUBLISH_TIMEOUT_S = 5.0
"""How long a message of a call may wait for the broker's acknowledgement."""
SUBSCRIBE_CHUNK = 64
"""Topics per SUBSCRIBE or UNSUBSCRIBE packet (a door station of a building watches hundreds)."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where the site broker is and how this endpoint logs in."""

    host: str
    port: int
    username: str
    password: str
    ca_file: Path | None = None
    """The pinned site CA: TLS verified against it alone. None: plain MQTT (loopback only)."""
    keepalive_s: int = KEEPALIVE_S
    source: str | None = None
    """The local address to connect from (None: the system's choice)."""


class IncomingQueue(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's incoming queue, bounded in messages and payload bytes, with admission.

    ``put_nowait`` (aiomqtt calls it for every message it reads) first asks ``admit``;
    what it refuses, and what would exceed ``maxsize`` messages or ``max_bytes`` bytes, is
    dropped and counted by ``dropped`` without raising (aiomqtt would log every one).
    """

    def __init__(
        self,
        maxsize: int,
        *,
        max_bytes: int,
        admit: Callable[[aiomqtt.Message], bool],
        dropped: Callable[[IncomingQueue, aiomqtt.Message], None],
    ) -> None:
        super().__init__(maxsize)
        self.max_bytes = max_bytes
        self.bytes = 0
        self._admit = admit
        self._dropped = dropped

    def put_nowait(self, item: aiomqtt.Message) -> None:
        """Queue ``item`` if it is admitted and fits; drop it (counted) otherwise."""
        if not self._admit(item):
            return
        size = _size(item)
        if self.full() or self.bytes + size > self.max_bytes:
            self._dropped(self, item)
            return
        super().put_nowait(item)
        self.bytes += size

    def get_nowait(self) -> aiomqtt.Message:
        """The oldest message (``get`` comes here too)."""
        item = super().get_nowait()
        self.bytes -= _size(item)
        return item


def _size(message: aiomqtt.Message) -> int:
    payload = message.payload
    return len(payload) if isinstance(payload, bytes | bytearray) else 0


def mqtt_transport(*, site: str, address: str, broker: BrokerAddress) -> MqttTransport:
    """The MQTT connection of endpoint ``address`` of ``site``, logging in to ``broker``."""
    return MqttTransport(broker, SiteTopics(site), valid_name("address", address))


class MqttTransport:
    """Keeps the endpoint connected; calls ``on_message`` for each message it receives."""

    def __init__(self, broker: BrokerAddress, topics: SiteTopics, address: str) -> None:
        self.broker = broker
        self.topics = topics
        self.address = address
        self.profile: Mapping[str, Any] = {}
        """The retained profile announced on every connection (the endpoint sets it)."""
        self.connected = asyncio.Event()
        self.connections = 0
        self.on_message: Callable[[Inbound], None] | None = None
        """Called with every admitted inbox, presence and profile message."""
        self.admit: Callable[[Inbound], bool] | None = None
        """Asked about each message as it arrives, before it is queued (see base)."""
        self.on_connecting: Callable[[], None] | None = None
        """Called on every (re)connection before subscribing: retained state comes anew."""
        self.dropped = 0
        """Messages dropped because aiomqtt's incoming queue was full (messages or bytes)."""
        self.max_queued_bytes = MAX_PENDING_INBOUND_BYTES
        self._quiet_log = QuietLog(_log)
        self._client: aiomqtt.Client | None = None
        self._clearing: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._close = CloseOnce()
        self._tls: PinnedCa | None = None
        self._refused: SignalingError | None = None  # a TLS refusal: start() raises it
        self._refusal = asyncio.Event()
        self.backoff = Backoff()
        """The delays between reconnection attempts (full jitter)."""
        self._watched: frozenset[str] | None = None  # None: the whole site, until watch()
        self._all_profiles = False
        self._subscribed: set[str] = set()  # presence and profile topics of this connection
        self._syncing = asyncio.Lock()
        self._syncs: set[asyncio.Task[None]] = set()

    @property
    def watched(self) -> frozenset[str] | None:
        """The addresses whose presence and profile this connection follows (None: all)."""
        return self._watched

    def watch(self, addresses: Iterable[str], *, all_profiles: bool = False) -> None:
        """Follow the presence and profile of ``addresses`` only (and every profile if asked).

        Takes effect at once on a live connection (subscribing to what is new, unsubscribing
        from what is gone) and on every reconnection. ``all_profiles`` subscribes to every
        profile of the site instead of the watched ones: first-use pinning needs the keys of
        senders it has never heard of.
        """
        self._watched = frozenset(valid_name("watched address", a) for a in addresses)
        self._all_profiles = all_profiles
        client = self._client
        if client is not None and self.connected.is_set():
            task = asyncio.get_running_loop().create_task(self._sync_quietly(client))
            self._syncs.add(task)
            task.add_done_callback(self._syncs.discard)

    def _wanted(self) -> set[str]:
        topics = self.topics
        if self._watched is None:  # a bare connection, no endpoint to say what it needs
            return {topics.all_presence(), topics.all_profiles()}
        wanted = {topics.presence(a) for a in self._watched}
        if self._all_profiles:
            wanted.add(topics.all_profiles())
        else:
            wanted.update(topics.profile(a) for a in self._watched)
        return wanted

    async def _sync(self, client: aiomqtt.Client) -> None:
        """Subscribe to the watched topics not yet subscribed, unsubscribe from the others."""
        async with self._syncing:
            wanted = self._wanted()
            new = sorted(wanted - self._subscribed)
            gone = sorted(self._subscribed - wanted)
            for chunk in _chunks(new):
                await client.subscribe(
                    [(topic, SubscribeOptions(qos=1)) for topic in chunk],
                    timeout=ANNOUNCE_TIMEOUT_S,
                )
                self._subscribed.update(chunk)
            for chunk in _chunks(gone):
                await client.unsubscribe(chunk, timeout=ANNOUNCE_TIMEOUT_S)
                self._subscribed.difference_update(chunk)

    async def _sync_quietly(self, client: aiomqtt.Client) -> None:
        try:
            await self._sync(client)
        except aiomqtt.MqttError as err:  # the next connection subscribes to all of it
            _log.warning("%s: could not update its subscriptions: %s", self.address, err)

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and return once subscribed and announced (raises SignalingError)."""
        if self.on_message is None:
            raise SignalingError(f"{self.address}: started with nobody to hand messages to")
        if self._close.started:
            raise SignalingError(f"{self.address}: the connection was closed")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mqtt-{self.address}")
        try:
            await asyncio.wait_for(_first((self.connected, self._refusal)), timeout)
        except TimeoutError as err:
            raise SignalingError(
                f"{self.address}: no connection to the broker at "
                f"{self.broker.host}:{self.broker.port} within {timeout} s"
            ) from err
        if not self.connected.is_set() and self._refused is not None:
            raise self._refused

    def _refuse(self, reason: str) -> None:
        """A TLS refusal (wrong CA, wrong certificate): logged once, and start() raises it."""
        error = SignalingError(f"{self.address}: {reason}")
        if self._refused is None or str(self._refused) != str(error):
            _log.error("%s", error)
        self._refused = error
        self._refusal.set()

    def _client_for(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=self.broker.username,
            password=self.broker.password,
            identifier=self.address,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(
                self.topics.presence(self.address), presence_payload(False), qos=1, retain=True
            ),
            keepalive=self.broker.keepalive_s,
            timeout=CONNECT_TIMEOUT_S,
            bind_address=self.broker.source or "",
            tls_context=self._tls.context if self._tls is not None else None,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            queue_type=self._queue_type(),
            max_queued_incoming_messages=self.incoming_queue_size(),
        )

    def incoming_queue_size(self) -> int:
        """Messages the incoming queue holds: room for every watched retained message at once.

        A door station that rings every flat of a building is handed a presence and a profile
        per flat as it subscribes; the queue stays bounded by what it watches.
        """
        watched = len(self._watched) if self._watched is not None else 0
        return max(MAX_PENDING_INBOUND, 2 * watched + MAX_PENDING_INBOUND // 10)

    def _queue_type(self) -> type[asyncio.Queue[aiomqtt.Message]]:
        """The class aiomqtt builds its incoming queue from: an IncomingQueue of this transport."""
        transport = self

        class Queue(IncomingQueue):
            def __init__(self, maxsize: int = 0) -> None:
                super().__init__(
                    maxsize,
                    max_bytes=transport.max_queued_bytes,
                    admit=transport._admit,
                    dropped=transport._queue_full,
                )

        return Queue

    def _admit(self, message: aiomqtt.Message) -> bool:
        inbound = self._inbound(message)
        if inbound is None:
            return True  # logged when it is dispatched
        if inbound.kind == "inbox" and inbound.retained:
            self._clear_retained_inbox()
        try:
            return self.admit is None or self.admit(inbound)
        except Exception:  # noqa: BLE001 - a failing check must not cut the broker connection
            _log.exception("%s: checking a %s message failed; dropped", self.address, inbound.kind)
            return False

    def _queue_full(self, queue: IncomingQueue, message: aiomqtt.Message) -> None:
        self.dropped += 1
        self._quiet_log.warning(
            "queue_full",
            "%s: the incoming queue is full (%d messages, %d bytes waiting), a message on %s "
            "dropped",
            self.address,
            queue.qsize(),
            queue.bytes,
            message.topic,
        )

    async def _run(self) -> None:
        if self.broker.ca_file is not None:
            try:
                self._tls = await asyncio.to_thread(pinned_ca, self.broker.ca_file)
            except SignalingError as err:
                self._refuse(str(err))
                return
        while not self._close.started:
            try:
                async with self._client_for() as client:
                    await self._announce(client)
                    self.backoff.reset()
                    async for message in client.messages:
                        try:
                            self._dispatch(message)
                        except Exception:  # noqa: BLE001 - one bad message must not cut us off
                            _log.exception("%s: handling %s failed", self.address, message.topic)
            except aiomqtt.MqttError as err:
                refusal = tls_refusal(err, self.broker.host, self.broker.port, self._tls)
                if refusal is not None:
                    self._refuse(refusal)
                elif not self._close.started:
                    _log.warning("%s: broker connection lost or refused: %s", self.address, err)
            finally:
                self._client = None
                self.connected.clear()
            if not self._close.started:
                await asyncio.sleep(self.backoff.next_delay())  # reconnect back-off, jittered

    async def _announce(self, client: aiomqtt.Client) -> None:
        self._client = client  # (``connected`` says when it may publish for the endpoint)
        if self.on_connecting is not None:
            self.on_connecting()
        # no_local: clearing a retained message from our own inbox (an empty publish) is not
        # delivered back to us
        await client.subscribe(
            [
                (self.topics.inbox(self.address), SubscribeOptions(qos=1, noLocal=True)),
                (self.topics.directory(), SubscribeOptions(qos=1)),  # the signed site directory
            ],
            timeout=ANNOUNCE_TIMEOUT_S,
        )
        self._subscribed = set()
        await self._sync(client)
        await client.publish(
            self.topics.profile(self.address),
            json.dumps(self.profile),
            qos=1,
            retain=True,
            timeout=ANNOUNCE_TIMEOUT_S,
        )
        await client.publish(
            self.topics.presence(self.address),
            presence_payload(True),
            qos=1,
            retain=True,
            timeout=ANNOUNCE_TIMEOUT_S,
        )
        self.connections += 1
        self.connected.set()
        _log.info("%s: connected to broker %s:%s", self.address, self.broker.host, self.broker.port)

    def _inbound(self, message: aiomqtt.Message) -> Inbound | None:
        topic = str(message.topic)
        payload = message.payload
        if topic == self.topics.directory() and isinstance(payload, bytes | bytearray):
            return Inbound("directory", "", bytes(payload), time.monotonic(), bool(message.retain))
        address = self.topics.address_of(topic)
        if address is None or not isinstance(payload, bytes | bytearray):
            return None
        kind = topic.rsplit("/", 1)[1]
        return Inbound(kind, address, bytes(payload), time.monotonic(), bool(message.retain))

    def _dispatch(self, message: aiomqtt.Message) -> None:
        inbound = self._inbound(message)
        if inbound is None:
            _log.warning("%s: ignoring message on unexpected topic %s", self.address, message.topic)
            return
        if self.on_message is not None:
            self.on_message(inbound)

    def _clear_retained_inbox(self) -> None:
        """Remove the retained message from our inbox (an empty retained publish)."""
        client = self._client
        if client is None:
            return
        task = asyncio.get_running_loop().create_task(self._clear(client))
        self._clearing.add(task)
        task.add_done_callback(self._clearing.discard)

    async def _clear(self, client: aiomqtt.Client) -> None:
        try:
            await client.publish(self.topics.inbox(self.address), b"", qos=1, retain=True)
        except aiomqtt.MqttError as err:
            _log.warning("%s: could not clear a retained inbox message: %s", self.address, err)
        else:
            _log.info("%s: cleared a retained message from its inbox", self.address)

    async def publish_inbox(self, recipient: str, payload: bytes, timeout: float = 5.0) -> None:
        """Publish an envelope into ``recipient``'s inbox, waiting for a connection if needed."""
        await wait_connected(self.connected, self.address, timeout)
        client = self._client
        if client is None:
            raise SignalingError(f"{self.address}: not connected to the broker")
        try:
            await client.publish(
                self.topics.inbox(recipient), payload, qos=1, timeout=PUBLISH_TIMEOUT_S
            )
        except aiomqtt.MqttError as err:
            raise SignalingError(f"{self.address}: publish to {recipient} failed: {err}") from err

    async def close(self) -> None:
        """Say offline (retained), disconnect and stop reconnecting.

        Idempotent; a call made while a close is under way waits for that close to finish
        (as aiortc's ``RTCPeerConnection.close``), so whoever returns from it knows the
        endpoint is offline and the connection task is gone.
        """
        if not await self._close.begin():
            return
        try:
            await self._go_offline()
        finally:
            self._close.finish()

    async def _go_offline(self) -> None:
        client = self._client
        if client is not None:
            try:
                await client.publish(
                    self.topics.presence(self.address), presence_payload(False), qos=1, retain=True
                )
            except aiomqtt.MqttError as err:
                _log.warning("%s: could not publish offline presence: %s", self.address, err)
        if self._task is not None:
            await cancel_and_wait([self._task, *self._clearing, *self._syncs])


def _chunks(topics: list[str]) -> list[list[str]]:
    return [topics[i : i + SUBSCRIBE_CHUNK] for i in range(0, len(topics), SUBSCRIBE_CHUNK)]


async def _first(events: tuple[asyncio.Event, ...]) -> None:
    """Return once any of ``events`` is set."""
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(waits)
