"""The broker's fronts against a real mosquitto: idle sockets cannot lock units or phones out.

Issue 15, finding 1: sockets that never sent CONNECT counted against mosquitto's connection
cap for ~96 s, so a few hundred of them, from anyone on the LAN, kept every unit and phone
off the broker and a restarted unit could not rejoin. What a user notices now: with 1,000
idle attacker sockets held open (from 127.0.0.66, reopened as soon as they are closed) units
log in, a restarted unit rejoins, messages flow, a phone logs in over WebSockets; an idle
socket is closed within the 3 s deadline; the log gets a summary, not a line per socket.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from harness.idle_attacker import ATTACKER, IdleAttacker
from signaling_harness import broker_login
from support import TIMEOUT, Certificate
from websockets.asyncio.client import connect as ws_connect

from services.signaling.admission import Drop
from services.signaling.broker import (
    MosquittoBroker,
    TlsFiles,
    start_loopback_broker,
)
from services.signaling.contacts import Contact, ContactBook
from services.signaling.endpoint import Message, SignalingEndpoint
from services.signaling.identity import Identity
from services.signaling.transport import BrokerAddress, mqtt_transport

SITE = "front"
DEADLINE_S = 3.0  # BrokerSettings.connect_timeout_s, the default shipped
SLACK_S = 1.0
LOGIN_TIMEOUT_S = 5.0
HALF_CONNECT = b"\x10\x1a\x00\x04MQTT"  # a CONNECT's first bytes, the rest never comes


async def start_broker(directory: Path, tls: TlsFiles | None = None) -> MosquittoBroker:
    return await start_loopback_broker(
        directory, site=SITE, endpoints=("door", "indoor1", "phone"), websockets=True, tls=tls
    )


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[MosquittoBroker]:
    running = await start_broker(tmp_path / "broker")
    yield running
    await running.close()


def endpoint(
    broker: MosquittoBroker, address: str, identities: dict[str, Identity]
) -> SignalingEndpoint:
    """A real signaling endpoint of ``address`` with every other identity pinned."""
    contacts = ContactBook()
    for other, identity in identities.items():
        if other != address:
            contacts.add(Contact(address=other, keys=identity.public_keys))
    settings = broker.settings
    login = BrokerAddress("127.0.0.1", settings.port, address, broker.files.passwords[address])
    return SignalingEndpoint(
        transport=mqtt_transport(site=SITE, address=address, broker=login),
        identity=identities[address],
        contacts=contacts,
    )


async def exchange(sender: SignalingEndpoint, receiver: SignalingEndpoint, call_id: str) -> None:
    """``sender`` sends ``receiver`` a signed message, which arrives."""
    arrived: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    async def on_message(message: Message) -> None:
        if not arrived.done():
            arrived.set_result(message)

    receiver.on_message = on_message
    await sender.send(receiver.address, "ringing", call_id, {})
    message = await asyncio.wait_for(arrived, TIMEOUT)
    assert (message.sender, message.call_id) == (sender.address, call_id)


async def closed_after(reader: asyncio.StreamReader) -> float:
    """Seconds until the server closes the connection (whatever it sends before)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(DEADLINE_S + 5):
            await reader.read()
    except ConnectionError:
        pass
    return time.monotonic() - started


def front_log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "services.signaling.front"]


