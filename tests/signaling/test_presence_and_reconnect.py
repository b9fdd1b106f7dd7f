"""Presence (retained, with a last will) and reconnection after a broker restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time

import pytest
from harness.simsite import EndpointSpec, SimEndpoint, SimSite
from signaling_harness import (
    eventually,
    mqtt_of,
    place_and_complete_call,
    publish_raw,
    retained,
    topics,
)
from support import TIMEOUT, MakeSite, place_call, props_for

from services.callapi import CallStatus

PRESENCE_DEADLINE_S = 1.0


async def three(make_site: MakeSite) -> SimSite:
    return await make_site(
        EndpointSpec("door", role="door"),
        EndpointSpec("indoor1"),
        EndpointSpec("indoor2"),
        extra_accounts=("mallory",),
    )


def record_presence(endpoint: SimEndpoint) -> list[tuple[str, bool, float]]:
    """Every presence change ``endpoint`` hears from now on, with its time.monotonic()."""
    seen: list[tuple[str, bool, float]] = []
    forward = endpoint.signaling.on_presence

    def record(address: str, online: bool) -> None:
        seen.append((address, online, time.monotonic()))
        if forward is not None:
            forward(address, online)

    endpoint.signaling.on_presence = record
    return seen


def first_time(seen: list[tuple[str, bool, float]], address: str, online: bool) -> float | None:
    return next((at for a, o, at in seen if (a, o) == (address, online)), None)


async def test_retained_presence_and_profile_after_start(make_site: MakeSite) -> None:
    site = await three(make_site)
    t = topics(site)
    for address, endpoint in site.endpoints.items():
        assert json.loads(await retained(site, t.presence(address))) == {"state": "online"}
        profile = json.loads(await retained(site, t.profile(address)))
        assert profile["keys"] == endpoint.identity.public_keys.to_json()
        assert profile["role"] == endpoint.spec.role
        for other in site.endpoints.values():
            if other is not endpoint:
                assert other.signaling.is_online(address)
                assert other.signaling.profiles[address] == profile


async def test_explicit_close_says_offline(make_site: MakeSite) -> None:
    site = await three(make_site)
    door_seen, indoor2_seen = record_presence(site["door"]), record_presence(site["indoor2"])
    closed_at = time.monotonic()
    await site["indoor1"].calls.close()
    for endpoint in (site["door"], site["indoor2"]):
        await endpoint.signaling.wait_presence("indoor1", False, timeout=PRESENCE_DEADLINE_S)
    for seen in (door_seen, indoor2_seen):
        at = first_time(seen, "indoor1", False)
        assert at is not None and at - closed_at < PRESENCE_DEADLINE_S
    assert json.loads(await retained(site, topics(site).presence("indoor1"))) == {
        "state": "offline"
    }
    # the door still calls indoor2, and knows indoor1 is not there
    await place_and_complete_call(site, "door", "indoor2")
    assert not site["door"].signaling.is_online("indoor1")


async def test_last_will_says_offline_when_the_connection_dies(make_site: MakeSite) -> None:
    site = await three(make_site)
    indoor1 = site["indoor1"]
    door_seen, indoor2_seen = record_presence(site["door"]), record_presence(site["indoor2"])
    client = mqtt_of(indoor1)._client
    assert client is not None
    # The trick: shut down the TCP connection under paho (aiomqtt's Client wraps a paho
    # Client as ``_client``; ``socket()`` is its socket). The broker sees the connection end
    # without an MQTT DISCONNECT, exactly as when the device loses power or network, and
    # publishes the last will. (``close()`` would leave paho polling a dead descriptor
    # until its keepalive runs out; ``shutdown`` makes it see the end at once, and
    # reconnect.)
    sock = client._client.socket()
    assert isinstance(sock, socket.socket)
    killed_at = time.monotonic()
    sock.shutdown(socket.SHUT_RDWR)

    async def heard_offline(seen: list[tuple[str, bool, float]]) -> float:
        await eventually(
            lambda: first_time(seen, "indoor1", False) is not None,
            "the last will of indoor1",
            PRESENCE_DEADLINE_S,
        )
        at = first_time(seen, "indoor1", False)
        assert at is not None
        return at - killed_at

    for seen in (door_seen, indoor2_seen):
        assert await heard_offline(seen) < PRESENCE_DEADLINE_S
    # the endpoint reconnects by itself and says online again
    await eventually(lambda: indoor1.signaling.transport.connections == 2, "indoor1 to reconnect")
    for endpoint in (site["door"], site["indoor2"]):
        await endpoint.signaling.wait_presence("indoor1", True, timeout=TIMEOUT)
    assert json.loads(await retained(site, topics(site).presence("indoor1"))) == {"state": "online"}
    await place_and_complete_call(site)


async def test_cleared_presence_means_offline(make_site: MakeSite) -> None:
    site = await three(make_site)
    site["door"].signaling.set_targets(["mallory"])  # endpoints follow only whom they need
    presence = topics(site).presence("mallory")
    await publish_raw(site, "", json.dumps({"state": "online"}).encode(), topic=presence)
    await site["door"].signaling.wait_presence("mallory", True, timeout=TIMEOUT)
    await publish_raw(site, "", b"", topic=presence)  # an empty retained message clears it
    await site["door"].signaling.wait_presence("mallory", False, timeout=PRESENCE_DEADLINE_S)


@pytest.mark.parametrize(
    "payload",
    [b"[" * 60_000, b'{"state":' * 12_000, b"not json", b'{"keys": {"sign": "x"}}', b"[1]"],
    ids=["deep-array", "deep-object", "garbage", "bad-keys", "list"],
)
async def test_poisoned_presence_and_profile_are_ignored(
    make_site: MakeSite, caplog: pytest.LogCaptureFixture, payload: bytes
) -> None:
    """One account's retained junk must not take any other endpoint off the broker."""
    site = await three(make_site)
    for endpoint in site.endpoints.values():
        endpoint.signaling.set_targets(["mallory"])  # endpoints follow only whom they need
    t = topics(site)
    await publish_raw(site, "", payload, topic=t.presence("mallory"))
    await publish_raw(site, "", payload, topic=t.profile("mallory"))
    expected = [
        f"{address}: bad {what} from mallory ignored"
        for address in site.endpoints
        for what in ("presence", "profile")
    ]
    await eventually(
        lambda: all(
            any(r.getMessage().startswith(line) for r in caplog.records) for line in expected
        ),
        "every endpoint to ignore mallory's presence and profile",
    )
    for endpoint in site.endpoints.values():
        assert endpoint.signaling.transport.connections == 1
        assert endpoint.signaling.transport.connected.is_set()
        assert "mallory" not in endpoint.signaling.profiles
        assert not endpoint.signaling.is_online("mallory")
    await place_and_complete_call(site)
    await place_and_complete_call(site, "indoor2", "indoor1")


