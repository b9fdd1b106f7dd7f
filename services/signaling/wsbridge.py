"""MQTT over WebSockets for browsers, in front of mosquitto's plain loopback listener.

mosquitto 2.0.11's own websockets listener (Debian's, on libwebsockets 4.1) hands a message
of more than ~4 KB to a browser in ~4 KB pieces, one per ~100 ms: an SDP offer in a signed
envelope is 4–5 KB, so a phone would see the doorbell 100 ms late (docs/performance.md,
"The browser phone"). This bridge is a :class:`~services.signaling.front.GatedListener`
like the MQTT front, with the same admission, TLS and deadline: within
``connect_timeout_s`` of its accept a browser must complete the WebSocket handshake
(subprotocol ``mqtt``) and send a whole CONNECT in binary frames, or it is closed. Then its
connection is piped to mosquitto, which still does all of MQTT: logins, the ACL, limits.
MQTT over WebSockets lets a frame carry any part of the byte stream (MQTT 5.0, section 6),
so the bridge forwards whatever it reads, at once.

The WebSocket protocol is websockets' own (its Sans-I/O ``ServerProtocol``: HTTP parsing
and its limits, the handshake, framing, ping and close replies) on the listener's streams.
There is no WebSocket keepalive: MQTT's own keep alive ends a dead connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from websockets.exceptions import InvalidState
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from services.signaling.admission import FrontLimits
from services.signaling.front import (
    READ_CHUNK,
    GatedListener,
    HandshakeFailed,
    Streams,
)
from services.signaling.mqttconnect import BadConnect, ConnectReader
from services.tasks import cancel_and_wait

_log = logging.getLogger(__name__)


class _QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets logs every connection at INFO: a flood must not reach the log that way."""

    def isEnabledFor(self, level: int) -> bool:
        """Only warnings and worse."""
        return level >= logging.WARNING and self.logger.isEnabledFor(level)


_PROTOCOL_LOG = _QuietLogger(logging.getLogger(f"{__name__}.protocol"))


class WebSocketSession:
    """One browser: the WebSocket handshake, then binary frames that carry the MQTT stream."""

    def __init__(self, max_message: int) -> None:
        """A WebSocket message, and a CONNECT, may be up to ``max_message`` bytes."""
        self._protocol = ServerProtocol(
            subprotocols=[Subprotocol("mqtt")], max_size=max_message, logger=_PROTOCOL_LOG
        )
        self._connect = ConnectReader(max_message)
        self._early: list[Any] = []  # frames that came with the handshake request
        self._ended = False
        self._text = False

    async def read_connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        """The handshake, then binary frames until they hold a whole CONNECT."""
        await self._handshake(reader, writer)
        while not self._connect.complete:
            for payload in await self._receive(reader, writer):
                self._connect.feed(payload)
            if self._ended and not self._connect.complete:
                if self._text:
                    raise BadConnect("a text frame: MQTT over WebSockets is binary")
                raise EOFError("WebSocket closed before CONNECT")
        return self._connect.buffered

    async def relay(self, client: Streams, broker: Streams, first: bytes) -> None:
        """Pipe the browser's binary frames to mosquitto and mosquitto's bytes back."""
        broker[1].write(first)
        pumps = [
            asyncio.create_task(self._to_broker(client, broker[1])),
            asyncio.create_task(self._to_browser(broker[0], client[1])),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(pumps)
        if self._protocol.state is OPEN:
            self._protocol.send_close(CloseCode.NORMAL_CLOSURE)
            with contextlib.suppress(ConnectionError, OSError):
                await self._flush(client[1])

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        protocol = self._protocol
        events: list[Any] = []
        while not events:
            data = await reader.read(READ_CHUNK)
            if not data:
                raise EOFError("closed during the WebSocket handshake")
            protocol.receive_data(data)
            events = protocol.events_received()
            if protocol.handshake_exc is not None:
                await self._flush(writer)
                raise HandshakeFailed(f"WebSocket handshake: {protocol.handshake_exc}")
        request, *self._early = events
        assert isinstance(request, Request)
        response = protocol.accept(request)
        protocol.send_response(response)
        await self._flush(writer)
        if protocol.state is not OPEN:
            raise HandshakeFailed(
                f"WebSocket handshake refused: {response.status_code} {protocol.handshake_exc}"
            )

    async def _receive(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> list[bytes]:
        """The payloads of the next binary frames; sets ``_ended`` once the WebSocket ends."""
        if self._ended:
            raise EOFError("WebSocket closed")
        events, self._early = self._early, []
        if not events:
            data = await reader.read(READ_CHUNK)
            if data:
                self._protocol.receive_data(data)
            else:
                self._protocol.receive_eof()
            events = self._protocol.events_received()
        payloads = []
        for event in events:
            if not isinstance(event, Frame):
                continue
            if event.opcode in (Opcode.BINARY, Opcode.CONT):
                payloads.append(bytes(event.data))
            elif event.opcode is Opcode.TEXT:
                self._text = True
                self._protocol.fail(CloseCode.UNSUPPORTED_DATA, "MQTT is binary")
                break
        await self._flush(writer)
        if self._protocol.state is not OPEN:
            self._ended = True
        return payloads

    async def _flush(self, writer: asyncio.StreamWriter) -> None:
        for chunk in self._protocol.data_to_send():
            if chunk:
                writer.write(chunk)
            elif writer.can_write_eof():
                writer.write_eof()
        await writer.drain()

    async def _to_broker(self, client: Streams, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(EOFError, ConnectionError, OSError):
            while True:
                for payload in await self._receive(*client):
                    writer.write(payload)
                await writer.drain()

    async def _to_browser(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(InvalidState, ConnectionError, OSError):
            while data := await reader.read(READ_CHUNK):
                self._protocol.send_binary(data)
                await self._flush(writer)


def websocket_listener(
    host: str,
    port: int,
    target: tuple[str, int],
    *,
    limits: FrontLimits,
    ssl_context: ssl.SSLContext | None = None,
) -> GatedListener:
    """The WebSockets front on ``host:port`` for mosquitto's loopback listener at ``target``."""
    return GatedListener(
        "WebSockets",
        host,
        port,
        target,
        session=lambda: WebSocketSession(limits.max_packet_size),
        limits=limits,
        ssl_context=ssl_context,
    )
