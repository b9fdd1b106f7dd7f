"""Sending one push: RFC 8291 encryption, a VAPID header signed with the site key, a timeout.

pywebpush's ``webpush_async`` encrypts the payload to the subscription's keys (aes128gcm) and
signs the VAPID token (``aud`` the endpoint's origin, ``exp`` 12 h ahead, ``sub`` the site's
contact); this module adds ``Urgency: high``, the TTL, the RFC 8030 ``Topic`` when given (a
push service replaces an undelivered push of the same topic), one shared aiohttp session, a timeout
per push, no redirects (a push service that redirects is not followed anywhere), and turns the
push service's answer into an :class:`Outcome`. It records when the request left
(``sent_at``, time.monotonic, when its headers were written) for the benchmark.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import aiohttp
from py_vapid import VapidException
from pywebpush import WebPushException, webpush_async

from hal.closing import CloseOnce
from services.push.errors import PushError
from services.push.hosts import origin_of
from services.push.subscription import Subscription
from services.push.vapid import VapidKey

_log = logging.getLogger(__name__)

VAPID_LIFETIME_S = 12 * 3600
"""How long a VAPID token is valid (RFC 8292 allows at most 24 h)."""
DEFAULT_TIMEOUT_S = 5.0


class Outcome(enum.Enum):
    """What became of one push."""

    SENT = "sent"
    """The push service took it (2xx)."""
    GONE = "gone"
    """404/410: the subscription expired or was revoked; the door forgets it."""
    RETRY_LATER = "retry_later"
    """429 or 5xx: the push service is busy or broken; the subscription is kept."""
    REFUSED = "refused"
    """Another 4xx (a bad VAPID key: 401/403, too large: 413) or a redirect; kept, logged."""
    FAILED = "failed"
    """No answer in time, or no connection; kept."""


@dataclass
class PushResult:
    """One push: to whom, what came of it and when (time.monotonic)."""

    address: str
    endpoint: str
    outcome: Outcome = Outcome.FAILED
    status: int | None = None
    detail: str = ""
    started_at: float = field(default_factory=time.monotonic)
    sent_at: float | None = None
    """When the request's headers were written to the push service (None: never sent)."""
    answered_at: float | None = None


_current: contextvars.ContextVar[PushResult | None] = contextvars.ContextVar(
    "push_result", default=None
)


class RedirectRefused(PushError):
    """A push service answered with a redirect, which a door never follows."""


class PushSender:
    """Sends pushes signed with the site's VAPID key through one aiohttp session."""

    def __init__(
        self, vapid: VapidKey, subject: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.vapid = vapid
        self.subject = subject
        self.timeout_s = timeout_s
        self._signer = vapid.signer()
        self._session: aiohttp.ClientSession | None = None
        self._close = CloseOnce()

    async def start(self) -> None:
        """Open the HTTP session (no proxies from the environment, no cookies kept)."""
        if self._session is None:
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(_headers_sent)
            trace.on_request_redirect.append(_redirected)
            self._session = aiohttp.ClientSession(
                trace_configs=[trace],
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )

    async def close(self) -> None:
        """Close the session; idempotent, a second call waits for the first."""
        if not await self._close.begin():
            return
        try:
            if self._session is not None:
                await self._session.close()
                self._session = None
        finally:
            self._close.finish()

    async def send(
        self, sub: Subscription, payload: bytes, ttl_s: int, *, topic: str = ""
    ) -> PushResult:
        """Push ``payload`` to ``sub`` with ``Urgency: high``, ``TTL`` ``ttl_s``, ``Topic``.

        ``topic`` (RFC 8030: at most 32 base64url characters; empty: no ``Topic``) lets the push
        service replace an undelivered push of the same topic with this one. Never raises for
        what the push service does: the result says what happened.
        """
        if self._session is None:
            raise PushError("the push sender is not started")
        result = PushResult(sub.address, sub.endpoint)
        headers: dict[str, str | int | float] = {"Urgency": "high"}
        if topic:
            headers["Topic"] = topic
        token = _current.set(result)
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await webpush_async(
                    sub.info(),
                    data=payload.decode("utf-8"),
                    vapid_private_key=self._signer,
                    vapid_claims=self._claims(sub.endpoint),
                    ttl=max(0, ttl_s),
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                    aiohttp_session=self._session,
                )
            assert isinstance(response, aiohttp.ClientResponse)
            result.status = response.status
            result.outcome = Outcome.SENT
        except WebPushException as err:
            result.status = err.status_code
            result.outcome = _outcome_of(err.status_code)
            result.detail = _first_line(str(err))
        except RedirectRefused as err:
            result.outcome, result.detail = Outcome.REFUSED, str(err)
        except VapidException as err:  # a claim py_vapid refuses ([push] subject is checked)
            result.outcome, result.detail = Outcome.REFUSED, f"VAPID: {err}"
        except TimeoutError:
            result.outcome = Outcome.FAILED
            result.detail = f"no answer within {self.timeout_s:g} s"
        except aiohttp.ClientError as err:
            result.outcome, result.detail = Outcome.FAILED, f"{type(err).__name__}: {err}"
        finally:
            _current.reset(token)
        result.answered_at = time.monotonic()
        return result

    def _claims(self, endpoint: str) -> dict[str, str | int]:
        return {
            "sub": self.subject,
            "aud": origin_of(endpoint),
            "exp": int(time.time()) + VAPID_LIFETIME_S,
        }


def _outcome_of(status: int | None) -> Outcome:
    if status in (404, 410):
        return Outcome.GONE
    if status == 429 or (status is not None and status >= 500):
        return Outcome.RETRY_LATER
    return Outcome.REFUSED if status is not None else Outcome.FAILED


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""


async def _headers_sent(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    result = _current.get()
    if result is not None and result.sent_at is None:
        result.sent_at = time.monotonic()


async def _redirected(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestRedirectParams,
) -> None:
    location = params.response.headers.get("Location", "")
    raise RedirectRefused(
        f"the push service answered {params.response.status} with a redirect to "
        f"{location[:200]!r}; a door never follows one"
    )