async def test_units_log_in_rejoin_and_talk_while_1000_idle_sockets_are_held(
    broker: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="services.signaling.front")
    identities = {a: Identity.generate() for a in ("door", "indoor1")}
    door = endpoint(broker, "door", identities)
    indoor1 = endpoint(broker, "indoor1", identities)
    try:
        async with IdleAttacker(broker.settings.port) as attacker:
            await door.start(timeout=LOGIN_TIMEOUT_S)
            await indoor1.start(timeout=LOGIN_TIMEOUT_S)
            await door.wait_presence("indoor1", True, TIMEOUT)
            await exchange(door, indoor1, "call-1")
            # the unit restarts (its process ends, a new one logs in) and rejoins
            await indoor1.close()
            await door.wait_presence("indoor1", False, TIMEOUT)
            indoor1 = endpoint(broker, "indoor1", identities)
            await indoor1.start(timeout=LOGIN_TIMEOUT_S)
            await door.wait_presence("indoor1", True, TIMEOUT)
            await exchange(indoor1, door, "call-2")
            await exchange(door, indoor1, "call-3")
            # the front keeps no more of the attacker's sockets than its per-source cap
            pending_at_the_end = broker.fronts[0].admission.pending
        front = broker.fronts[0]
    finally:
        await door.close()
        await indoor1.close()
    assert attacker.opened >= 1000
    assert pending_at_the_end <= broker.settings.max_pending_per_source
    assert front.drops.totals[Drop.PER_SOURCE] >= 1000 - broker.settings.max_pending_per_source
    # a summary, not a line per dropped socket (the first drop at once, then one a minute)
    assert 1 <= len(front_log_lines(caplog)) <= 2, front_log_lines(caplog)


async def test_a_phone_logs_in_over_websockets_while_1000_idle_sockets_are_held_on_each_port(
    broker: MosquittoBroker,
) -> None:
    port = broker.settings.websockets_port
    assert port is not None
    inbox = f"callbox/v1/{SITE}/door/inbox"
    async with IdleAttacker(broker.settings.port) as on_mqtt, IdleAttacker(port) as on_websockets:
        async with (
            login(broker, "phone", transport="websockets") as phone,
            login(broker, "door") as door,
        ):
            await door.subscribe(inbox, qos=1)
            await phone.publish(inbox, b"from the phone", qos=1)
            async with asyncio.timeout(TIMEOUT):
                async for message in door.messages:
                    assert message.payload == b"from the phone"
                    break
        pending = [front.admission.pending for front in broker.fronts]
    assert on_mqtt.opened >= 1000 and on_websockets.opened >= 1000
    cap = broker.settings.max_pending_per_source
    assert pending[0] <= cap and pending[1] <= cap
    assert broker.fronts[1].drops.totals[Drop.PER_SOURCE] >= 1000 - cap


def login(broker: MosquittoBroker, address: str, **options: object) -> aiomqtt.Client:
    """An MQTT 5 client of ``address`` that gives up after LOGIN_TIMEOUT_S."""
    return broker_login(broker, address, timeout=LOGIN_TIMEOUT_S, **options)


async def test_a_socket_without_connect_is_closed_within_the_deadline(
    broker: MosquittoBroker,
) -> None:
    port = broker.settings.port

    async def silent() -> float:
        reader, _ = await asyncio.open_connection("127.0.0.1", port)
        return await closed_after(reader)

    async def half_connect() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HALF_CONNECT)
        return await closed_after(reader)

    for took in await asyncio.gather(silent(), half_connect()):
        assert DEADLINE_S - 0.1 <= took <= DEADLINE_S + SLACK_S
    assert broker.fronts[0].drops.totals[Drop.DEADLINE] == 2


