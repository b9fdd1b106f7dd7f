"""MQTT over WebSockets for browsers, in front of mosquitto's plain loopback listener.

mosquitto 2.0.11's own websockets listener (Debian's, on libwebsockets 4.1) hands a message
of more than ~4 KB to a browser in ~4 KB pieces, one per ~100 ms: an SDP offer in a signed
envelope is 4–5 KB, so a phone would see the doorbell 100 ms late (docs/performance.md,
"The browser phone"). This bridge accepts the browsers' WebSocket connections (subprotocol
``mqtt``, TLS when the site has certificates) and pipes the bytes of each one to its own TCP
connection to mosquitto, which still does all of MQTT: logins, the ACL, limits. MQTT over
WebSockets lets a frame carry any part of the byte stream (MQTT 5.0, section 6), so the
bridge forwards whatever it reads, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from services.signaling.errors import SignalingError
from services.tasks import cancel_and_wait

_log = logging.getLogger(__name__)

READ_CHUNK = 65536


class WebSocketBridge:
    """Serves MQTT over WebSockets on ``host:port``.

    Each connection is piped to mosquitto's listener on ``target_host:target_port``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        target_host: str,
        target_port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_message: int = 131072,
    ) -> None:
        """Nothing listens until :meth:`start`."""
        self.host, self.port = host, port
        self._target = (target_host, target_port)
        self._ssl = ssl_context
        self._max_message = max_message
        self._server: Server | None = None
        self._closing = asyncio.Lock()  # a second close() waits for the one under way

    async def start(self) -> None:
        """Listen; SignalingError naming the address when the port cannot be had."""
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self.port,
                subprotocols=[Subprotocol("mqtt")],
                ssl=self._ssl,
                compression=None,
                max_size=self._max_message,
            )
        except OSError as err:
            raise SignalingError(
                f"websockets listener {self.host}:{self.port}: {err.strerror or err}"
            ) from err

    async def close(self) -> None:
        """Stop listening and end every connection.

        Safe to call twice; a call made while a close is under way waits for it.
        """
        async with self._closing:
            server, self._server = self._server, None
            if server is not None:
                server.close()
                await server.wait_closed()

    async def _handle(self, browser: ServerConnection) -> None:
        try:
            reader, writer = await asyncio.open_connection(*self._target)
        except OSError as err:
            _log.error("websocket bridge: mosquitto at %s:%d: %s", *self._target, err)
            await browser.close(1011, "broker unavailable")
            return
        with contextlib.suppress(OSError):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pumps = [
            asyncio.create_task(self._to_broker(browser, writer)),
            asyncio.create_task(self._to_browser(reader, browser)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(pumps)
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
            await browser.close()

    @staticmethod
    async def _to_broker(browser: ServerConnection, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionClosed, ConnectionError):
            async for message in browser:
                if isinstance(message, str):  # MQTT is binary: a text frame is a bad client
                    _log.warning("websocket bridge: text frame from %s", browser.remote_address)
                    return
                writer.write(message)
                await writer.drain()

    @staticmethod
    async def _to_browser(reader: asyncio.StreamReader, browser: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed, ConnectionError):
            while data := await reader.read(READ_CHUNK):
                await browser.send(data)
