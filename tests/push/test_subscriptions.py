"""What a door accepts as a push subscription, keeps across restarts, and puts in a push."""

from __future__ import annotations

import base64
import json
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from device.daemon._selftest import check_push_key
from services.push.errors import BadSubscription, PushError
from services.push.hosts import PushHosts, origin_of
from services.push.payload import MAX_PAYLOAD_BYTES, RingPush
from services.push.store import StoreFull, SubscriptionStore
from services.push.subscription import Subscription, parse_subscribe
from services.push.vapid import generate_vapid_key, save_vapid_key
from services.signaling.identity import b64u_encode

REAL = PushHosts()


def body(endpoint: str = "https://fcm.googleapis.com/fcm/send/abc", **keys: str) -> dict[str, Any]:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    values = {"p256dh": b64u_encode(point), "auth": b64u_encode(os.urandom(16)), **keys}
    return {"subscription": {"endpoint": endpoint, "keys": values}, "expires_ms": None}


@pytest.mark.parametrize(
    "url",
    [
        "https://fcm.googleapis.com/fcm/send/abc",
        "https://updates.push.services.mozilla.com/wpush/v2/abc",
        "https://web.push.apple.com/QO0w",
        "https://wns2-db5p.notify.windows.com/w/?token=abc",
    ],
)
def test_the_real_push_services_are_allowed(url: str) -> None:
    assert parse_subscribe("phone", body(url), REAL, now_ms=0).endpoint == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://fcm.googleapis.com/x", "only https://"),
        ("http://192.168.1.1/admin", "only https://"),
        ("https://192.168.1.1/admin", "not an allowed push service"),
        ("https://10.0.0.1:443/x", "not an allowed push service"),
        ("https://fcm.googleapis.com:8443/x", "not an allowed push service"),
        ("https://fcm.googleapis.com.evil.example/x", "not an allowed push service"),
        ("https://push.apple.com/x", "not an allowed push service"),
        ("https://user:pw@fcm.googleapis.com/x", "user name or password"),
        ("ftp://fcm.googleapis.com/x", "not an https:// URL"),
        ("https://fcm.googleapis.com/a b", "spaces or control characters"),
        ("https://fcm.googleapis.com/" + "a" * 3000, "over 2048"),
        ("http://127.0.0.1:8080/x", "not an allowed push service"),
    ],
)
def test_anything_else_is_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(BadSubscription, match=why):
        parse_subscribe("phone", body(url), REAL, now_ms=0)


def test_http_only_to_a_listed_loopback_port() -> None:
    hosts = PushHosts(["127.0.0.1:8080"])
    assert parse_subscribe("phone", body("http://127.0.0.1:8080/x"), hosts, now_ms=0)
    with pytest.raises(BadSubscription, match="not an allowed"):
        parse_subscribe("phone", body("http://127.0.0.1:8081/x"), hosts, now_ms=0)
    assert origin_of("http://127.0.0.1:8080/push/x") == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("keys", "why"),
    [
        ({"p256dh": b64u_encode(b"\x04" + bytes(64))}, "not a point on P-256"),
        ({"p256dh": b64u_encode(b"\x02" + bytes(32))}, "uncompressed P-256 point"),
        ({"p256dh": "not base64!"}, "p256dh is not base64url"),
        ({"auth": b64u_encode(bytes(8))}, "auth must be 16 bytes, not 8"),
    ],
)
def test_the_keys_must_be_a_p256_point_and_a_16_byte_secret(keys: dict[str, str], why: str) -> None:
    with pytest.raises(BadSubscription, match=why):
        parse_subscribe("phone", body(**keys), REAL, now_ms=0)


def test_expires_ms_is_null_or_unix_ms_fractions_dropped() -> None:
    sub = parse_subscribe("phone", body() | {"expires_ms": 5000.7}, REAL, now_ms=0)
    assert sub.expires_ms == 5000
    for bad in ("soon", -1, True, float("nan")):
        with pytest.raises(BadSubscription, match="expires_ms must be null"):
            parse_subscribe("phone", body() | {"expires_ms": bad}, REAL, now_ms=0)


def test_an_expired_subscription_is_refused() -> None:
    expired = body() | {"expires_ms": 1000}
    with pytest.raises(BadSubscription, match="expired"):
        parse_subscribe("phone", expired, REAL, now_ms=2000)


