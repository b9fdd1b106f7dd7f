"""Browsers' MQTT over WebSockets through callbox's bridge to a real mosquitto.

What a browser phone notices: an envelope of several KB (an SDP offer) arrives whole and at
once, logins are still mosquitto's (a wrong password is refused), and with the site's
certificate the bridge speaks TLS (wss://).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from signaling_harness import broker_login
from support import Certificate

from services.signaling.broker import (
    MosquittoBroker,
    TlsFiles,
    start_loopback_broker,
)

TIMEOUT = 10.0
SITE = "test"


async def start(directory: Path, tls: TlsFiles | None = None) -> MosquittoBroker:
    return await start_loopback_broker(
        directory, site=SITE, endpoints=("door", "phone"), websockets=True, tls=tls
    )


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[MosquittoBroker]:
    running = await start(tmp_path / "broker")
    yield running
    await running.close()


async def receive_one(client: aiomqtt.Client) -> bytes:
    async with asyncio.timeout(TIMEOUT):
        async for message in client.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            return payload
    raise AssertionError("no message")


@pytest.mark.parametrize("size", [100, 4477, 40000])
async def test_a_message_of_any_size_reaches_the_browser_whole(
    broker: MosquittoBroker, size: int
) -> None:
    inbox = f"callbox/v1/{SITE}/phone/inbox"
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    async with (
        broker_login(broker, "phone", transport="websockets") as phone,
        broker_login(broker, "door") as door,
    ):
        await phone.subscribe(inbox, qos=1)
        await door.publish(inbox, payload, qos=1)
        assert await receive_one(phone) == payload


async def test_the_browser_publishes_through_the_bridge(broker: MosquittoBroker) -> None:
    inbox = f"callbox/v1/{SITE}/door/inbox"
    async with (
        broker_login(broker, "door") as door,
        broker_login(broker, "phone", transport="websockets") as phone,
    ):
        await door.subscribe(inbox, qos=1)
        await phone.publish(inbox, b"y" * 9000, qos=1)
        assert await receive_one(door) == b"y" * 9000


async def test_a_wrong_password_is_refused_over_websockets(broker: MosquittoBroker) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with broker_login(broker, "phone", transport="websockets", password="guess"):
            pass


async def test_the_bridge_speaks_tls_with_the_site_certificate(
    tmp_path: Path, certificate: Certificate
) -> None:
    running = await start(tmp_path / "broker", TlsFiles(certificate.cert, certificate.key))
    trusting = ssl.create_default_context(cafile=str(certificate.cert))
    try:
        async with broker_login(
            running, "phone", transport="websockets", tls_context=trusting
        ) as phone:
            await phone.publish(f"callbox/v1/{SITE}/door/inbox", b"z", qos=1)
        with pytest.raises(aiomqtt.MqttError):  # plain ws to the wss listener
            async with broker_login(running, "phone", transport="websockets"):
                pass
    finally:
        await running.close()
