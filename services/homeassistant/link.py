"""The unit's MQTT connection to Home Assistant's broker, kept up with backoff.

It keeps a mirror of every retained message the unit wants on HA's broker (discovery
configs, states, the snapshot): the latest payload per topic, bounded by the number of
entities. A change marks its topic to send; every (re)connection, and every ``online`` on
HA's status topic (HA restarted), sends them all again. Events (a doorbell ring) are not
retained: they go out once, from a bounded queue, and are lost while the broker is away.
Birth ``online`` and last will ``offline`` (both retained) on the availability topic; a clean
close says ``offline`` itself. Commands HA publishes go to ``on_command``; retained ones
(anyone could have left one) are ignored.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Final

import aiomqtt

from hal.closing import CloseOnce
from services.homeassistant.discovery import OFFLINE, ONLINE, HaTopics
from services.homeassistant.errors import HomeAssistantError
from services.homeassistant.settings import HaSettings
from services.tasks import cancel_and_wait

_log = logging.getLogger(__name__)

RECONNECT_MIN_S: Final = 1.0
RECONNECT_MAX_S: Final = 60.0
MAX_EVENTS: Final = 16
"""Events waiting while the broker is slow; the oldest is dropped past that."""
MAX_INCOMING: Final = 32
"""Messages from HA's broker waiting to be handled; aiomqtt drops (and logs) past that."""


def tls_context(settings: HaSettings) -> ssl.SSLContext | None:
    """The client context for HA's broker: its CA file alone, else the system's trust store.

    Blocking (reads files): call it in a thread. HomeAssistantError naming an unusable CA file.
    """
    if not settings.tls:
        return None
    try:
        context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None
        )
    except (OSError, ssl.SSLError) as err:
        raise HomeAssistantError(f"HA broker CA file {settings.ca_file}: {err}") from err
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class HaLink:
    """Publishes the unit's retained state and events on HA's broker; hands commands on."""

    def __init__(
        self,
        settings: HaSettings,
        topics: HaTopics,
        *,
        commands: tuple[str, ...],
        on_command: Callable[[str, bytes], None],
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.commands = commands
        self.on_command = on_command
        self.connected = asyncio.Event()
        self.connections = 0
        self.ha_online = 0
        """How often HA's status topic said online (each time everything is sent again)."""
        self._retained: dict[str, bytes] = {}
        self._dirty: dict[str, None] = {}  # an ordered set: discovery before states
        self._events: deque[tuple[str, bytes]] = deque(maxlen=MAX_EVENTS)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._close = CloseOnce()
        self._client: aiomqtt.Client | None = None

    # what the unit publishes -------------------------------------------------------------------

    def set_retained(self, topic: str, payload: bytes) -> None:
        """Keep ``payload`` as ``topic``'s retained message; sent when it differs (or anew)."""
        if self._retained.get(topic) == payload and topic in self._retained:
            return
        self._retained[topic] = payload
        self._dirty[topic] = None
        self._wake.set()

    def retained(self, topic: str) -> bytes | None:
        """The payload kept for ``topic`` (None: none)."""
        return self._retained.get(topic)

    def send_event(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` once on ``topic`` (not retained); dropped when not connected."""
        if not self.connected.is_set():
            _log.info("HA broker not connected: event on %s not sent", topic)
            return
        self._events.append((topic, payload))
        self._wake.set()

    # lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect in the background (HA's broker being away never holds the unit up)."""
        if self._task is None and not self._close.started:
            self._task = asyncio.create_task(self._run(), name=f"ha-{self.topics.node_id}")

    async def close(self) -> None:
        """Say ``offline``, disconnect; idempotent, a second call waits for the first."""
        if not await self._close.begin():
            return
        try:
            client = self._client
            if client is not None and self.connected.is_set():
                try:
                    await asyncio.wait_for(
                        client.publish(self.topics.availability, OFFLINE, qos=1, retain=True), 2.0
                    )
                except (aiomqtt.MqttError, TimeoutError) as err:
                    _log.info("HA broker: could not say offline: %s", err)
            if self._task is not None:
                await cancel_and_wait([self._task])
        finally:
            self.connected.clear()
            self._close.finish()

    def _client_for(self, context: ssl.SSLContext | None) -> aiomqtt.Client:
        settings = self.settings
        return aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username or None,
            password=settings.password or None,
            identifier=f"callbox-{self.topics.node_id}",
            will=aiomqtt.Will(self.topics.availability, OFFLINE, qos=1, retain=True),
            keepalive=settings.keepalive_s,
            timeout=10,
            tls_context=context,
            max_queued_incoming_messages=MAX_INCOMING,
        )

    async def _run(self) -> None:
        try:
            context = await asyncio.to_thread(tls_context, self.settings)
        except HomeAssistantError as err:
            _log.error("Home Assistant link not started: %s", err)
            return
        backoff = RECONNECT_MIN_S
        where = f"{self.settings.host}:{self.settings.port}"
        while not self._close.started:
            try:
                async with self._client_for(context) as client:
                    self._client = client
                    await self._announce(client)
                    backoff = RECONNECT_MIN_S
                    _log.info("HA broker %s: connected as %s", where, self.topics.node_id)
                    await self._serve(client)
            except aiomqtt.MqttError as err:
                if not self._close.started:
                    _log.warning("HA broker %s: connection lost or refused: %s", where, err)
            finally:
                self._client = None
                self.connected.clear()
            if not self._close.started:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)

    async def _announce(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self.topics.ha_status, qos=1)
        for topic in self.commands:
            await client.subscribe(topic, qos=1)
        await client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        self._resend_all()
        self.connections += 1
        self.connected.set()

    def _resend_all(self) -> None:
        self._dirty = dict.fromkeys(self._retained)
        self._wake.set()

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Send and receive until either side fails (its MqttError ends the connection)."""
        node = self.topics.node_id
        tasks = {
            asyncio.create_task(self._receive(client), name=f"ha-receive-{node}"),
            asyncio.create_task(self._send(client), name=f"ha-send-{node}"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            await cancel_and_wait(tasks)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                self._received(message)
            except Exception:  # noqa: BLE001 - one bad message must not cut the link
                _log.exception("HA broker: handling %s failed", message.topic)

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                topic = next(iter(self._dirty))
                del self._dirty[topic]
                await client.publish(topic, self._retained[topic], qos=1, retain=True)
            while self._events:
                topic, payload = self._events.popleft()
                await client.publish(topic, payload, qos=1, retain=False)

    def _received(self, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        payload = message.payload if isinstance(message.payload, bytes) else b""
        if topic == self.topics.ha_status:
            if payload.strip() == ONLINE.encode():
                self.ha_online += 1
                _log.info("Home Assistant is online: discovery sent again")
                self._resend_all()
            return
        if message.retain:
            _log.warning("HA broker: retained command on %s ignored (clear it)", topic)
            return
        if topic in self.commands:
            self.on_command(topic, payload)
