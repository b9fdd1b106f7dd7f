"""The browser phone's page server for ``callbox web``, the simulator and the browser tests.

The server itself is `PageServer` (asyncio, deadlines and a connection cap; only the files of
`PageFiles`' allow-list). ``callbox web`` runs it on its own event loop; `WebServer` runs it in
one thread with its own loop for callers that are not async (the browser tests' session
fixture, the simulator, the benchmark). With ``tls`` it speaks HTTPS only: browsers give
camera and microphone to secure contexts only (https, or http on localhost).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from device.phone._pagefiles import PageFiles
from device.phone._pageserver import PageServer, WebLimits, WebServerError

__all__ = ["WebServer", "WebTls", "check_page", "tls_context"]

_log = logging.getLogger(__name__)

_START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class WebTls:
    """PEM certificate and key for HTTPS."""

    certfile: Path
    keyfile: Path


def tls_context(tls: WebTls) -> ssl.SSLContext:
    """A TLS 1.2+ server context with `tls`'s certificate; WebServerError when it is unusable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.certfile, tls.keyfile)
    except (OSError, ssl.SSLError) as err:
        raise WebServerError(
            f"cannot use certificate {tls.certfile} with key {tls.keyfile}: {err}"
        ) from err
    return context


def check_page(directory: Path) -> None:
    """WebServerError unless `directory` holds the page's index.html (blocking)."""
    if not (directory / "index.html").is_file():
        raise WebServerError(f"{directory}: no index.html (was `npm run build` run in web/?)")


class WebServer:
    """Serves the page in ``directory`` on ``host:port`` (0 = a free port) until `close`.

    The server runs in a thread of its own ("web-server") on its own event loop.
    """

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: WebTls | None = None,
        *,
        limits: WebLimits | None = None,
        extra_files: Iterable[str] = (),
    ) -> None:
        """Bind at once; raises WebServerError naming what is wrong.

        `extra_files` are paths under `directory` served besides the page (e.g. TEST_PAGES).
        """
        check_page(directory)
        context = tls_context(tls) if tls is not None else None
        self.server = PageServer(PageFiles(directory, extra_files), host, port, context, limits)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="web-server", daemon=True
        )
        self._thread.start()
        try:
            started.result(_START_TIMEOUT_S)
        except BaseException:
            self._thread.join(_START_TIMEOUT_S)
            self._loop.close()
            raise
        self.host, self.port, self.scheme = host, self.server.port, self.server.scheme

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8080``."""
        return self.server.url

    def _run(self, started: concurrent.futures.Future[None]) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main(started))

    async def _main(self, started: concurrent.futures.Future[None]) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except WebServerError as err:
            started.set_exception(err)
            return
        started.set_result(None)
        try:
            await self._stop.wait()
        finally:
            await self.server.close()

    def close(self) -> None:
        """Stop serving, end every connection and wait for the thread; idempotent."""
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(_START_TIMEOUT_S)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()
