"""The browser phone's page over HTTP(S) on asyncio, safe to face a hostile LAN.

Every connection is a task of one event loop (no thread per connection) and lives under
deadlines: the TLS handshake, the first request head, the idle time between requests on a
kept-alive connection and every write have their own timeout, so a client that connects and
says nothing, or sends half a request, is dropped within seconds. At most
``max_connections`` are open at once: a new one pushes out the oldest connection that is
still waiting for its handshake or request, or is refused when every connection is busy
answering. Only GET and HEAD of the files on the allow-list (`PageFiles`) are answered;
anything else is 404, 405 or 400, and a request with a body is refused.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import logging
import os
import ssl
import time
import urllib.parse
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from device.phone._pagefiles import PageFile, PageFiles
from hal.errors import CallboxError

__all__ = ["PageServer", "WebLimits", "WebServerError", "WebStats"]

_log = logging.getLogger(__name__)

SECURITY_HEADERS: Final = (
    ("Cache-Control", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
"""On every answer: a phone picks up a new firmware's page at once; no framing, no sniffing."""

_REASONS: Final = {
    200: "OK",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}
_CAP_WARNING_EVERY_S: Final = 60.0
_T = TypeVar("_T")


class WebServerError(CallboxError):
    """The web server could not start (bad directory, port in use, bad certificate)."""


@dataclass(frozen=True)
class WebLimits:
    """Timeouts and caps of the page server; the defaults are for a unit on a LAN."""

    handshake_timeout_s: float = 5.0
    """A TLS client must complete its handshake within this time after connecting."""
    header_timeout_s: float = 5.0
    """The first request head must be complete within this time (after the handshake)."""
    idle_timeout_s: float = 15.0
    """A kept-alive connection must send its next complete request head within this time."""
    send_timeout_s: float = 10.0
    """A client must take each answer within this time (one that never reads is dropped)."""
    max_connections: int = 64
    """Connections open at once, handshaking and waiting ones included."""
    max_header_bytes: int = 8192
    """Longest request head (request line and headers)."""
    max_requests_per_connection: int = 100
    """After this many answers a kept-alive connection is closed."""


@dataclass
class WebStats:
    """What the server did, for the log and the tests."""

    served: int = 0
    not_found: int = 0
    bad_requests: int = 0
    timed_out: int = 0
    """Connections dropped by a handshake, header, idle or send timeout."""
    evicted: int = 0
    """Waiting connections pushed out by a new one at the connection cap."""
    refused: int = 0
    """New connections closed at once: the cap was reached and none could be pushed out."""


class _State(enum.Enum):
    WAITING = "waiting"  # for the handshake, a request head, or the next request
    ANSWERING = "answering"


@dataclass(eq=False)
class _Connection:
    peer: str
    writer: asyncio.StreamWriter
    state: _State = _State.WAITING
    opened: float = field(default_factory=time.monotonic)

    def abort(self) -> None:
        """Drop the connection at once: its task sees EOF or a reset and ends."""
        self.writer.transport.abort()