async def test_a_first_packet_that_is_not_connect_is_closed_at_once(
    broker: MosquittoBroker,
) -> None:
    for garbage in (b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x02\x00", b"\x30\x05hello"):
        reader, writer = await asyncio.open_connection("127.0.0.1", broker.settings.port)
        writer.write(garbage)
        assert await closed_after(reader) < SLACK_S, garbage
    assert broker.fronts[0].drops.totals[Drop.BAD_FIRST_PACKET] == 3


async def test_a_websocket_without_connect_is_closed_within_the_deadline(
    broker: MosquittoBroker,
) -> None:
    port = broker.settings.websockets_port
    assert port is not None

    async def silent_tcp() -> float:
        reader, _ = await asyncio.open_connection("127.0.0.1", port)
        return await closed_after(reader)

    async def upgraded(first: bytes | None) -> float:
        async with ws_connect(f"ws://127.0.0.1:{port}/", subprotocols=["mqtt"]) as ws:  # type: ignore[list-item]
            started = time.monotonic()
            if first is not None:
                await ws.send(first)
            async with asyncio.timeout(DEADLINE_S + 5):
                await ws.wait_closed()
            return time.monotonic() - started

    took = await asyncio.gather(silent_tcp(), upgraded(None), upgraded(HALF_CONNECT))
    for seconds in took:
        assert seconds <= DEADLINE_S + SLACK_S
    assert took[0] >= DEADLINE_S - 0.1
    assert broker.fronts[1].drops.totals[Drop.DEADLINE] == 3


async def test_a_text_frame_is_refused(broker: MosquittoBroker) -> None:
    port = broker.settings.websockets_port
    async with ws_connect(f"ws://127.0.0.1:{port}/", subprotocols=["mqtt"]) as ws:  # type: ignore[list-item]
        await ws.send("CONNECT")
        async with asyncio.timeout(SLACK_S):
            await ws.wait_closed()
    assert ws.close_code == 1003
    assert broker.fronts[1].drops.totals[Drop.BAD_FIRST_PACKET] == 1


async def test_per_source_cap_leaves_other_addresses_in(broker: MosquittoBroker) -> None:
    cap = broker.settings.max_pending_per_source
    port = broker.settings.port
    streams = [
        await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
        for _ in range(cap + 5)
    ]
    try:
        refused = [await closed_after(reader) for reader, _ in streams[cap:]]  # closed at accept
        assert all(seconds < SLACK_S for seconds in refused)
        assert broker.fronts[0].admission.pending == cap
        async with login(broker, "door") as door:  # from 127.0.0.1
            await door.publish(f"callbox/v1/{SITE}/door/presence", b"{}", qos=1)
    finally:
        for _, writer in streams:
            writer.close()
    assert broker.fronts[0].drops.totals[Drop.PER_SOURCE] == 5


async def test_tls_front_with_a_self_signed_certificate(
    tmp_path: Path, certificate: Certificate
) -> None:
    running = await start_broker(tmp_path / "broker", TlsFiles(certificate.cert, certificate.key))
    trusting = ssl.create_default_context(cafile=str(certificate.cert))
    port = running.settings.port
    try:
        inbox = f"callbox/v1/{SITE}/door/inbox"
        async with (
            login(running, "door", tls_context=trusting) as door,
            login(running, "phone", transport="websockets", tls_context=trusting) as phone,
        ):
            await door.subscribe(inbox, qos=1)
            await phone.publish(inbox, b"over wss", qos=1)
            async with asyncio.timeout(TIMEOUT):
                async for message in door.messages:
                    assert message.payload == b"over wss"
                    break

        async def no_client_hello() -> float:
            reader, _ = await asyncio.open_connection("127.0.0.1", port)
            return await closed_after(reader)

        async def tls_then_silent() -> float:
            reader, _ = await asyncio.open_connection(
                "127.0.0.1", port, ssl=trusting, server_hostname="localhost"
            )
            return await closed_after(reader)

        async def plaintext(port: int) -> float:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(HALF_CONNECT)
            return await closed_after(reader)

        for took in await asyncio.gather(no_client_hello(), tls_then_silent()):
            assert DEADLINE_S - 0.1 <= took <= DEADLINE_S + SLACK_S
        # plaintext on the wss port is a failed TLS handshake, closed at once
        assert await plaintext(running.settings.websockets_port or 0) < SLACK_S
        assert running.fronts[1].drops.totals[Drop.HANDSHAKE] == 1
        # the MQTT port takes plain MQTT from this machine (the hosting unit's own daemon):
        # half a CONNECT waits for the rest until the deadline, a whole one logs in
        assert DEADLINE_S - 0.1 <= await plaintext(port) <= DEADLINE_S + SLACK_S
        async with login(running, "indoor1") as indoor:
            await indoor.publish(inbox, b"plain over loopback", qos=1)
        drops = running.fronts[0].drops.totals
        assert drops[Drop.DEADLINE] == 3
        assert drops[Drop.HANDSHAKE] == 0
    finally:
        await running.close()
