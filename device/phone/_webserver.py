"""A small static HTTP(S) server for the browser phone (``web/``), used by ``callbox web``.

It serves one directory read-only from a thread, with the MIME types a browser needs for
JavaScript modules and source maps, ``Cache-Control: no-cache`` (a phone picks up a new
firmware's page at once) and security headers that keep the page from being framed. With
``tls`` it speaks HTTPS only: browsers give camera and microphone to secure contexts only
(https, or http on localhost).
"""

from __future__ import annotations

import functools
import http.server
import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hal.errors import CallboxError

_log = logging.getLogger(__name__)

MIME_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".map": "application/json",
    ".json": "application/json",
    ".css": "text/css",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".webmanifest": "application/manifest+json",
}


class WebServerError(CallboxError):
    """The web server could not start (bad directory, port in use, bad certificate)."""


@dataclass(frozen=True)
class WebTls:
    """PEM certificate and key for HTTPS."""

    certfile: Path
    keyfile: Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.extensions_map = {**self.extensions_map, **MIME_TYPES}
        super().__init__(*args, **kwargs)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib override
        _log.debug("web %s: " + format, self.client_address[0], *args)


class WebServer:
    """Serves ``directory`` on ``host:port`` (0 = a free port) until :meth:`close`."""

    def __init__(
        self, directory: Path, host: str = "127.0.0.1", port: int = 0, tls: WebTls | None = None
    ) -> None:
        """Bind at once; raises WebServerError naming what is wrong."""
        if not (directory / "index.html").is_file():
            raise WebServerError(f"{directory}: no index.html (was `npm run build` run in web/?)")
        handler = functools.partial(_Handler, directory=str(directory))
        try:
            self._server = http.server.ThreadingHTTPServer((host, port), handler)
        except OSError as err:
            raise WebServerError(f"cannot listen on {host}:{port}: {err.strerror}") from err
        self._server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                context.load_cert_chain(tls.certfile, tls.keyfile)
            except (OSError, ssl.SSLError) as err:
                self._server.server_close()
                raise WebServerError(
                    f"cannot use certificate {tls.certfile} with key {tls.keyfile}: {err}"
                ) from err
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="web-server", daemon=True
        )
        self._thread.start()
        _log.info("serving %s on %s", directory, self.url)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8080``."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def close(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