class _BadRequestError(Exception):
    """The request cannot be answered; the status and the reason for the log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    keep_alive: bool
    if_none_match: str


class PageServer:
    """Serves the allow-listed files of a built web/ directory on ``host:port`` (asyncio)."""

    def __init__(
        self,
        files: PageFiles,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        limits: WebLimits | None = None,
    ) -> None:
        """Serve `files` on `host:port` (0 = a free port) once `start` is called."""
        self.files = files
        self.host = host
        self.port = port
        self.limits = limits or WebLimits()
        self.stats = WebStats()
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        """The connections that count against the cap (not those pushed out)."""
        self._tasks: set[asyncio.Task[None]] = set()
        """Every connection's task until it has closed, pushed-out ones included."""
        self._last_cap_warning = -_CAP_WARNING_EVERY_S
        self._lock = asyncio.Lock()

    @property
    def scheme(self) -> str:
        """``https`` with a TLS context, else ``http``."""
        return "https" if self._tls is not None else "http"

    @property
    def url(self) -> str:
        """The base URL, e.g. ``https://0.0.0.0:8443``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    async def start(self) -> None:
        """Listen; WebServerError when the address cannot be bound."""
        async with self._lock:
            if self._server is not None:
                return
            try:
                self._server = await asyncio.start_server(
                    self._accept, self.host, self.port, limit=self.limits.max_header_bytes
                )
            except OSError as err:
                reason = os.strerror(err.errno) if err.errno else str(err)
                raise WebServerError(f"cannot listen on {self.host}:{self.port}: {reason}") from err
            self.port = self._server.sockets[0].getsockname()[1]
            _log.info("serving %s on %s", self.files.root, self.url)

    async def close(self) -> None:
        """Stop listening and end every connection; idempotent."""
        async with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            server.close()
            for connection in self._connections.values():
                connection.abort()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    # connections ------------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection, from accept to close (the task asyncio made for it)."""
        task = asyncio.current_task()
        assert task is not None
        peer = _peer(writer)
        if not self._admit(peer):
            writer.transport.abort()
            return
        connection = _Connection(peer, writer)
        self._connections[task] = connection
        self._tasks.add(task)
        clean = False
        try:
            # Nothing may be awaited before the TLS upgrade: the ClientHello must reach it.
            if self._tls is not None:
                await self._handshake(writer)
            await self._serve(reader, writer, connection)
            clean = True
        except TimeoutError as err:
            self.stats.timed_out += 1
            _log.debug("web %s: dropped: %s", peer, err)
        except (OSError, asyncio.IncompleteReadError) as err:  # reset, TLS alert, EOF
            _log.debug("web %s: connection ended: %s", peer, err)
        except Exception:  # noqa: BLE001 - one connection's failure must not stop the server
            _log.exception("web %s: failed", peer)
        finally:
            self._connections.pop(task, None)
            try:
                await self._finish(writer, clean)
            finally:
                self._tasks.discard(task)

    async def _finish(self, writer: asyncio.StreamWriter, clean: bool) -> None:
        """Close after a clean end (what is unsent goes out first, within the send timeout).

        Abort at once otherwise, and when the client does not take the rest in time: a plain
        close would wait for it forever.
        """
        if clean:
            writer.close()
            try:
                await _within(writer.wait_closed(), self.limits.send_timeout_s, "close")
                return
            except (TimeoutError, OSError) as err:
                _log.debug("web: %s; aborting the connection", err)
        writer.transport.abort()

    def _admit(self, peer: str) -> bool:
        """Make room for one more connection; False when the new one must be refused."""
        if len(self._connections) < self.limits.max_connections:
            return True
        self._warn_cap()
        waiting = [c for c in self._connections.values() if c.state is _State.WAITING]
        if not waiting:
            self.stats.refused += 1
            _log.debug("web %s: refused: %d connections busy", peer, len(self._connections))
            return False
        oldest = min(waiting, key=lambda c: c.opened)
        oldest.abort()
        for task, connection in list(self._connections.items()):
            if connection is oldest:
                del self._connections[task]  # its task ends when it next runs
        self.stats.evicted += 1
        _log.debug("web %s: pushed out by %s at the connection cap", oldest.peer, peer)
        return True

    def _warn_cap(self) -> None:
        now = time.monotonic()
        if now - self._last_cap_warning >= _CAP_WARNING_EVERY_S:
            self._last_cap_warning = now
            _log.warning(
                "web: %d connections open (the cap): dropping the oldest waiting ones; "
                "stats so far: %s",
                self.limits.max_connections,
                self.stats,
            )

    async def _handshake(self, writer: asyncio.StreamWriter) -> None:
        """The TLS handshake under its timeout (TimeoutError names it)."""
        assert self._tls is not None
        timeout = self.limits.handshake_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await writer.start_tls(self._tls, ssl_handshake_timeout=timeout)
        except TimeoutError as err:
            raise TimeoutError(f"no TLS handshake within {timeout:g} s") from err
        except ConnectionAbortedError as err:  # asyncio's own handshake timeout
            raise TimeoutError(f"no TLS handshake within {timeout:g} s: {err}") from err

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: _Connection
    ) -> None:
        """Answer requests on one connection until it closes, misbehaves or times out."""
        timeout, what = self.limits.header_timeout_s, "request head"
        for _ in range(self.limits.max_requests_per_connection):
            connection.state = _State.WAITING
            try:
                head = await _within(reader.readuntil(b"\r\n\r\n"), timeout, f"no {what}")
                connection.state = _State.ANSWERING
                request = _parse_head(head)
            except (_BadRequestError, asyncio.LimitOverrunError) as failure:
                err = failure if isinstance(failure, _BadRequestError) else _too_large(self.limits)
                self.stats.bad_requests += 1
                _log.info("web %s: bad request (%d): %s", connection.peer, err.status, err)
                await self._send(writer, _response(err.status, close=True, detail=str(err)))
                return
            keep = await self._answer(writer, request, connection.peer)
            if not keep:
                return
            timeout, what = self.limits.idle_timeout_s, "next request"

    async def _answer(self, writer: asyncio.StreamWriter, request: _Request, peer: str) -> bool:
        """Send the answer to one request; False when the connection must close."""
        name = self.files.allowed(request.path)
        page: PageFile | None = None
        if name is not None:
            try:
                page = await asyncio.to_thread(self.files.read, name)
            except OSError as err:
                _log.error("web: cannot read %s: %s", self.files.root / name, err)
                await self._send(writer, _response(500, close=True))
                return False
        if page is None:
            self.stats.not_found += 1
            _log.debug("web %s: %s %s: not found", peer, request.method, request.path)
            data = _response(404, close=not request.keep_alive, head=request.method == "HEAD")
        else:
            self.stats.served += 1
            _log.debug("web %s: %s %s", peer, request.method, request.path)
            unchanged = page.etag in request.if_none_match.split(", ")
            data = _response(
                304 if unchanged else 200,
                close=not request.keep_alive,
                body=page.content,
                content_type=page.content_type,
                head=request.method == "HEAD" or unchanged,
                etag=page.etag,
            )
        await self._send(writer, data)
        return request.keep_alive

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Write `data` and wait until the client takes it (under the send timeout)."""
        writer.write(data)
        await _within(writer.drain(), self.limits.send_timeout_s, "answer not taken")


async def _within(awaitable: Awaitable[_T], timeout: float, what: str) -> _T:
    """`awaitable`'s result, or TimeoutError "<what> within <timeout> s"."""
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except TimeoutError as err:
        raise TimeoutError(f"{what} within {timeout:g} s") from err


