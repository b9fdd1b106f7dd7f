"""The broker's fronts: listeners on the site address that hand mosquitto only real logins.

mosquitto 2.0 counts a socket that never sends CONNECT against its connection cap and drops
it only after ~96 s, so a few hundred idle sockets from anyone on the LAN locked every unit
out (issue 15). mosquitto now listens on 127.0.0.1 only; a :class:`GatedListener` listens
on the site address in its place. Each connection it accepts is admitted (per-source and
total caps, admission.py), gets its TLS handshake (when the site has certificates) and must
deliver a whole, well-formed CONNECT (mqttconnect.py), all within ``connect_timeout_s``;
otherwise it is closed and counted. Only then does the listener open the connection to
mosquitto's loopback listener and pipe bytes both ways: mosquitto still does the login, the
ACL and every other MQTT rule. With TLS, a listener made with ``plain_from_loopback`` also
takes plain MQTT from a client on the machine itself (the hosting unit's own daemon): a
connection from a loopback address whose first byte does not open a TLS record.

What happens between accept and CONNECT is a :class:`Session`'s job: :class:`MqttSession`
here for plain MQTT, wsbridge.py's for MQTT over WebSockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import ssl
from collections.abc import Callable
from typing import Protocol

from services.addresses import is_loopback
from services.signaling.admission import Admission, Drop, DropLog, FrontLimits, Ticket
from services.signaling.errors import SignalingError
from services.signaling.mqttconnect import BadConnect, ConnectReader
from services.tasks import cancel_and_wait

_log = logging.getLogger(__name__)

READ_CHUNK = 65536
BACKLOG = 512
ACCEPT_RETRY_S = 0.1  # after accept() failed (no file descriptor left): let some close first
UPSTREAM_TIMEOUT_S = 5.0
TLS_HANDSHAKE_RECORD = 0x16  # the first byte of a TLS ClientHello (a handshake record)


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
"""A connection's reader and writer."""


class HandshakeFailed(SignalingError):
    """A client's WebSocket handshake (or another session opening) did not complete."""


class Session(Protocol):
    """What a listener does with one admitted connection."""

    async def read_connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        """Read up to a whole CONNECT (within the listener's deadline); the MQTT bytes read.

        EOFError when the client closes first; BadConnect or HandshakeFailed when it sends
        something else.
        """
        ...

    async def relay(
        self,
        client: Streams,
        broker: Streams,
        first: bytes,
    ) -> None:
        """Send ``first`` to mosquitto, then carry bytes both ways until either side ends."""
        ...


