"""A phone's push subscription, checked before a door keeps it.

The body of ``push_subscribe`` (docs/protocol.md) is the browser's
``PushSubscription.toJSON()`` without ``expirationTime``:
``{"subscription": {"endpoint", "keys": {"p256dh", "auth"}}, "expires_ms"}``. The endpoint must
pass the allow-list (:mod:`services.push.hosts`), ``p256dh`` must be a point on P-256 (65
bytes, uncompressed), ``auth`` 16 bytes: anything else is refused with the field and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from services.push.errors import BadSubscription
from services.push.hosts import PushHosts
from services.signaling.identity import b64u_decode, b64u_encode

AUTH_BYTES = 16
P256_POINT_BYTES = 65
MAX_EXPIRES_MS = 2**53 - 1


@dataclass(frozen=True)
class Subscription:
    """One phone's push subscription, as a door stores it."""

    address: str
    """The phone that registered it (the signed sender)."""
    endpoint: str
    p256dh: bytes
    auth: bytes
    expires_ms: int | None = None
    """When the browser says the subscription ends (unix ms), or None."""
    updated_ms: int = 0
    """When the door accepted it (unix ms)."""

    def info(self) -> dict[str, Any]:
        """The ``subscription_info`` pywebpush takes."""
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": b64u_encode(self.p256dh), "auth": b64u_encode(self.auth)},
        }

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "address": self.address,
            "endpoint": self.endpoint,
            "p256dh": b64u_encode(self.p256dh),
            "auth": b64u_encode(self.auth),
            "expires_ms": self.expires_ms,
            "updated_ms": self.updated_ms,
        }

    def expired(self, now_ms: int) -> bool:
        """True once the browser's expiration time has passed."""
        return self.expires_ms is not None and self.expires_ms <= now_ms


def parse_subscribe(
    address: str, body: dict[str, Any], hosts: PushHosts, now_ms: int
) -> Subscription:
    """The subscription in a ``push_subscribe`` body from ``address``; BadSubscription if bad."""
    sub = body.get("subscription")
    if not isinstance(sub, dict):
        raise BadSubscription("subscription must be an object {endpoint, keys}")
    endpoint = hosts.check(sub.get("endpoint"))  # type: ignore[arg-type]  # checked there
    keys = sub.get("keys")
    if not isinstance(keys, dict):
        raise BadSubscription("subscription.keys must be an object {p256dh, auth}")
    p256dh = _b64u_field(keys, "p256dh")
    if len(p256dh) != P256_POINT_BYTES or p256dh[0] != 4:
        raise BadSubscription(
            f"subscription.keys.p256dh must be an uncompressed P-256 point "
            f"({P256_POINT_BYTES} bytes starting 0x04), not {len(p256dh)} bytes"
        )
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
    except ValueError as err:
        raise BadSubscription("subscription.keys.p256dh is not a point on P-256") from err
    auth = _b64u_field(keys, "auth")
    if len(auth) != AUTH_BYTES:
        raise BadSubscription(f"subscription.keys.auth must be {AUTH_BYTES} bytes, not {len(auth)}")
    expires = _expires_ms(body.get("expires_ms"))
    if expires is not None and expires <= now_ms:
        raise BadSubscription("expires_ms is in the past: the subscription has expired")
    return Subscription(address, endpoint, p256dh, auth, expires, now_ms)


def subscription_from_json(data: Any, hosts: PushHosts) -> Subscription:
    """A stored subscription (:meth:`Subscription.to_json`); BadSubscription if damaged."""
    if not isinstance(data, dict) or not isinstance(data.get("address"), str):
        raise BadSubscription("not a stored subscription")
    body = {
        "subscription": {
            "endpoint": data.get("endpoint"),
            "keys": {"p256dh": data.get("p256dh"), "auth": data.get("auth")},
        },
        "expires_ms": data.get("expires_ms"),
    }
    updated = data.get("updated_ms")
    if not isinstance(updated, int):
        raise BadSubscription("stored subscription has no updated_ms")
    return replace(parse_subscribe(data["address"], body, hosts, now_ms=-1), updated_ms=updated)


def _expires_ms(value: Any) -> int | None:
    """``expires_ms``: null, or unix ms (a browser's ``expirationTime`` may have a fraction)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isfinite(value):
        value = math.floor(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_EXPIRES_MS:
        raise BadSubscription("expires_ms must be null or a non-negative number of unix ms")
    return value


def _b64u_field(keys: dict[str, Any], name: str) -> bytes:
    value = keys.get(name)
    if not isinstance(value, str):
        raise BadSubscription(f"subscription.keys.{name} must be a base64url string")
    try:
        return b64u_decode(value.rstrip("="))
    except ValueError as err:
        raise BadSubscription(f"subscription.keys.{name} is not base64url: {err}") from err
