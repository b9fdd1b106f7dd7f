"""Closing a signaling endpoint or its MQTT connection is idempotent, on mosquitto.

A close that finds another under way waits for it (as aiortc's RTCPeerConnection.close).
"""

from __future__ import annotations

import asyncio

from harness.simsite import EndpointSpec
from support import TIMEOUT, MakeSite

from services.signaling.transport import MqttTransport


async def test_a_second_transport_close_waits_for_the_first(make_site: MakeSite) -> None:
    site = await make_site(EndpointSpec("door", role="door"), EndpointSpec("indoor1"))
    transport = site["door"].signaling.transport
    assert isinstance(transport, MqttTransport)
    first = asyncio.create_task(transport.close())
    await asyncio.sleep(0)  # one loop turn: the first close is now publishing offline
    assert not first.done()

    await asyncio.wait_for(transport.close(), TIMEOUT)
    assert first.done(), "the second close returned while the first was still under way"
    assert not transport.connected.is_set()
    await first
    await site["indoor1"].signaling.wait_presence("door", False, TIMEOUT)
    await asyncio.wait_for(transport.close(), TIMEOUT)  # and once more, after it is closed


async def test_a_second_endpoint_close_waits_for_the_first(make_site: MakeSite) -> None:
    site = await make_site(EndpointSpec("door", role="door"), EndpointSpec("indoor1"))
    signaling = site["indoor1"].signaling
    first = asyncio.create_task(signaling.close())
    await asyncio.sleep(0)  # one loop turn: the first close is now under way
    assert not first.done()

    second = asyncio.create_task(signaling.close())
    await asyncio.wait_for(second, TIMEOUT)
    assert first.done(), "the second close returned while the first was still under way"
    await first
    assert not signaling.transport.connected.is_set()
    await site["door"].signaling.wait_presence("indoor1", False, TIMEOUT)
    await asyncio.wait_for(signaling.close(), TIMEOUT)  # idempotent
