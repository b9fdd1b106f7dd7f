"""The simulator's HTTP server: the page of ``web/simulator/`` and its small JSON API.

It listens on 127.0.0.1 only, in a thread of its own; every request that reads or drives a
unit is handed to the site's event loop (``asyncio.run_coroutine_threadsafe``) and waited
for, so devices and calls are only ever touched from the loop. Pictures are encoded to JPEG
in the request's thread.

API (JSON in and out; errors are ``{"error": "what is wrong"}`` with a 4xx/5xx status):

- ``GET /api/state``: every unit (see :meth:`SimulatorControls.unit_state`);
- ``GET /api/UNIT/screen.jpg``: the unit's screen (the indoor unit's display, the door
  station's camera during a video call); 404 when there is nothing to show;
- ``POST /api/press`` ``{"unit": "door", "button": "doorbell"}``: a press of a button;
- ``POST /api/set`` ``{"unit": "flat", "input": "hook", "active": true}``: the hook switch
  (active = handset off the hook), the proximity sensor (active = near), a door station's
  ``door_contact`` (active = the door is open) or ``tamper`` switch (active = the housing
  is open);
- ``POST /api/keypad`` ``{"unit": "door", "keys": "12#"}``: keys pressed in turn on the
  door's keypad (0-9, ``*``, ``#``; at most 16);
- ``POST /api/card`` ``{"unit": "door", "reader": "entrance", "card": "wiegand26:12:34567"}``:
  a card presented to a reader (``<format>:<number>``, the form of ``callbox access``);
- ``POST /api/touch`` ``{"unit": "flat", "x": 100, "y": 200}``: a tap on the screen.

A POST must say ``Content-Type: application/json``: a page of another site cannot send
that without the permission (CORS) this server never gives.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import TimeoutError as FutureTimeoutError
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from device.simulator._state import (
    SimulatorControls,
    SimulatorRequestError,
    jpeg_of_frame,
)
from hal.errors import CallboxError

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

STATIC_DIR = Path(__file__).resolve().parents[2] / "web" / "simulator"
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/simulator.js": ("simulator.js", "text/javascript; charset=utf-8"),
    "/simulator.css": ("simulator.css", "text/css; charset=utf-8"),
}
MAX_BODY = 4096
LOOP_TIMEOUT_S = 10.0


class SimulatorServerError(CallboxError):
    """The simulator's page cannot be served (missing files, port in use)."""


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server  # HTTP/1.0: one request per connection, so no thread waits on a browser

    # responses --------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        log = _log.warning if status < 500 else _log.error
        log("simulator: %s %s -> %d: %s", self.command, self.path, status, message)
        self._json(status, {"error": message})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib override
        _log.debug("simulator http %s: " + format, self.client_address[0], *args)

    # requests ---------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_HEAD(self) -> None:
        self._guarded(self._get)

    def do_POST(self) -> None:
        self._guarded(self._post)

    def _guarded(self, handle: Callable[[str], None]) -> None:
        path = urlsplit(self.path).path
        try:
            handle(path)
        except SimulatorRequestError as err:
            self._error(err.status, str(err))
        except (BrokenPipeError, ConnectionResetError):
            _log.debug("simulator: the browser went away during %s", path)
        except Exception as err:  # noqa: BLE001 - answer 500 and keep serving
            _log.exception("simulator: %s %s failed", self.command, path)
            self._json(500, {"error": f"internal error: {type(err).__name__}: {err}"})

    def _get(self, path: str) -> None:
        if path in STATIC_FILES:
            name, content_type = STATIC_FILES[path]
            self._send(200, (self.server.static_dir / name).read_bytes(), content_type)
        elif path == "/api/state":
            self._json(200, self.server.on_loop(self._state))
        elif path.startswith("/api/") and path.endswith("/screen.jpg"):
            unit = path.removeprefix("/api/").removesuffix("/screen.jpg")
            picture = self._screen(unit)
            if picture is None:
                self._error(404, f"unit {unit!r} has nothing on its screen yet")
            else:
                self._send(200, picture, "image/jpeg")
        elif path.startswith("/api/"):
            self._error(404, f"no such API: GET {path}")
        else:
            self._error(404, f"no such page: {path}")

    async def _state(self) -> dict[str, Any]:
        return self.server.controls.state()

    def _screen(self, unit: str) -> bytes | None:
        controls = self.server.controls

        async def display() -> Any:
            return controls.display_of_unit(unit)

        shown = self.server.on_loop(display)
        if shown is not None:
            picture: bytes | None = shown.last_jpeg()
            return picture
        frame = self.server.on_loop(lambda: controls.camera_frame(unit))
        return None if frame is None else jpeg_of_frame(frame)

    def _post(self, path: str) -> None:
        actions: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "/api/press": self._press,
            "/api/set": self._set,
            "/api/touch": self._touch,
            "/api/keypad": self._keypad,
            "/api/card": self._card,
        }
        if path not in actions:
            raise SimulatorRequestError(f"no such API: POST {path}", status=404)
        body = self._body()
        action = actions[path]
        self.server.on_loop(lambda: action(body))
        self._json(200, {"ok": True})

    def _body(self) -> dict[str, Any]:
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != "application/json":
            raise SimulatorRequestError(
                f"the body must be application/json, not {content_type or 'unnamed'!r}",
                status=415,
            )
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            raise SimulatorRequestError("a Content-Length header is needed", status=411)
        length = int(length_text)
        if length > MAX_BODY:
            raise SimulatorRequestError(f"the body is over {MAX_BODY} bytes", status=413)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SimulatorRequestError(f"the body is not JSON: {err}") from err
        if not isinstance(body, dict):
            raise SimulatorRequestError(f"the body must be a JSON object, not {raw[:60]!r}")
        return body

    async def _press(self, body: dict[str, Any]) -> None:
        _require(body, "unit", "button")
        await self.server.controls.press(body["unit"], body["button"])

    async def _set(self, body: dict[str, Any]) -> None:
        _require(body, "unit", "input", "active")
        await self.server.controls.set_input(body["unit"], body["input"], body["active"])

    async def _touch(self, body: dict[str, Any]) -> None:
        _require(body, "unit", "x", "y")
        self.server.controls.touch(body["unit"], body["x"], body["y"])

    async def _keypad(self, body: dict[str, Any]) -> None:
        _require(body, "unit", "keys")
        self.server.controls.keypad(body["unit"], body["keys"])

    async def _card(self, body: dict[str, Any]) -> None:
        _require(body, "unit", "reader", "card")
        self.server.controls.card(body["unit"], body["reader"], body["card"])