async def test_endpoints_reconnect_after_a_broker_restart(make_site: MakeSite) -> None:
    site = await make_site(
        EndpointSpec("door", role="door"), EndpointSpec("indoor1"), extra_accounts=("mallory",)
    )
    transports = [e.signaling.transport for e in site.endpoints.values()]
    assert [t.connections for t in transports] == [1, 1]
    await site.broker.close()
    await eventually(
        lambda: not any(t.connected.is_set() for t in transports), "both to notice the loss"
    )
    await site.broker.start()  # same port, same configuration
    async with asyncio.timeout(TIMEOUT):
        for transport in transports:
            await transport.connected.wait()
    assert [t.connections for t in transports] == [2, 2]
    # retained state is rebuilt by the endpoints themselves (the broker has no persistence)
    for endpoint in site.endpoints.values():
        assert json.loads(await retained(site, topics(site).presence(endpoint.spec.address))) == {
            "state": "online"
        }
    await site["door"].signaling.wait_presence("indoor1", True, timeout=TIMEOUT)
    await place_and_complete_call(site)
    await place_and_complete_call(site, "indoor1", "door")


async def test_an_endpoint_gone_while_the_broker_was_down_is_offline_after_restart(
    make_site: MakeSite,
) -> None:
    site = await make_site(EndpointSpec("door", role="door"), EndpointSpec("indoor2"))
    door = site["door"]
    assert door.signaling.is_online("indoor2")
    assert site.broker.pid is not None
    os.kill(site.broker.pid, signal.SIGKILL)  # a crash: no last will goes out
    await site.broker.close()
    await eventually(lambda: not door.signaling.transport.connected.is_set(), "the loss")
    assert door.signaling.is_online("indoor2"), "nothing said indoor2 went offline"
    await site["indoor2"].calls.close()  # gone, and no broker to hear its last will
    await site.broker.start()
    await asyncio.wait_for(door.signaling.transport.connected.wait(), TIMEOUT)
    assert not door.signaling.is_online("indoor2")
    _call, progress = await place_call(door.calls, props_for(door.calls, "indoor2"))
    await progress.wait_status(CallStatus.OFFLINE)
    assert progress.terminal() == [CallStatus.OFFLINE]
