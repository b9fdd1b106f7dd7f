"""The first packet of an MQTT connection: is it a well-formed CONNECT, and is it whole yet?

The broker's fronts (front.py for TCP, wsbridge.py for WebSockets) hand a connection to
mosquitto only once its first packet is a whole CONNECT, so that a socket which sends nothing,
or anything else, never holds one of mosquitto's connections. Only the fixed header and the
variable header are checked here (packet type, length, protocol name and level, connect
flags); mosquitto still reads the rest and does the login (MQTT 3.1.1 section 3.1, MQTT 5.0
section 3.1).
"""

from __future__ import annotations

from services.signaling.errors import SignalingError

CONNECT = 0x10  # packet type 1, flags 0 (both versions require the flags to be 0)
_PROTOCOLS = {b"MQTT": (4, 5), b"MQIsdp": (3,)}
_MAX_LENGTH_BYTES = 4  # the remaining length is a variable byte integer of at most 4 bytes
_MIN_REMAINING = 10  # protocol name (2 + 4), level, flags, keep alive (2)


class BadConnect(SignalingError):
    """The first bytes of a connection are not an MQTT CONNECT packet (the text says why)."""


class ConnectReader:
    """Collects a connection's first bytes until they hold a whole, well-formed CONNECT.

    :meth:`feed` raises :class:`BadConnect` as soon as the bytes so far cannot start one (a
    TLS hello or an HTTP request on the MQTT port fails at the first byte), and never keeps
    more than ``max_packet_size`` bytes waiting for the rest of a packet.
    """

    def __init__(self, max_packet_size: int) -> None:
        """``max_packet_size``: the largest CONNECT accepted, headers included."""
        self.max_packet_size = max_packet_size
        self._buffer = bytearray()
        self._length: int | None = None  # the whole packet's, once the fixed header is in
        self._header = 0  # the fixed header's length, once known

    @property
    def buffered(self) -> bytes:
        """Everything fed so far (the CONNECT, and whatever the client sent after it)."""
        return bytes(self._buffer)

    @property
    def complete(self) -> bool:
        """True once the whole CONNECT packet has been fed and checked."""
        return self._length is not None and len(self._buffer) >= self._length

    def feed(self, data: bytes) -> bool:
        """Add ``data``; True once a whole, well-formed CONNECT is buffered.

        BadConnect names what is wrong with it.
        """
        if self.complete:
            self._buffer += data
            return True
        if len(self._buffer) + len(data) > self.max_packet_size:
            raise BadConnect(f"no CONNECT within the first {self.max_packet_size} bytes")
        self._buffer += data
        self._check()
        return self.complete

    def _check(self) -> None:
        if not self._buffer:
            return
        if self._buffer[0] != CONNECT:
            raise BadConnect(f"first packet type byte 0x{self._buffer[0]:02x} is not CONNECT")
        if self._length is None:
            self._length = self._fixed_header_length()
            if self._length is None:
                return
        self._check_variable_header()

    def _fixed_header_length(self) -> int | None:
        """The whole packet's length once its remaining length is readable, else None."""
        remaining, shift = 0, 0
        for index in range(1, 1 + _MAX_LENGTH_BYTES):
            if index >= len(self._buffer):
                return None
            byte = self._buffer[index]
            remaining += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                total = index + 1 + remaining
                if remaining < _MIN_REMAINING:
                    raise BadConnect(f"CONNECT of {remaining} bytes is too short")
                if total > self.max_packet_size:
                    raise BadConnect(
                        f"CONNECT of {total} bytes exceeds max_packet_size {self.max_packet_size}"
                    )
                self._header = index + 1
                return total
        raise BadConnect("malformed remaining length in the CONNECT fixed header")

    def _check_variable_header(self) -> None:
        """Protocol name and level, then the connect flags, as far as they have arrived."""
        start = self._header
        name_length = self._read(start, 2)
        if name_length is None:
            return
        size = int.from_bytes(name_length, "big")
        if size not in (4, 6):
            raise BadConnect(f"CONNECT protocol name of {size} bytes")
        name = self._read(start + 2, size)
        if name is None:
            return
        if name not in _PROTOCOLS:
            raise BadConnect(f"CONNECT protocol name {name!r} is not MQTT")
        level_and_flags = self._read(start + 2 + size, 2)
        if level_and_flags is None:
            return
        level, flags = level_and_flags
        if level not in _PROTOCOLS[name]:
            raise BadConnect(f"CONNECT protocol level {level} for {name.decode()}")
        _check_flags(flags)

    def _read(self, offset: int, size: int) -> bytes | None:
        if len(self._buffer) < offset + size:
            return None
        return bytes(self._buffer[offset : offset + size])


def _check_flags(flags: int) -> None:
    """The connect flags' reserved bit and will bits (MQTT 3.1.1 section 3.1.2.3)."""
    if flags & 0x01:
        raise BadConnect("CONNECT flags: the reserved bit is set")
    will, will_qos, will_retain = flags & 0x04, (flags >> 3) & 0x03, flags & 0x20
    if will_qos == 3:
        raise BadConnect("CONNECT flags: will QoS 3")
    if not will and (will_qos or will_retain):
        raise BadConnect("CONNECT flags: will QoS or retain without a will")