def _require(body: dict[str, Any], *keys: str) -> None:
    missing = [key for key in keys if key not in body]
    if missing:
        raise SimulatorRequestError(f"missing {', '.join(repr(k) for k in missing)} in the body")
    unknown = sorted(set(body) - set(keys))
    if unknown:
        raise SimulatorRequestError(
            f"unknown {', '.join(repr(k) for k in unknown)} in the body "
            f"(expected: {', '.join(keys)})"
        )


class _Server(http.server.ThreadingHTTPServer):
    """The HTTP server, with what its handlers need."""

    daemon_threads = False
    block_on_close = True  # server_close() joins every request thread: none is left

    def __init__(
        self,
        address: tuple[str, int],
        controls: SimulatorControls,
        loop: asyncio.AbstractEventLoop,
        static_dir: Path,
    ) -> None:
        super().__init__(address, _Handler)
        self.controls = controls
        self.loop = loop
        self.static_dir = static_dir
        self.closing = False

    def on_loop(self, make: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``make()`` on the site's loop and wait for its result (errors re-raised)."""
        if self.closing or self.loop.is_closed():
            raise SimulatorRequestError("the simulator is shutting down", status=503)

        async def run() -> _T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        try:
            return future.result(LOOP_TIMEOUT_S)
        except FutureTimeoutError:
            future.cancel()
            raise SimulatorRequestError(
                f"the site did not answer within {LOOP_TIMEOUT_S:.0f} s", status=503
            ) from None


class SimulatorServer:
    """Serves the simulator page and API on ``host:port`` (0 = a free port) until closed."""

    def __init__(
        self,
        controls: SimulatorControls,
        loop: asyncio.AbstractEventLoop,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        static_dir: Path = STATIC_DIR,
    ) -> None:
        """Bind at once and start serving; SimulatorServerError naming what is wrong."""
        missing = [name for name, _ in STATIC_FILES.values() if not (static_dir / name).is_file()]
        if missing:
            raise SimulatorServerError(f"{static_dir}: missing {', '.join(sorted(set(missing)))}")
        try:
            self._server = _Server((host, port), controls, loop, static_dir)
        except OSError as err:
            raise SimulatorServerError(f"cannot listen on {host}:{port}: {err.strerror}") from err
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="simulator-http", daemon=True
        )
        self._thread.start()
        _log.info("simulator page on %s", self.url)

    @property
    def url(self) -> str:
        """The page's URL, e.g. ``http://127.0.0.1:8080/``."""
        return f"http://{self.host}:{self.port}/"

    def close(self) -> None:
        """Stop serving, wait for the requests in flight and the thread (blocking).

        Call it off the event loop (``await asyncio.to_thread(server.close)``): requests in
        flight may be waiting for the loop.
        """
        self._server.closing = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=LOOP_TIMEOUT_S)