async def test_the_store_survives_a_restart_bounded_and_private(tmp_path: Path) -> None:
    path = tmp_path / "subs.json"
    store = SubscriptionStore(path, REAL, max_subscriptions=2)
    first = parse_subscribe("a", body(), REAL, now_ms=1)
    await store.put(first)
    await store.put(parse_subscribe("a", body(), REAL, now_ms=2))  # replaces a's
    await store.put(parse_subscribe("b", body(), REAL, now_ms=3))
    with pytest.raises(StoreFull, match="max_subscriptions"):
        await store.put(parse_subscribe("c", body(), REAL, now_ms=4))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    again = SubscriptionStore(path, REAL, max_subscriptions=2)
    await again.load()
    assert again.addresses() == ["a", "b"]
    a = again.get("a")
    assert a is not None and a.updated_ms == 2 and a != first
    assert not await again.remove("a", endpoint="https://elsewhere.example/x")
    assert await again.remove("a")
    reloaded = SubscriptionStore(path, REAL)
    await reloaded.load()
    assert reloaded.addresses() == ["b"]


async def test_stored_entries_the_allow_list_no_longer_takes_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "subs.json"
    store = SubscriptionStore(path, PushHosts(["push.example"]))
    await store.put(parse_subscribe("a", body("https://push.example/x"), store.hosts, now_ms=1))
    store.hosts = REAL  # the installer narrows [push] hosts later
    await store.put(parse_subscribe("b", body(), REAL, now_ms=1))
    data = json.loads(path.read_text())
    data["subscriptions"].append({"address": "c", "endpoint": 5})
    path.write_text(json.dumps(data))
    narrower = SubscriptionStore(path, PushHosts(["fcm.googleapis.com"]))
    await narrower.load()
    assert narrower.addresses() == ["b"]


async def test_a_store_that_cannot_be_written_refuses_and_keeps_nothing(tmp_path: Path) -> None:
    store = SubscriptionStore(tmp_path / "missing-dir" / "subs.json", REAL)
    with pytest.raises(PushError, match="cannot write the push subscriptions"):
        await store.put(parse_subscribe("a", body(), REAL, now_ms=1))
    assert store.addresses() == []


def test_the_payload_is_small_and_takes_a_snapshot_only_when_it_fits() -> None:
    push = RingPush("door", "Front door", "c" * 22, 1_700_000_000_000, 30000)
    plain = json.loads(push.payload())
    assert plain == {
        "v": 1,
        "type": "ring",
        "door": "door",
        "name": "Front door",
        "call_id": "c" * 22,
        "at_ms": 1_700_000_000_000,
        "ring_timeout_ms": 30000,
    }
    small = json.loads(push.payload(b"\xff\xd8" + bytes(500)))
    assert small["snapshot"].startswith("data:image/jpeg;base64,")
    assert base64.b64decode(small["snapshot"].split(",", 1)[1]) == b"\xff\xd8" + bytes(500)
    big = push.payload(bytes(3000))
    assert "snapshot" not in json.loads(big) and len(big) <= MAX_PAYLOAD_BYTES


def test_the_bells_label_goes_in_and_the_snapshot_budget_makes_room_for_it() -> None:
    plain = RingPush("door", "Front door", "c" * 22, 1_700_000_000_000, 30000)
    label = "Wohnung 12 – Müller-Lüdenscheidt ✉" + "é" * 30  # 64 characters, multi-byte
    assert len(label) == 64
    push = replace(plain, bell=label)
    assert json.loads(push.payload())["bell"] == label
    assert "bell" not in json.loads(plain.payload()), "no bell: no field"
    grown = len(label.encode()) + len(',"bell":""')  # UTF-8 bytes, not characters
    assert plain.snapshot_budget() - push.snapshot_budget() >= grown // 4 * 3
    full = push.payload(bytes(push.snapshot_budget()))
    assert len(full) <= MAX_PAYLOAD_BYTES and json.loads(full)["bell"] == label
    assert "snapshot" in json.loads(full)
    assert "snapshot" not in json.loads(push.payload(bytes(push.snapshot_budget() + 3)))
    for bad in ("x" * 65, "Flat 12\n", "\x1b[31m"):
        with pytest.raises(ValueError, match="printable"):
            replace(plain, bell=bad)


def test_a_subscription_is_what_pywebpush_takes() -> None:
    sub: Subscription = parse_subscribe("phone", body(), REAL, now_ms=0)
    info = sub.info()
    assert info["endpoint"] == sub.endpoint
    assert set(info["keys"]) == {"p256dh", "auth"}


def test_selftest_checks_the_doors_push_key(tmp_path: Path) -> None:
    path = tmp_path / "vapid.key"
    assert not check_push_key(path).ok
    key = generate_vapid_key()
    save_vapid_key(path, key)
    good = check_push_key(path)
    assert good.ok and key.application_server_key[:16] in good.detail
    path.chmod(0o640)
    assert "readable by group or others" in check_push_key(path).detail
