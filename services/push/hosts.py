"""Where a door may POST a push: the push services' hosts, never the LAN.

A push subscription names an endpoint URL chosen by the phone's browser, and the door POSTs to
it. Without a guard a paired phone could make the door send requests to any host of the LAN
(server-side request forgery). So an endpoint must be ``https://`` to a host on the allow-list
(``[push] hosts``, by default the push services of Chrome, Firefox, Safari and Edge), on port
443 unless the entry names another port; ``http://`` only to a loopback host that is listed
with its port (a test's local push service). No user name or password in the URL.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from services.addresses import is_loopback
from services.push.errors import BadSubscription

DEFAULT_PUSH_HOSTS = (
    "fcm.googleapis.com",
    "updates.push.services.mozilla.com",
    "*.push.apple.com",
    "*.notify.windows.com",
)
"""The push services of Chrome/Android, Firefox, Safari/iOS and Edge/Windows."""

MAX_ENDPOINT_CHARS = 2048
"""The longest endpoint URL accepted (real ones are 150 to 400 characters)."""


@dataclass(frozen=True)
class HostRule:
    """One entry of the allow-list: a host name pattern (``*.`` for subdomains) and a port."""

    pattern: str
    port: int = 443

    @classmethod
    def parse(cls, entry: str) -> HostRule:
        """``host``, ``*.domain`` or ``host:port`` (IPv6 as ``[::1]:port``); ValueError if bad."""
        text = entry.strip().lower()
        if any(c in text for c in "/?#@ ") or not text:
            raise ValueError(_bad_entry(entry))
        host, port = text, 443
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest:
                port = _port(rest.removeprefix(":"), entry)
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            port = _port(port_text, entry)
        if not host or "*" in host.removeprefix("*."):
            raise ValueError(_bad_entry(entry))
        return cls(host, port)

    def matches(self, host: str, port: int) -> bool:
        """True when ``host``:``port`` is what this entry allows."""
        if port != self.port:
            return False
        if self.pattern.startswith("*."):
            return host.endswith(self.pattern[1:]) and fnmatch.fnmatchcase(host, self.pattern)
        return host == self.pattern


def _bad_entry(entry: str) -> str:
    return (
        f"{entry!r} is not a host name, '*.domain' or 'host:port' such as "
        "'fcm.googleapis.com' or '*.push.apple.com' (no scheme, no path)"
    )


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{entry!r}: the port must be 1 to 65535")
    return int(text)


class PushHosts:
    """The allow-list of push service hosts an endpoint URL must match."""

    def __init__(self, entries: Iterable[str] = DEFAULT_PUSH_HOSTS) -> None:
        self.rules = tuple(HostRule.parse(e) for e in entries)

    def check(self, url: str) -> str:
        """Return ``url`` when the door may POST to it; BadSubscription says why not."""
        if not isinstance(url, str) or not url:
            raise BadSubscription("subscription.endpoint must be a non-empty URL string")
        if len(url) > MAX_ENDPOINT_CHARS:
            raise BadSubscription(
                f"subscription.endpoint is {len(url)} characters, over {MAX_ENDPOINT_CHARS}"
            )
        if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
            raise BadSubscription("subscription.endpoint contains spaces or control characters")
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError as err:
            raise BadSubscription(f"subscription.endpoint has a bad port: {err}") from err
        host = (parts.hostname or "").lower()
        if parts.username is not None or parts.password is not None:
            raise BadSubscription("subscription.endpoint must not carry a user name or password")
        if not host:
            raise BadSubscription(f"subscription.endpoint {url!r} names no host")
        if parts.scheme == "http":
            if not is_loopback(host):
                raise BadSubscription(
                    f"subscription.endpoint {url!r}: only https:// (plain http only to a "
                    "loopback host)"
                )
            port = port or 80
        elif parts.scheme == "https":
            port = port or 443
        else:
            raise BadSubscription(f"subscription.endpoint {url!r} is not an https:// URL")
        if not any(rule.matches(host, port) for rule in self.rules):
            allowed = ", ".join(
                r.pattern if r.port == 443 else f"{r.pattern}:{r.port}" for r in self.rules
            )
            raise BadSubscription(
                f"subscription.endpoint host {host}:{port} is not an allowed push service "
                f"([push] hosts: {allowed})"
            )
        return url


def origin_of(url: str) -> str:
    """The origin of ``url`` (``scheme://host[:port]``): the ``aud`` of its VAPID token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
