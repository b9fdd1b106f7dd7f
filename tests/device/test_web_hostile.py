"""``callbox web`` on a hostile LAN (issue 15, finding 3).

Idle and half-sent connections, TLS clients that never handshake, paths outside the page:
against the ``callbox web`` process with its default limits, and against the server object
with short ones.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from support import Certificate, need, wait_for
from web_helpers import INDEX, MAIN_JS, WebProcess, WebProcesses, get, make_root

from device.cli._web import DEFAULT_ROOT
from device.phone import PageFiles, PageServer, WebLimits, WebServer

TIMEOUT = 15.0
DEFAULTS = WebLimits()
HALF_SENT = b"GET / HTTP/1.1\r\nHost: unit\r\n"  # the blank line that ends the head never comes
FLOOD = 400

StartWeb = Callable[..., Awaitable[WebProcess]]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A built page beside what web/ holds in a source tree and must not be served."""
    root = make_root(tmp_path)
    (root / "package.json").write_text('{"name": "callbox-web"}\n')
    (root / "package-lock.json").write_text("{}\n")
    (root / "node_modules" / "mqtt").mkdir(parents=True)
    (root / "node_modules" / "mqtt" / "package.json").write_text("{}\n")
    (root / "node_modules" / "mqtt" / "index.js").write_text("export {};\n")
    (root / "src").mkdir()
    (root / "src" / "main.js").write_text("import 'mqtt';\n")
    (root / "dist" / "nested").mkdir()
    (root / "dist" / "nested" / "x.js").write_text("export {};\n")
    (root / "dist" / ".secret.js").write_text("export {};\n")
    (root / "dist" / "notes.txt").write_text("notes\n")
    (root / "icons").mkdir()
    (root / "icons" / "icon-192.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "dist" / "link.js").symlink_to(root / "src" / "main.js")
    return root


@pytest.fixture
async def start_web() -> AsyncIterator[StartWeb]:
    processes = WebProcesses()
    yield processes.start
    await processes.stop_all()


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the server closes (or resets) the connection within ``timeout`` s."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def fetch(url: str, context: ssl.SSLContext | None = None, timeout: float = TIMEOUT) -> str:
    """The body of ``url``, which must answer 200 within ``timeout`` s."""
    status, _, body = await asyncio.to_thread(get, url, context, timeout)
    assert status == 200, url
    return body


# only the built page ----------------------------------------------------------------------------


NOT_SERVED = [
    "/package.json",
    "/package-lock.json",
    "/node_modules/mqtt/package.json",
    "/node_modules/mqtt/index.js",
    "/node_modules/",
    "/node_modules",
    "/src/main.js",
    "/src/",
    "/dist/",
    "/dist",
    "/icons/",
    "/dist/nested/x.js",
    "/dist/.secret.js",
    "/dist/notes.txt",
    "/dist/link.js",
    "/dist/../package.json",
    "/dist/%2e%2e/package.json",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/index.html/",
    "//package.json",
    "/nothing.js",
]


async def test_only_the_built_page_is_served_no_listings(root: Path, start_web: StartWeb) -> None:
    web = await start_web("--root", root, "--listen", "127.0.0.1:0")
    assert await fetch(f"{web.url}/") == INDEX
    assert await fetch(f"{web.url}/index.html") == INDEX
    assert await fetch(f"{web.url}/dist/main.js") == MAIN_JS
    assert await fetch(f"{web.url}/style.css?v=2") == "body { margin: 0 }\n"
    status, kind, _ = await asyncio.to_thread(get, f"{web.url}/icons/icon-192.png")
    assert (status, kind) == (200, "image/png")

    for path in NOT_SERVED:
        raw = await raw_get(web.port, path)
        assert raw.startswith(b"HTTP/1.1 404 Not Found\r\n"), (path, raw[:200])
        assert b"Index of" not in raw and b"callbox-web" not in raw, path


async def test_the_installable_page_files_are_served_with_their_types(
    root: Path, start_web: StartWeb
) -> None:
    """The manifest, and the service worker at the root (its scope) from dist/sw.js, no-cache."""
    (root / "manifest.webmanifest").write_text('{"name": "callbox"}\n')
    (root / "dist" / "sw.js").write_text("self.addEventListener('push', () => {});\n")
    web = await start_web("--root", root, "--listen", "127.0.0.1:0")
    expected = {
        "/manifest.webmanifest": "application/manifest+json",
        "/sw.js": "text/javascript",
        "/icons/icon-192.png": "image/png",
    }
    for path, kind in expected.items():
        head = (await raw_get(web.port, path)).partition(b"\r\n\r\n")[0]
        lines = head.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 200 OK", (path, lines[0])
        assert f"Content-Type: {kind}" in lines, (path, lines)
        assert "Cache-Control: no-cache" in lines, (path, lines)
    assert await fetch(f"{web.url}/sw.js") == "self.addEventListener('push', () => {});\n"
    for path in ("/sw.js/", "/dist/sw.js/", "/icons/sw.js"):
        assert (await raw_get(web.port, path)).startswith(b"HTTP/1.1 404 Not Found\r\n"), path


async def raw_get(port: int, target: str, method: str = "GET") -> bytes:
    """Send exactly ``METHOD target`` (no client-side normalisation); the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = f"{method} {target} HTTP/1.1\r\nHost: unit\r\nConnection: close\r\n\r\n"
        writer.write(head.encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()


async def test_the_default_root_serves_the_page_not_its_npm_packages(
    start_web: StartWeb,
) -> None:
    need((DEFAULT_ROOT / "dist" / "main.js").is_file(), "the built page web/dist/main.js")
    need((DEFAULT_ROOT / "node_modules").is_dir(), "web/node_modules (npm ci)")
    web = await start_web("--listen", "127.0.0.1:0")  # the default --root: web/ of this tree
    assert "callbox phone" in await fetch(f"{web.url}/")
    assert (await raw_get(web.port, "/dist/main.js")).startswith(b"HTTP/1.1 200 OK\r\n")
    for path in ("/package.json", "/node_modules/mqtt/package.json", "/node_modules/", "/src/"):
        assert (await raw_get(web.port, path)).startswith(b"HTTP/1.1 404 "), path


# idle, half-sent, never handshaking -------------------------------------------------------------


async def test_an_idle_tls_connection_does_not_block_the_page(
    root: Path, certificate: Certificate, start_web: StartWeb
) -> None:
    web = await start_web(
        "--root", root, "--listen", "127.0.0.1:0",
        "--tls-cert", certificate.cert, "--tls-key", certificate.key,
    )  # fmt: skip
    trusting = ssl.create_default_context(cafile=str(certificate.cert))
    _idle_reader, idle = await asyncio.open_connection("127.0.0.1", web.port)  # says nothing
    try:
        # Well inside the handshake timeout: served beside the idle one, not after it.
        timeout = DEFAULTS.handshake_timeout_s / 2
        assert await fetch(f"{web.url}/", trusting, timeout=timeout) == INDEX
        assert await fetch(f"{web.url}/dist/main.js", trusting, timeout=timeout) == MAIN_JS
    finally:
        idle.close()


async def test_a_client_that_never_handshakes_is_dropped_after_the_timeout(
    root: Path, certificate: Certificate, start_web: StartWeb
) -> None:
    web = await start_web(
        "--root", root, "--listen", "127.0.0.1:0",
        "--tls-cert", certificate.cert, "--tls-key", certificate.key,
    )  # fmt: skip
    trusting = ssl.create_default_context(cafile=str(certificate.cert))
    started = time.monotonic()
    idle_reader, idle = await asyncio.open_connection("127.0.0.1", web.port)
    try:
        dropped = asyncio.create_task(closed_by_server(idle_reader, TIMEOUT))
        assert await fetch(f"{web.url}/", trusting) == INDEX  # others are served meanwhile
        assert await dropped, "the idle client was never dropped"
        waited = time.monotonic() - started
        assert DEFAULTS.handshake_timeout_s - 0.5 <= waited <= DEFAULTS.handshake_timeout_s + 3
    finally:
        idle.close()


async def test_half_sent_requests_take_no_thread_each_and_are_closed_after_the_header_timeout(
    root: Path, start_web: StartWeb
) -> None:
    web = await start_web("--root", root, "--listen", "127.0.0.1:0")
    threads = web.threads()
    started = time.monotonic()
    flood = [await asyncio.open_connection("127.0.0.1", web.port) for _ in range(FLOOD)]
    for _, writer in flood:
        writer.write(HALF_SENT)
    await asyncio.gather(*(writer.drain() for _, writer in flood))
    try:
        # Accepted in order: once this one is answered, the server has seen all 400.
        assert await fetch(f"{web.url}/") == INDEX
        assert web.threads() <= threads + 8, "a thread per connection"  # + the file readers
        closed = await asyncio.gather(
            *(closed_by_server(reader, DEFAULTS.header_timeout_s + 5) for reader, _ in flood)
        )
        assert all(closed), f"{closed.count(False)} half-sent requests still open"
        assert time.monotonic() - started <= DEFAULTS.header_timeout_s + 5
        assert web.threads() <= threads + 8
        assert await fetch(f"{web.url}/") == INDEX
    finally:
        for _, writer in flood:
            writer.close()


# the server object, with short limits ----------------------------------------------------------


SHORT = WebLimits(
    handshake_timeout_s=0.5,
    header_timeout_s=0.5,
    idle_timeout_s=0.5,
    send_timeout_s=0.5,
    max_connections=8,
)


@pytest.fixture
async def server(root: Path) -> AsyncIterator[PageServer]:
    server = PageServer(PageFiles(root), limits=SHORT)
    await server.start()
    yield server
    await server.close()


async def test_connections_stay_under_the_cap_and_the_newest_is_served(
    server: PageServer,
) -> None:
    flood = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(50)]
    for _, writer in flood:
        writer.write(HALF_SENT)
    tasks_before = len(asyncio.all_tasks())
    assert await fetch(f"{server.url}/") == INDEX  # pushes out the oldest waiting one
    assert server.connections <= SHORT.max_connections
    assert len(asyncio.all_tasks()) <= tasks_before + 2 * SHORT.max_connections
    closed = await asyncio.gather(*(closed_by_server(reader, TIMEOUT) for reader, _ in flood))
    assert all(closed)
    assert server.stats.evicted >= 50 - SHORT.max_connections
    assert server.stats.timed_out >= 1
    assert server.connections == 0
    for _, writer in flood:
        writer.close()


async def test_a_kept_alive_connection_is_closed_when_idle(server: PageServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = b"GET /dist/main.js HTTP/1.1\r\nHost: unit\r\n\r\n"
    writer.write(request + request)  # two requests on one connection
    await writer.drain()
    answers = b""
    while answers.count(MAIN_JS.encode()) < 2:
        answers += await asyncio.wait_for(reader.read(65536), TIMEOUT)
    assert answers.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert await closed_by_server(reader, SHORT.idle_timeout_s + 2)
    writer.close()


async def test_head_answers_the_headers_only(server: PageServer) -> None:
    answer = await raw_get(server.port, "/dist/main.js", method="HEAD")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert f"Content-Length: {len(MAIN_JS)}".encode() in head
    assert b"X-Frame-Options: DENY" in head and b"Cache-Control: no-cache" in head
    assert body == b""


async def test_a_client_that_never_reads_its_answer_is_dropped(root: Path) -> None:
    (root / "dist" / "big.js").write_bytes(b"/*" + b"x" * 16_000_000 + b"*/")
    server = PageServer(PageFiles(root), limits=SHORT)
    await server.start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /dist/big.js HTTP/1.1\r\nHost: unit\r\n\r\n")
        await wait_for(lambda: server.stats.timed_out, "the send timeout")
        assert server.connections == 0
        sock.close()
        assert await fetch(f"{server.url}/") == INDEX
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: unit\r\nContent-Length: 0\r\n\r\n", b"405"),
        (b"DELETE /index.html HTTP/1.1\r\nHost: unit\r\n\r\n", b"405"),
        (b"GET / HTTP/1.1\r\nHost: unit\r\nContent-Length: 5\r\n\r\nhello", b"400"),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"400"),
        (b"GET /\r\n\r\n", b"400"),
        (b"GET / HTTP/2.0\r\n\r\n", b"400"),
        (b"GET http://evil/ HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /%ff HTTP/1.1\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", b"400"),
        (b"GET /\xff HTTP/1.1\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * DEFAULTS.max_header_bytes + b"\r\n\r\n", b"431"),
    ],
)
async def test_bad_requests_get_a_clear_status_and_the_server_goes_on(
    server: PageServer, request_bytes: bytes, status: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request_bytes)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert await fetch(f"{server.url}/") == INDEX
    assert server.stats.bad_requests == 1


async def test_close_ends_every_connection_and_is_idempotent(root: Path) -> None:
    server = PageServer(PageFiles(root))  # the default, long timeouts
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(HALF_SENT)
    await wait_for(lambda: server.connections == 1, "the connection")
    await asyncio.wait_for(server.close(), TIMEOUT)
    assert await closed_by_server(reader, TIMEOUT)
    await server.close()
    writer.close()


def test_the_threaded_server_for_synchronous_callers(root: Path) -> None:
    server = WebServer(root, extra_files=("src/main.js",))
    try:
        assert get(f"{server.url}/")[2] == INDEX
        assert get(f"{server.url}/src/main.js")[0] == 200  # asked for by name
        assert get(f"{server.url}/package.json")[0] == 404
    finally:
        server.close()
        server.close()
    assert not any(thread.name == "web-server" for thread in threading.enumerate())


async def test_an_unchanged_file_is_answered_not_modified(server: PageServer, root: Path) -> None:
    first = await raw_get(server.port, "/dist/main.js")
    etag = next(
        line.split(b": ", 1)[1] for line in first.split(b"\r\n") if line.startswith(b"ETag: ")
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /dist/main.js HTTP/1.1\r\nIf-None-Match: " + etag + b"\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 304 Not Modified\r\n")
    assert not await asyncio.wait_for(reader.read(1), SHORT.idle_timeout_s + 2)  # no body
    writer.close()

    (root / "dist" / "main.js").write_text("export const phone = 'new';\n")
    conditional = b"GET /dist/main.js HTTP/1.1\r\nConnection: close\r\nIf-None-Match: " + etag
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(conditional + b"\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), TIMEOUT)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"'new';\n")
    writer.close()
