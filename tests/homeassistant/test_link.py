"""The link to HA's broker against a real mosquitto with accounts (no HA needed).

Birth and clean offline, everything sent again when HA's status says online and after the
broker restarts, retained and bad commands ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from hass import HaBroker
from support import wait_for

from services.homeassistant.discovery import HaTopics
from services.homeassistant.link import HaLink
from services.homeassistant.settings import HaSettings

TIMEOUT = 10.0
TOPICS = HaTopics("homeassistant", "unit1")
CONFIG = TOPICS.config("sensor", "call")
COMMAND = TOPICS.command("dnd")


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[HaBroker]:
    broker = HaBroker(tmp_path / "broker")
    await broker.start()
    yield broker
    await broker.close()


class Watcher:
    """A client on HA's side of the broker that records what arrives."""

    def __init__(self, broker: HaBroker) -> None:
        self.client = aiomqtt.Client(
            "127.0.0.1",
            broker.port,
            username="homeassistant",
            password=broker.passwords["homeassistant"],
            identifier="test-ha",
        )
        self.seen: list[tuple[str, bytes, bool]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        await self.client.__aenter__()
        await self.client.subscribe("callbox/#")
        await self.client.subscribe("homeassistant/#")
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for message in self.client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            self.seen.append((str(message.topic), payload, message.retain))

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.client.__aexit__(None, None, None)

    def payloads(self, topic: str) -> list[bytes]:
        return [payload for t, payload, _ in self.seen if t == topic]


def link_for(broker: HaBroker, commands: list[tuple[str, bytes]], password: str = "") -> HaLink:
    settings = HaSettings(
        host="127.0.0.1",
        port=broker.port,
        username="callbox",
        password=password or broker.passwords["callbox"],
        node_id="unit1",
    )
    return HaLink(
        settings,
        TOPICS,
        commands=(COMMAND,),
        on_command=lambda topic, payload: commands.append((topic, payload)),
    )


async def test_birth_states_offline_and_a_resend_when_ha_comes_online(broker: HaBroker) -> None:
    commands: list[tuple[str, bytes]] = []
    link = link_for(broker, commands)
    link.set_retained(CONFIG, b'{"name":"Call"}')
    link.set_retained(TOPICS.state("call"), b"idle")
    await link.start()
    try:
        async with Watcher(broker) as ha:
            await wait_for(lambda: ha.payloads(TOPICS.availability) == [b"online"], "birth")
            await wait_for(lambda: ha.payloads(CONFIG) == [b'{"name":"Call"}'], "discovery")
            await wait_for(lambda: ha.payloads(TOPICS.state("call")) == [b"idle"], "state")

            link.set_retained(TOPICS.state("call"), b"idle")  # unchanged: not sent again
            link.set_retained(TOPICS.state("call"), b"ringing")
            await wait_for(
                lambda: ha.payloads(TOPICS.state("call")) == [b"idle", b"ringing"], "a change"
            )

            await ha.client.publish(TOPICS.ha_status, "online")  # HA (re)started
            await wait_for(lambda: len(ha.payloads(CONFIG)) == 2, "discovery sent again")
            assert link.ha_online == 1
            await ha.client.publish(TOPICS.ha_status, "offline")
            await ha.client.publish(COMMAND, "ON")
            await wait_for(lambda: commands == [(COMMAND, b"ON")], "the command")
            assert len(ha.payloads(CONFIG)) == 2, "offline sends nothing again"

            await link.close()
            await wait_for(
                lambda: ha.payloads(TOPICS.availability)[-1:] == [b"offline"], "a clean offline"
            )
    finally:
        await link.close()


class Cutter:
    """A TCP forwarder on loopback between the link and the broker, whose wires can be cut."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    def cut(self) -> None:
        """Drop every connection at once: no DISCONNECT, the broker sends the last will."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_a_lost_connection_says_offline_through_the_last_will(broker: HaBroker) -> None:
    cutter = Cutter(broker.port)
    await cutter.start()
    settings = HaSettings(
        host="127.0.0.1",
        port=cutter.port,
        username="callbox",
        password=broker.passwords["callbox"],
        node_id="unit1",
    )
    link = HaLink(settings, TOPICS, commands=(), on_command=lambda topic, payload: None)
    await link.start()
    try:
        async with Watcher(broker) as ha:
            await wait_for(lambda: ha.payloads(TOPICS.availability) == [b"online"], "birth")
            cutter.cut()
            await wait_for(
                lambda: ha.payloads(TOPICS.availability)[:2] == [b"online", b"offline"],
                "the broker to send the will",
                TIMEOUT,
            )
            await wait_for(
                lambda: ha.payloads(TOPICS.availability)[2:] == [b"online"], "back", TIMEOUT
            )
    finally:
        await link.close()
        await cutter.close()


async def test_retained_commands_are_ignored(broker: HaBroker) -> None:
    async with Watcher(broker) as ha:
        await ha.client.publish(COMMAND, "ON", retain=True)  # left there by anyone
    commands: list[tuple[str, bytes]] = []
    link = link_for(broker, commands)
    await link.start()
    try:
        await wait_for(link.connected.is_set, "the link", TIMEOUT)
        async with Watcher(broker) as ha:
            await ha.client.publish(COMMAND, "OFF")
            await wait_for(lambda: commands == [(COMMAND, b"OFF")], "the live command only")
    finally:
        await link.close()


async def test_the_link_comes_back_after_the_broker_restarts(broker: HaBroker) -> None:
    commands: list[tuple[str, bytes]] = []
    link = link_for(broker, commands)
    link.set_retained(CONFIG, b"{}")
    await link.start()
    try:
        await wait_for(link.connected.is_set, "the link", TIMEOUT)
        await broker.close()  # retained messages die with it (no persistence)
        await wait_for(lambda: not link.connected.is_set(), "the loss", TIMEOUT)
        await broker.start()
        await wait_for(lambda: link.connections == 2, "a reconnection", TIMEOUT)
        async with Watcher(broker) as ha:
            await wait_for(lambda: ha.payloads(CONFIG) == [b"{}"], "discovery on the new broker")
            await wait_for(lambda: ha.payloads(TOPICS.availability) == [b"online"], "birth")
    finally:
        await link.close()


async def test_a_refused_login_is_retried_and_logged(
    broker: HaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    link = link_for(broker, [], password="wrong")
    await link.start()
    try:
        await wait_for(lambda: "connection lost or refused" in caplog.text, "the refusal", TIMEOUT)
        assert not link.connected.is_set()
    finally:
        await link.close()


async def test_a_flood_of_commands_neither_cuts_the_link_nor_grows_without_bound(
    broker: HaBroker,
) -> None:
    commands: list[tuple[str, bytes]] = []
    link = link_for(broker, commands)
    link.set_retained(CONFIG, b'{"name":"Call"}')
    await link.start()
    try:
        async with Watcher(broker) as ha:
            await wait_for(lambda: ha.payloads(TOPICS.availability) == [b"online"], "birth")
            for _ in range(2000):  # anyone on HA's broker can publish there
                await ha.client.publish(COMMAND, "ON", qos=0)
            await ha.client.publish(TOPICS.ha_status, "online")
            # still connected and answering: HA's online after the flood is acted on
            await wait_for(lambda: len(ha.payloads(CONFIG)) == 2, "discovery sent again")
            assert link.connected.is_set() and link.connections == 1
            assert 0 < len(commands) <= 2000
    finally:
        await link.close()
