"""The fronts' parts alone: the first-CONNECT check, admission, the drop log, the fd limit."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from support import wait_for

from services.addresses import is_loopback
from services.signaling.admission import Admission, Drop, DropLog, FrontLimits, Ticket
from services.signaling.errors import SignalingError
from services.signaling.mqttconnect import BadConnect, ConnectReader


def connect_packet(
    name: bytes = b"MQTT", level: int = 5, flags: int = 0xC2, payload: bytes = b""
) -> bytes:
    """A CONNECT packet: the variable header as given, then ``payload`` (client id etc.)."""
    body = len(name).to_bytes(2, "big") + name + bytes([level, flags]) + b"\x00\x3c" + payload
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return b"\x10" + bytes(encoded) + body


# --------------------------------------------------------------------------- ConnectReader

PAYLOAD = b"\x00" + b"\x00\x04door" + b"\x00\x04door" + b"\x00\x08password"


@pytest.mark.parametrize(
    "packet",
    [
        connect_packet(payload=PAYLOAD),
        connect_packet(level=4, payload=PAYLOAD[1:]),
        connect_packet(b"MQIsdp", 3, payload=PAYLOAD[1:]),
        connect_packet(payload=PAYLOAD + b"w" * 300),  # a two-byte remaining length
    ],
)
def test_ok__a_connect_is_complete_however_it_is_split(packet: bytes) -> None:
    for split in range(1, len(packet)):
        reader = ConnectReader(131072)
        assert not reader.feed(packet[:split])
        assert reader.feed(packet[split:] + b"\xc0\x00")  # a PINGREQ right behind it
        assert reader.buffered == packet + b"\xc0\x00"


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (b"GET / HTTP/1.1\r\n", "0x47 is not CONNECT"),
        (b"\x16\x03\x01\x00\xa5", "0x16 is not CONNECT"),  # a TLS ClientHello
        (b"\x12\x10", "0x12 is not CONNECT"),  # CONNECT's type with flags set
        (b"\x10\xff\xff\xff\xff\x01", "malformed remaining length"),
        (b"\x10\x05\x00\x04MQ", "too short"),
        (b"\x10\xff\xff\x7f", "exceeds max_packet_size"),
        (connect_packet(b"MQTX"), "protocol name b'MQTX'"),
        (connect_packet(b"HTTP/1"), "protocol name b'HTTP/1'"),
        (connect_packet(b"ABC", payload=PAYLOAD), "protocol name of 3 bytes"),
        (connect_packet(level=6), "protocol level 6"),
        (connect_packet(b"MQIsdp", 4), "protocol level 4 for MQIsdp"),
        (connect_packet(flags=0x03), "reserved bit"),
        (connect_packet(flags=0x1C), "will QoS 3"),
        (connect_packet(flags=0x20), "retain without a will"),
    ],
)
def test_fail__what_is_not_a_connect_is_named(first: bytes, reason: str) -> None:
    with pytest.raises(BadConnect, match=reason):
        ConnectReader(131072).feed(first)


def test_fail__bytes_beyond_max_packet_size_without_a_whole_connect() -> None:
    reader = ConnectReader(16384)
    reader.feed(b"\x10")
    with pytest.raises(BadConnect, match="within the first 16384 bytes"):
        reader.feed(b"\x80" * 16384)


# --------------------------------------------------------------------------- Admission


def limits(**overrides: int) -> FrontLimits:
    values = {"max_pending_per_source": 2, "max_pending": 4, "max_connections": 6}
    values.update(overrides)
    return FrontLimits(**values)


def admit(admission: Admission, source: str, evicted: list[str] | None = None) -> Ticket:
    record = evicted if evicted is not None else []
    ticket = admission.admit(source, evict=lambda: record.append(source))
    assert isinstance(ticket, Ticket), ticket
    return ticket


def test_ok__per_source_cap_and_through_frees_the_pending_place() -> None:
    admission = Admission(limits())
    first = admit(admission, "10.0.0.9")
    admit(admission, "10.0.0.9")
    assert admission.admit("10.0.0.9", evict=lambda: None) is Drop.PER_SOURCE
    first.through()  # it sent CONNECT: no longer pending, still a connection
    admit(admission, "10.0.0.9")
    assert (admission.pending, admission.connections) == (2, 3)
    first.release()
    first.release()  # idempotent
    assert (admission.pending, admission.connections) == (2, 2)


def test_ok__a_full_pending_total_evicts_the_busiest_sources_oldest() -> None:
    admission = Admission(limits(max_pending_per_source=3))
    evicted: list[str] = []
    attacker = [admit(admission, "10.0.0.66", evicted) for _ in range(3)]
    admit(admission, "10.0.0.67", evicted)
    unit = admit(admission, "10.0.0.5", evicted)  # full: the busiest address gives way
    assert evicted == ["10.0.0.66"] and attacker[0].evicted and not attacker[1].evicted
    assert admission.pending == 4
    assert admission.admit("10.0.0.68", evict=lambda: None) is not Drop.PENDING_FULL
    assert evicted == ["10.0.0.66", "10.0.0.66"]
    # the evicted ones still count as connections until their sockets are gone
    assert admission.connections == 6
    assert admission.admit("10.0.0.5", evict=lambda: None) is Drop.FULL
    attacker[0].release()
    unit.through()
    assert admission.connections == 5


def test_ok__pending_full_of_equals_refuses_the_newcomer() -> None:
    admission = Admission(limits(max_pending_per_source=1, max_pending=2))
    admit(admission, "10.0.0.1")
    admit(admission, "10.0.0.2")
    assert admission.admit("10.0.0.3", evict=lambda: None) is Drop.PENDING_FULL


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_pending_per_source": 0}, "max_pending_per_source"),
        ({"max_pending_per_source": 5, "max_pending": 4}, "max_pending"),
        ({"max_connections": 0}, "max_connections 0"),
    ],
)
def test_fail__contradicting_limits(overrides: dict[str, int], message: str) -> None:
    with pytest.raises(SignalingError, match=message):
        limits(**overrides)


def test_fail__a_connect_timeout_must_be_positive() -> None:
    with pytest.raises(SignalingError, match="connect_timeout_s 0"):
        FrontLimits(connect_timeout_s=0)


# --------------------------------------------------------------------------- DropLog


async def test_ok__drops_are_counted_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = DropLog("MQTT front 0.0.0.0:1883", logging.getLogger("test.front"), interval_s=0.2)
    caplog.set_level(logging.WARNING, logger="test.front")
    for _ in range(500):
        log.record(Drop.DEADLINE, "10.0.0.66")
    log.record(Drop.PER_SOURCE, "10.0.0.66")
    log.record(Drop.BAD_FIRST_PACKET, "10.0.0.5")
    assert len(caplog.records) == 1  # the first drop, at once
    await wait_for(lambda: len(caplog.records) >= 2, "the interval's summary, by itself")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "dropped 501 connection(s): 499 no CONNECT within the deadline" in lines[1]
    assert "most from 10.0.0.66 (500)" in lines[1]
    assert log.totals == {Drop.DEADLINE: 500, Drop.PER_SOURCE: 1, Drop.BAD_FIRST_PACKET: 1}
    log.close()
    assert len(caplog.records) == 2  # nothing left unlogged


# --------------------------------------------------------------------------- open files

RAISE = """
import resource
from services.signaling.front import raise_open_files_limit
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
print(raise_open_files_limit(100), raise_open_files_limit(1000))
print(resource.getrlimit(resource.RLIMIT_NOFILE))
"""


def test_ok__the_open_files_limit_is_raised_to_the_hard_one_when_short() -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard limit here is {hard}")
    out = subprocess.run(
        [sys.executable, "-c", RAISE], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == f"None (256, {hard})"
    assert out[1] == f"({hard}, {hard})"


def test_only_addresses_on_this_machine_may_skip_tls() -> None:
    for address in ("127.0.0.1", "127.0.0.66", "::1", "::ffff:127.0.0.1"):
        assert is_loopback(address), address
    for address in ("10.0.0.5", "192.168.1.20", "fe80::1%eth0", "::ffff:10.0.0.5", "", "x"):
        assert not is_loopback(address), address
