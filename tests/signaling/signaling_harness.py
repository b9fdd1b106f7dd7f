"""Helpers for the signaling tests that run against a real mosquitto and real aiortc peers.

Imported by its bare name (pytest puts this directory on ``sys.path``; mypy maps the
file the same way), so the name is deliberately unlikely to collide with other test
directories' helpers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping

import aiomqtt
import pytest
from harness.simsite import SimEndpoint, SimSite
from support import TIMEOUT, Answering, Progress, props_for

from services.callapi import CallStatus
from services.signaling.base import Inbound
from services.signaling.broker import MosquittoBroker
from services.signaling.envelope import seal
from services.signaling.errors import RejectReason
from services.signaling.identity import Identity
from services.signaling.profile import signed_profile
from services.signaling.topics import SiteTopics
from services.signaling.transport import MqttTransport

POLL_S = 0.01
QUIET_WINDOW_S = 0.5


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Wait until ``predicate()`` holds, checking it every 10 ms; fail after ``timeout`` s.

    For state that has no notifier of its own (counters, dicts); everything that has an
    event or a Recorder is waited on directly.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(POLL_S)  # polling a condition with a deadline


def topics(site: SimSite) -> SiteTopics:
    """The topic names of ``site``."""
    return SiteTopics(site.site)


def raw_client(
    site: SimSite,
    username: str | None,
    *,
    password: str | None = None,
    identifier: str | None = None,
    will: aiomqtt.Will | None = None,
    transport: str = "tcp",
    port: int | None = None,
) -> aiomqtt.Client:
    """A bare MQTT 5 client on ``site``'s broker, logged in as ``username`` (None: anonymous).

    The password defaults to the account's generated one. The client id is random unless
    given, so it never kicks the endpoint that uses the account (its id is its address).
    """
    if username is not None and password is None:
        password = site.broker.files.passwords[username]
    return aiomqtt.Client(
        site.broker_settings.host,
        port or site.broker_settings.port,
        username=username,
        password=password,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5,
        will=will,
        timeout=5,
        transport=transport,  # type: ignore[arg-type]
    )


def broker_login(broker: MosquittoBroker, address: str, **options: object) -> aiomqtt.Client:
    """An MQTT 5 client of ``address`` on ``broker``'s loopback ports.

    Over WebSockets with ``transport="websockets"``; the account's generated password unless
    ``password`` is given; every other option goes to aiomqtt (``tls_context``, ``timeout``).
    """
    websockets = options.get("transport") == "websockets"
    port = broker.settings.websockets_port if websockets else broker.settings.port
    assert port is not None
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        username=address,
        password=str(options.pop("password", broker.files.passwords[address])),
        protocol=aiomqtt.ProtocolVersion.V5,
        **options,  # type: ignore[arg-type]
    )


async def publish_raw(
    site: SimSite, target: str, payload: bytes, *, as_user: str = "mallory", topic: str = ""
) -> None:
    """Publish ``payload`` into ``target``'s inbox (or ``topic``) as a bare client."""
    async with raw_client(site, as_user) as client:
        await client.publish(topic or topics(site).inbox(target), payload, qos=1)


def seal_for(
    site: SimSite,
    identity: Identity,
    *,
    sender: str,
    recipient: str,
    type: str = "invite",  # noqa: A002 - the keyword of seal(), which it forwards
    call_id: str = "test-call",
    body: Mapping[str, object] | None = None,
    ts_ms: int | None = None,
) -> bytes:
    """An envelope signed by ``identity`` claiming ``sender``, encrypted to ``recipient``."""
    return seal(
        identity,
        type=type,
        call_id=call_id,
        sender=sender,
        recipient=recipient,
        recipient_keys=site[recipient].identity.public_keys,
        body=dict(body or {"video": False, "sdp": ""}),
        ts_ms=ts_ms,
    )


def mqtt_of(endpoint: SimEndpoint) -> MqttTransport:
    """``endpoint``'s MQTT connection (these tests run on mosquitto)."""
    transport = endpoint.signaling.transport
    assert isinstance(transport, MqttTransport), "a test of the broker needs mosquitto"
    return transport


def capture_inbox(endpoint: SimEndpoint) -> list[bytes]:
    """Record the exact bytes of every inbox message ``endpoint`` receives from now on."""
    captured: list[bytes] = []
    transport = endpoint.signaling.transport
    deliver = transport.on_message
    assert deliver is not None, "the endpoint hands its receiver to its transport"

    def record(inbound: Inbound) -> None:
        if inbound.kind == "inbox":
            captured.append(inbound.payload)
        deliver(inbound)

    transport.on_message = record
    return captured


def envelope_types(payloads: list[bytes]) -> list[str]:
    """The ``type`` of every captured envelope."""
    return [str(json.loads(p)["type"]) for p in payloads]


async def wait_rejected(
    endpoint: SimEndpoint, reason: RejectReason, count: int, timeout: float = TIMEOUT
) -> None:
    """Wait until ``endpoint`` has counted ``count`` rejections for ``reason``."""
    rejected = endpoint.signaling.rejected
    await eventually(
        lambda: rejected[reason] >= count,
        f"{endpoint.spec.address} to count {count} x {reason.value} (has {dict(rejected)})",
        timeout,
    )


def logged_reason(caplog: pytest.LogCaptureFixture, address: str, reason: RejectReason) -> int:
    """How many "dropped a message" warnings of ``address`` name ``reason``'s value."""
    return sum(
        r.levelno >= logging.WARNING
        and r.getMessage().startswith(f"{address}: dropped a message")
        and f"({reason.value})" in r.getMessage()
        for r in caplog.records
    )


async def place_and_complete_call(
    site: SimSite, caller: str = "door", callee: str = "indoor1", *, video: bool = False
) -> str:
    """Prove that ``caller`` can still call ``callee``: ring, answer, connect, hang up.

    Installs a fresh auto-answering app on ``callee`` and returns the call id.
    """
    app = Answering(site[callee].calls, auto_answer=True)
    site[callee].calls.set_listener(app)
    call = site[caller].calls.call(props_for(site[caller].calls, callee, video=video))
    assert call is not None, f"{caller} thinks a call is still in progress"
    progress = Progress()
    await call.start(progress)
    await progress.wait_status(CallStatus.CONNECTED)
    incoming, incoming_progress = await app.next_call()
    assert incoming.call_id == call.call_id
    await incoming_progress.wait_status(CallStatus.CONNECTED)
    await call.hangup()
    await incoming_progress.wait_until(lambda: bool(incoming_progress.terminal()))
    assert progress.terminal() == [CallStatus.COMPLETE]
    assert incoming_progress.terminal() == [CallStatus.COMPLETE]
    assert not site[caller].calls.is_call_in_progress()
    assert not site[callee].calls.is_call_in_progress()
    return call.call_id


def profile_payload(
    name: str, role: str, identity: Identity, *, address: str = "", signed: bool = True
) -> bytes:
    """A retained profile advertising ``identity``'s keys.

    Signed for ``address`` (as an endpoint publishes it) unless ``signed`` is False (as a
    browser phone's, or someone's with only the broker login).
    """
    if signed:
        assert address, "a signed profile names the address it is signed for"
        return json.dumps(signed_profile(identity, address, name, role)).encode()
    return json.dumps({"name": name, "role": role, "keys": identity.public_keys.to_json()}).encode()


async def retained(site: SimSite, topic: str, as_user: str = "mallory") -> bytes:
    """The retained message on ``topic`` (fails when there is none within the timeout)."""
    async with raw_client(site, as_user) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(TIMEOUT):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                return message.payload
    raise AssertionError(f"no retained message on {topic}")
