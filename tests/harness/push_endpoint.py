"""A local Web Push service on a free loopback port that checks what a real one checks.

Each request must carry ``Authorization: vapid t=<jwt>, k=<key>`` (RFC 8292) whose ``k`` is the
site's public key, whose ES256 signature verifies with it, whose ``aud`` is this service's
origin, whose ``exp`` is in the future and at most 24 h away and which names a ``sub``; a
``TTL``, ``Content-Encoding: aes128gcm``, a ``Topic`` (if any) of at most 32 base64url characters
(RFC 8030) and an RFC 8291 body that decrypts (http_ece) with the subscriber's private key and
auth secret. A request that fails is answered 400/401/403 and
recorded in :attr:`PushEndpoint.rejected`; one that passes in :attr:`PushEndpoint.received`.
A subscriber can be told to answer 404/410/429 instead, or to take its time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid.jwt import decode as decode_jwt

from services.signaling.identity import b64u_encode

_AUTH = re.compile(r"vapid\s+(.*)", re.IGNORECASE)
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
MAX_EXP_S = 24 * 3600


@dataclass
class Subscriber:
    """One browser's subscription at this push service: its keys and how to answer."""

    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    status: int = 201
    delay_s: float = 0.0
    redirect_to: str = ""
    """Answer 307 to this URL instead (a push service must never be followed anywhere)."""

    def subscription(self) -> dict[str, Any]:
        """``PushSubscription.toJSON()`` without ``expirationTime``."""
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": b64u_encode(point), "auth": b64u_encode(self.auth)},
        }

    def subscribe_body(self, expires_ms: int | None = None) -> dict[str, Any]:
        """The body of ``push_subscribe`` for this subscription."""
        return {"subscription": self.subscription(), "expires_ms": expires_ms}


@dataclass(frozen=True)
class Delivery:
    """A push the service accepted: to whom, the decrypted payload, headers, when."""

    token: str
    payload: dict[str, Any]
    headers: dict[str, str]
    claims: dict[str, Any]
    at: float
    plain_bytes: int = 0
    """The decrypted payload's length in bytes."""


@dataclass
class PushEndpoint:
    """The push service; ``application_server_key`` is the site's VAPID public key (b64u)."""

    application_server_key: str
    subscribers: dict[str, Subscriber] = field(default_factory=dict)
    received: list[Delivery] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    answered: list[tuple[str, int]] = field(default_factory=list)
    """Every request by subscriber token and the status it got (accepted or not)."""
    requests_started: list[tuple[str, float]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``: the ``aud`` a VAPID token for it must name."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def host_entry(self) -> str:
        """This service as a ``[push] hosts`` entry."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application(client_max_size=8192)
        app.router.add_post("/push/{token}", self._push)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def new_subscriber(self) -> Subscriber:
        """A browser subscribing: fresh P-256 keys and auth secret, its own endpoint URL."""
        token = b64u_encode(os.urandom(12))
        sub = Subscriber(
            token=token,
            endpoint=f"{self.origin}/push/{token}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth=os.urandom(16),
        )
        self.subscribers[token] = sub
        return sub

    def deliveries(self, sub: Subscriber) -> list[Delivery]:
        """What ``sub`` received."""
        return [d for d in self.received if d.token == sub.token]

    async def _push(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        self.requests_started.append((token, time.monotonic()))
        sub = self.subscribers.get(token)
        body = await request.read()
        if sub is None:
            return self._answer(token, 404, "no such subscription", refused=True)
        if sub.redirect_to:
            self.answered.append((token, 307))
            return web.Response(status=307, headers={"Location": sub.redirect_to})
        if sub.delay_s:
            await asyncio.sleep(sub.delay_s)  # a slow push service: the input, not a wait
        try:
            claims = self._check_vapid(request.headers.get("Authorization", ""))
            headers = self._check_headers(request)
        except _Refused as err:
            return self._answer(token, err.status, str(err), refused=True)
        try:
            plain = http_ece.decrypt(
                body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm"
            )
            payload = json.loads(plain)
        except (ValueError, TypeError, http_ece.ECEException) as err:
            return self._answer(token, 400, f"body does not decrypt: {err}", refused=True)
        if sub.status >= 300:
            return self._answer(token, sub.status, "told to answer so")
        delivery = Delivery(token, payload, headers, claims, time.monotonic(), len(plain))
        self.received.append(delivery)
        return self._answer(token, 201, "")

    def _answer(
        self, token: str, status: int, reason: str, *, refused: bool = False
    ) -> web.Response:
        self.answered.append((token, status))
        if refused:
            self.rejected.append(reason)
        return web.Response(status=status, text=reason)

    def _check_vapid(self, header: str) -> dict[str, Any]:
        match = _AUTH.fullmatch(header.strip())
        if match is None:
            raise _Refused(401, f"Authorization is not 'vapid t=..., k=...': {header[:40]!r}")
        parts = dict(
            part.strip().split("=", 1) for part in match.group(1).split(",") if "=" in part
        )
        token, key = parts.get("t", ""), parts.get("k", "")
        if key != self.application_server_key:
            raise _Refused(403, "k is not the application server key of the subscription")
        try:
            claims: dict[str, Any] = decode_jwt(token, key)
        except InvalidSignature as err:
            raise _Refused(401, f"the VAPID token does not verify with k: {err!r}") from err
        header_json = json.loads(_b64u_decode(token.split(".")[0]))
        if header_json.get("alg") != "ES256":
            raise _Refused(401, f"VAPID alg {header_json.get('alg')!r} is not ES256")
        now = time.time()
        if claims.get("aud") != self.origin:
            raise _Refused(401, f"aud {claims.get('aud')!r} is not {self.origin}")
        exp = claims.get("exp")
        if not isinstance(exp, int) or not now < exp <= now + MAX_EXP_S:
            raise _Refused(401, f"exp {exp!r} is not in the next 24 h")
        if not claims.get("sub"):
            raise _Refused(401, "no sub claim")
        return claims

    def _check_headers(self, request: web.Request) -> dict[str, str]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if headers.get("content-encoding") != "aes128gcm":
            raise _Refused(400, f"Content-Encoding {headers.get('content-encoding')!r}")
        if not headers.get("ttl", "").isdigit():
            raise _Refused(400, f"TTL {headers.get('ttl')!r} is not a number of seconds")
        if headers.get("urgency", "normal") not in ("very-low", "low", "normal", "high"):
            raise _Refused(400, f"Urgency {headers.get('urgency')!r}")
        if "topic" in headers and not _TOPIC.fullmatch(headers["topic"]):
            raise _Refused(400, f"Topic {headers['topic']!r} is not 1-32 base64url characters")
        return headers


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
