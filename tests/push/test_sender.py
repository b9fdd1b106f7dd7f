"""One push from the door's sender to a local push service that checks and decrypts it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from aiohttp import ClientSession
from harness.push_endpoint import PushEndpoint, Subscriber
from harness.push_site import SUBJECT
from py_vapid.jwt import sign

from services.push.hosts import PushHosts
from services.push.payload import RingPush
from services.push.sender import Outcome, PushResult, PushSender
from services.push.subscription import parse_subscribe
from services.push.vapid import VapidKey, generate_vapid_key


def ring(call_id: str = "c1") -> bytes:
    return RingPush("door", "Front door", call_id, int(time.time() * 1000), 30000).payload()


async def sender_for(key: VapidKey) -> PushSender:
    sender = PushSender(key, SUBJECT, timeout_s=2.0)
    await sender.start()
    return sender


async def push_once(key: VapidKey, push_service: PushEndpoint, phone: Subscriber) -> PushResult:
    """Send ``phone`` (subscribed at ``push_service``) one ring signed with ``key`` (TTL 30 s)."""
    hosts = PushHosts([push_service.host_entry])
    sub = parse_subscribe("phone", phone.subscribe_body(), hosts, now_ms=0)
    sender = await sender_for(key)
    try:
        return await sender.send(sub, ring(), ttl_s=30)
    finally:
        await sender.close()


async def test_a_push_is_encrypted_signed_and_urgent(
    site_key: tuple[VapidKey, Path], push_service: PushEndpoint
) -> None:
    phone = push_service.new_subscriber()
    result = await push_once(site_key[0], push_service, phone)
    assert result.outcome is Outcome.SENT, (result, push_service.rejected)
    assert result.status == 201
    assert result.sent_at is not None and result.started_at <= result.sent_at
    (delivery,) = push_service.deliveries(phone)
    assert delivery.payload == json.loads(ring()) | {"at_ms": delivery.payload["at_ms"]}
    assert delivery.headers["urgency"] == "high"
    assert delivery.headers["ttl"] == "30"
    assert delivery.claims["aud"] == push_service.origin
    assert delivery.claims["sub"] == SUBJECT
    assert delivery.claims["exp"] <= time.time() + 24 * 3600


async def test_a_push_signed_with_another_key_is_refused_by_the_push_service(
    push_service: PushEndpoint,
) -> None:
    phone = push_service.new_subscriber()
    result = await push_once(generate_vapid_key(), push_service, phone)  # not the site's key
    assert result.outcome is Outcome.REFUSED
    assert result.status == 403
    assert push_service.rejected == ["k is not the application server key of the subscription"]
    assert push_service.received == []


async def test_the_push_service_checks_the_signature_against_k(
    site_key: tuple[VapidKey, Path], push_service: PushEndpoint
) -> None:
    phone = push_service.new_subscriber()
    claims = {"aud": push_service.origin, "exp": int(time.time()) + 3600, "sub": SUBJECT}
    forged = sign(claims, generate_vapid_key().private_key)  # k says the site, signed by another
    headers = {
        "Authorization": f"vapid t={forged}, k={site_key[0].application_server_key}",
        "TTL": "30",
        "Content-Encoding": "aes128gcm",
    }
    async with (
        ClientSession() as session,
        session.post(phone.endpoint, data=b"x" * 100, headers=headers) as response,
    ):
        assert response.status == 401
    assert push_service.rejected[0].startswith("the VAPID token does not verify with k")


async def test_gone_busy_and_slow_push_services(
    site_key: tuple[VapidKey, Path], push_service: PushEndpoint
) -> None:
    hosts = PushHosts([push_service.host_entry])
    sender = await sender_for(site_key[0])
    answers = ((410, Outcome.GONE), (404, Outcome.GONE), (429, Outcome.RETRY_LATER))
    try:
        for status, expected in answers:
            phone = push_service.new_subscriber()
            phone.status = status
            sub = parse_subscribe("phone", phone.subscribe_body(), hosts, now_ms=0)
            result = await sender.send(sub, ring(), ttl_s=30)
            assert result.outcome is expected
        slow = push_service.new_subscriber()
        slow.delay_s = 10.0
        sender.timeout_s = 0.5
        sub = parse_subscribe("phone", slow.subscribe_body(), hosts, now_ms=0)
        started = time.monotonic()
        result = await sender.send(sub, ring(), ttl_s=30)
        assert time.monotonic() - started < 2.0
        assert result.outcome is Outcome.FAILED
        assert "no answer within 0.5 s" in result.detail
    finally:
        await sender.close()


async def test_a_redirect_is_never_followed(
    site_key: tuple[VapidKey, Path], push_service: PushEndpoint
) -> None:
    target = push_service.new_subscriber()  # stands for a LAN host the redirect points to
    phone = push_service.new_subscriber()
    phone.redirect_to = target.endpoint
    result = await push_once(site_key[0], push_service, phone)
    assert result.outcome is Outcome.REFUSED
    assert "a door never follows one" in result.detail
    assert push_service.answered == [(phone.token, 307)], "nothing reached the redirect's target"