def _too_large(limits: WebLimits) -> _BadRequestError:
    return _BadRequestError(431, f"request head longer than {limits.max_header_bytes} bytes")


def _parse_head(head: bytes) -> _Request:
    """The request of a head ending in CRLF CRLF; _BadRequestError when it is not one we answer."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError as err:
        raise _BadRequestError(400, "request head is not ASCII") from err
    line, *header_lines = text[:-4].split("\r\n")
    parts = line.split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        raise _BadRequestError(400, f"not an HTTP/1.x request line: {line[:80]!r}")
    method, target, version = parts
    headers: dict[str, str] = {}
    for header in header_lines:
        name, colon, value = header.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequestError(400, f"malformed header line {header[:80]!r}")
        headers[name.lower()] = value.strip()
    if method not in ("GET", "HEAD"):
        raise _BadRequestError(405, f"method {method[:20]!r} not allowed")
    if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
        raise _BadRequestError(400, "a GET or HEAD with a body")
    if not target.startswith("/"):
        raise _BadRequestError(400, f"target {target[:80]!r} is not a path")
    try:
        path = urllib.parse.unquote(target.partition("?")[0], errors="strict")
    except UnicodeDecodeError as err:
        raise _BadRequestError(400, f"target {target[:80]!r} is not UTF-8") from err
    connection = headers.get("connection", "").lower()
    keep_alive = version == "HTTP/1.1" and "close" not in connection
    return _Request(method, path, keep_alive, headers.get("if-none-match", ""))


def _response(
    status: int,
    *,
    close: bool,
    body: bytes | None = None,
    content_type: str = "text/plain; charset=utf-8",
    head: bool = False,
    detail: str = "",
    etag: str = "",
) -> bytes:
    """A complete HTTP/1.1 response; an error's body is its status line and `detail`.

    With `head` (HEAD, 304) the headers only, Content-Length still that of the body.
    """
    reason = _REASONS[status]
    if body is None:
        body = f"{status} {reason}{': ' if detail else ''}{detail}\n".encode()
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in SECURITY_HEADERS),
    ]
    if etag:
        lines.append(f"ETag: {etag}")
    if status == 405:
        lines.append("Allow: GET, HEAD")
    if close:
        lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return data if head else data + body


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "a client"
