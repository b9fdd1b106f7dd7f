"""TURN relay credentials: minted per call with the site's shared secret, checked on arrival.

The site's coturn runs with ``use-auth-secret`` (``callbox turn config``): it accepts any
username ``"<unix expiry>:<address>"`` whose password is ``base64(HMAC-SHA1(secret,
username))`` and whose expiry has not passed (the "TURN REST API" scheme of
draft-uberti-behave-turn-rest). A door station that holds the secret mints such a pair for
each callee and sends it inside the signed, encrypted invite (``ice_servers``); the callee
uses it for that call only. Nothing here talks to the network.

Expiries are rounded up to ``granularity_s`` so credentials minted for the same address in
the same window are equal: a door's prepared offers (made while idle) still match the
settings of the call that takes them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

from services.media.errors import MediaError

_log = logging.getLogger(__name__)

MAX_SERVERS = 4
"""At most this many ``ice_servers`` entries in an invite."""
MAX_URLS = 4
"""At most this many URLs in one entry."""
MAX_FIELD_CHARS = 256
"""The longest URL, username or credential accepted from an invite."""
SECRET_BYTES = 32
"""The size of a shared secret ``callbox turn secret`` makes (256 bits)."""
MIN_SECRET_CHARS = 16

_URL = re.compile(
    r"^(?P<scheme>stun|turn|turns):(?P<host>[A-Za-z0-9.-]{1,253})"
    r"(?::(?P<port>[0-9]{1,5}))?(?:\?transport=(?P<transport>udp|tcp))?$"
)


@dataclass(frozen=True)
class IceServerEntry:
    """One STUN or TURN server with its credentials (None for STUN)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The invite's form: ``{"urls": [...], "username": ..., "credential": ...}``."""
        entry: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            entry["username"] = self.username
        if self.credential is not None:
            entry["credential"] = self.credential
        return entry

    def describe(self) -> str:
        """The entry's first URL (what a log line names; never the credential)."""
        return self.urls[0] if self.urls else "(no URL)"


def rest_password(secret: str, username: str) -> str:
    """The coturn ``use-auth-secret`` password of ``username``: base64(HMAC-SHA1(secret, it))."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def credential_expiry(username: str | None) -> int | None:
    """The unix expiry a TURN REST username starts with (``"<expiry>:<address>"``), or None."""
    if not username:
        return None
    head, _, _ = username.partition(":")
    return int(head) if head.isdigit() else None


def new_secret() -> str:
    """A fresh shared secret for the site's coturn (URL-safe text, 256 bits)."""
    return secrets.token_urlsafe(SECRET_BYTES)


@dataclass(frozen=True)
class TurnMinter:
    """Mints short-lived TURN credentials for the site's relay (held by units with the secret)."""

    urls: tuple[str, ...]
    secret: str
    ttl_s: int = 86400
    granularity_s: int = 300

    def __post_init__(self) -> None:
        if not self.urls:
            raise MediaError("turn: at least one turn: or turns: URL is needed")
        for url in self.urls:
            problem = url_problem(url)
            if problem:
                raise MediaError(f"turn URL {url!r}: {problem}")
            if url.startswith("stun:"):
                raise MediaError(f"turn URL {url!r}: not a turn: or turns: URL")
        if len(self.secret) < MIN_SECRET_CHARS:
            raise MediaError(f"the TURN secret is too short ({len(self.secret)} characters)")
        if self.ttl_s < 60:
            raise MediaError(f"turn credential lifetime {self.ttl_s} s is under 60 s")

    def mint(self, address: str, now: float, granularity_s: int | None = None) -> IceServerEntry:
        """Credentials for ``address`` valid at least ``ttl_s`` from ``now`` (unix seconds).

        The expiry is rounded up to ``granularity_s`` (default: the minter's): equal
        credentials for every call in one window.
        """
        step = granularity_s or self.granularity_s
        expiry = int(math.ceil((now + self.ttl_s) / step) * step)
        username = f"{expiry}:{address}"
        return IceServerEntry(self.urls, username, rest_password(self.secret, username))


def url_problem(url: str) -> str:
    """Why ``url`` is not a usable stun:, turn: or turns: URL ("" when it is)."""
    if len(url) > MAX_FIELD_CHARS:
        return f"longer than {MAX_FIELD_CHARS} characters"
    match = _URL.match(url)
    if match is None:
        return "not a stun:, turn: or turns: URL (scheme:host[:port][?transport=udp|tcp])"
    port = match.group("port")
    if port is not None and not 1 <= int(port) <= 65535:
        return "port must be 1 to 65535"
    if match.group("scheme") == "turns" and match.group("transport") == "udp":
        return "turns: runs over TCP (?transport=tcp)"
    return ""


def parse_ice_servers(raw: object, now: float) -> tuple[list[IceServerEntry], list[str]]:
    """The usable entries of an invite's ``ice_servers`` and why each other one was refused.

    Only stun:, turn: and turns: URLs, at most ``MAX_SERVERS`` entries of ``MAX_URLS`` URLs,
    fields of at most ``MAX_FIELD_CHARS``; TURN entries need a username and a credential
    that has not expired. A refused entry never refuses the call: the caller logs it.
    """
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [f"ice_servers is a {type(raw).__name__}, not a list"]
    usable: list[IceServerEntry] = []
    problems: list[str] = []
    if len(raw) > MAX_SERVERS:
        problems.append(f"ice_servers has {len(raw)} entries: only the first {MAX_SERVERS} used")
    for index, item in enumerate(raw[:MAX_SERVERS]):
        try:
            usable.append(_parse_entry(item, now))
        except MediaError as err:
            problems.append(f"ice_servers[{index}]: {err}")
    return usable, problems


def _parse_entry(item: object, now: float) -> IceServerEntry:
    if not isinstance(item, dict):
        raise MediaError(f"is a {type(item).__name__}, not an object")
    urls = item.get("urls")
    if not isinstance(urls, list) or not urls or len(urls) > MAX_URLS:
        raise MediaError(f"urls must be a list of 1 to {MAX_URLS} URLs")
    for url in urls:
        problem = url_problem(url) if isinstance(url, str) else "not a string"
        if problem:
            raise MediaError(f"URL {str(url)[:80]!r}: {problem}")
    username, credential = item.get("username"), item.get("credential")
    for name, value in (("username", username), ("credential", credential)):
        if value is not None and (not isinstance(value, str) or len(value) > MAX_FIELD_CHARS):
            raise MediaError(f"{name} must be text of at most {MAX_FIELD_CHARS} characters")
    entry = IceServerEntry(tuple(urls), username, credential)
    if any(not u.startswith("stun:") for u in urls):
        if not username or not credential:
            raise MediaError(f"{entry.describe()}: a TURN server needs a username and credential")
        expiry = credential_expiry(username)
        if expiry is not None and expiry <= now:
            raise MediaError(
                f"{entry.describe()}: the TURN credentials expired {int(now - expiry)} s ago"
            )
    return entry