class MqttSession:
    """Plain MQTT (over TCP or TLS): the client's bytes are the MQTT stream."""

    def __init__(self, max_packet_size: int) -> None:
        """A CONNECT may be up to ``max_packet_size`` bytes long."""
        self._connect = ConnectReader(max_packet_size)

    async def read_connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        """Read until the buffered bytes hold a whole, well-formed CONNECT."""
        while not self._connect.complete:
            data = await reader.read(READ_CHUNK)
            if not data:
                raise EOFError("closed before CONNECT")
            self._connect.feed(data)
        return self._connect.buffered

    async def relay(
        self,
        client: Streams,
        broker: Streams,
        first: bytes,
    ) -> None:
        """Pipe the client's TCP stream and mosquitto's to each other."""
        broker[1].write(first)
        pumps = [
            asyncio.create_task(pipe(client[0], broker[1])),
            asyncio.create_task(pipe(broker[0], client[1])),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(pumps)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until the end of the stream or a connection error."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(READ_CHUNK):
            writer.write(data)
            await writer.drain()


SessionFactory = Callable[[], Session]
Opened = tuple[Ticket, Streams, Session, bytes]


class GatedListener:
    """Listens on ``host:port``; hands a connection to mosquitto once it has sent CONNECT.

    mosquitto is at ``target``; the session reads the CONNECT within ``limits``.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        target: tuple[str, int],
        *,
        session: SessionFactory,
        limits: FrontLimits,
        ssl_context: ssl.SSLContext | None = None,
        plain_from_loopback: bool = False,
    ) -> None:
        """Nothing listens until :meth:`start`; ``name`` (e.g. ``MQTT``) is for the log.

        With ``ssl_context`` every client must speak TLS, except, with
        ``plain_from_loopback``, one on a loopback address that starts without it.
        """
        self.host, self.port = host, port
        self.limits = limits
        self.admission = Admission(limits)
        self.drops = DropLog(f"{name} front {host}:{port}", _log)
        self._name = name
        self._target = target
        self._session = session
        self._ssl = ssl_context
        self._plain_from_loopback = plain_from_loopback
        self._sock: socket.socket | None = None
        self._acceptor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Lock()  # a second close() waits for the one under way

    async def start(self) -> None:
        """Listen; SignalingError naming the address when it cannot be had."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family = infos[0][0]
            sock = socket.create_server((self.host, self.port), family=family, backlog=BACKLOG)
        except OSError as err:
            raise SignalingError(
                f"{self._name} listener {self.host}:{self.port}: {err.strerror or err}"
            ) from err
        sock.setblocking(False)
        self._sock = sock
        self._acceptor = asyncio.create_task(self._accept(sock), name=f"{self._name}-accept")

    async def close(self) -> None:
        """Stop listening and end every connection.

        Safe to call twice; a call made while a close is under way waits for it.
        """
        async with self._closing:
            acceptor, self._acceptor = self._acceptor, None
            if acceptor is not None:
                await cancel_and_wait([acceptor])
            sock, self._sock = self._sock, None
            if sock is not None:
                sock.close()
            await cancel_and_wait(list(self._tasks))
            self.drops.close()

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(sock)
            except OSError as err:  # EMFILE / ENFILE: the connection waits in the backlog
                _log.debug("%s front: accept failed: %s", self._name, err)
                self.drops.record(Drop.ACCEPT_FAILED, err.strerror or str(err))
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            conn.setblocking(False)
            # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, which an
            # accepted socket of a server socket made with proto 0 is not: without it Nagle
            # holds a small write for the client's delayed ACK (40 ms per reply)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._serve(conn, str(address[0])))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket, source: str) -> None:
        opened = await self._open(conn, source)
        if opened is None:
            return
        ticket, client, session, first = opened
        try:
            try:
                broker = await asyncio.wait_for(
                    asyncio.open_connection(*self._target), UPSTREAM_TIMEOUT_S
                )
            except (OSError, TimeoutError) as err:
                _log.debug("%s front: mosquitto at %s:%d: %s", self._name, *self._target, err)
                self.drops.record(Drop.BROKER_DOWN, source)
                return
            _nodelay(broker[1])
            try:
                await session.relay(client, broker, first)
            finally:
                await _close(broker[1])
        finally:
            ticket.release()
            await _close(client[1])

    async def _open(self, conn: socket.socket, source: str) -> Opened | None:
        """Admission, TLS, the session's opening and the CONNECT, all within the deadline.

        None when any of them fails: the drop is counted and the connection closed.
        """
        loop = asyncio.get_running_loop()
        ticket: Ticket | None = None
        client: Streams | None = None
        opened = False
        try:
            async with asyncio.timeout(self.limits.connect_timeout_s) as deadline:
                admitted = self.admission.admit(
                    source, evict=lambda: deadline.reschedule(loop.time())
                )
                if isinstance(admitted, Drop):
                    self.drops.record(admitted, source)
                    return None
                ticket = admitted
                client = await self._streams(conn, source)
                session = self._session()
                first = await session.read_connect(*client)
                ticket.through()
                opened = True
                return ticket, client, session, first
        except TimeoutError:
            evicted = ticket is not None and ticket.evicted
            self.drops.record(Drop.EVICTED if evicted else Drop.DEADLINE, source)
        except BadConnect as err:
            _log.debug("%s front: %s from %s", self._name, err, source)
            self.drops.record(Drop.BAD_FIRST_PACKET, source)
        except HandshakeFailed as err:
            _log.debug("%s front: %s from %s", self._name, err, source)
            self.drops.record(Drop.HANDSHAKE, source)
        except (EOFError, ConnectionError, ssl.SSLError, OSError) as err:
            _log.debug("%s front: %s from %s", self._name, err, source)
            self.drops.record(Drop.HANDSHAKE if client is None else Drop.GONE, source)
        finally:
            if not opened:
                if ticket is not None:
                    ticket.release()
                if client is not None:
                    client[1].transport.abort()
                conn.close()
        return None

    async def _streams(self, conn: socket.socket, source: str) -> Streams:
        """Asyncio streams on the accepted socket, after the TLS handshake when configured."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_CHUNK)
        protocol = asyncio.StreamReaderProtocol(reader)
        tls = self._ssl
        may_skip_tls = tls is not None and self._plain_from_loopback and is_loopback(source)
        if may_skip_tls and await _first_byte(conn) != TLS_HANDSHAKE_RECORD:
            tls = None
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol,
            conn,
            ssl=tls,
            ssl_handshake_timeout=self.limits.connect_timeout_s if tls else None,
            # a client that never answers TLS close_notify holds its socket this long at most
            ssl_shutdown_timeout=self.limits.connect_timeout_s if tls else None,
        )
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def _first_byte(conn: socket.socket) -> int | None:
    """The first byte the client sent, left unread (None when it closed first)."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(conn.fileno(), ready)
    try:
        await readable
    finally:
        loop.remove_reader(conn.fileno())
    peeked = conn.recv(1, socket.MSG_PEEK)
    return peeked[0] if peeked else None


def _nodelay(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ConnectionError, ssl.SSLError):
        await writer.wait_closed()


def raise_open_files_limit(needed: int) -> tuple[int, int] | None:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit when below ``needed``.

    The fronts hold two descriptors per client (the client's and mosquitto's) and mosquitto,
    started from here, inherits the limit. Returns (old, new) when it was raised.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed or soft >= hard:
        return None
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard


def mqtt_listener(
    host: str,
    port: int,
    target: tuple[str, int],
    *,
    limits: FrontLimits,
    ssl_context: ssl.SSLContext | None = None,
    plain_from_loopback: bool = False,
) -> GatedListener:
    """The MQTT front on ``host:port`` for mosquitto's loopback listener at ``target``."""
    return GatedListener(
        "MQTT",
        host,
        port,
        target,
        session=lambda: MqttSession(limits.max_packet_size),
        limits=limits,
        ssl_context=ssl_context,
        plain_from_loopback=plain_from_loopback,
    )
