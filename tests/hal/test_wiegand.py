"""Wiegand 26/34 on gpiozero's MockFactory: real bit streams driven on the D0/D1 pins.

Each bit is a low pulse (drive_low, drive_high) on D0 (a 0) or D1 (a 1), driven from a
thread as gpiozero's driver thread reports them on a Pi. Good frames become CardReads; bad
parity, truncated frames, noise and overlong frames are dropped with a log line naming the
reader; two frames back to back are two reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from gpio_helpers import TIMEOUT
from gpiozero.pins.mock import MockFactory

from hal.cards import CardRead
from hal.errors import HalError
from hal.gpio_specs import WiegandSpec
from hal.wiegand import MAX_FRAME_BITS, GpioWiegandReader, decode_frame

D0, D1 = "GPIO20", "GPIO21"


def bits_of(value: int, width: int) -> list[int]:
    return [(value >> (width - 1 - i)) & 1 for i in range(width)]


def frame26(facility: int, card: int) -> list[int]:
    payload = bits_of(facility, 8) + bits_of(card, 16)
    even = sum(payload[:12]) % 2
    odd = 1 - sum(payload[12:]) % 2
    return [even, *payload, odd]


def frame34(facility: int, card: int) -> list[int]:
    payload = bits_of(facility, 16) + bits_of(card, 16)
    even = sum(payload[:16]) % 2
    odd = 1 - sum(payload[16:]) % 2
    return [even, *payload, odd]


@pytest.fixture
def factory() -> Iterator[Any]:
    pin_factory = MockFactory()
    yield pin_factory
    pin_factory.close()


class Line:
    """The reader's side of the cable: sends frames as pulses on D0/D1."""

    def __init__(self, factory: Any) -> None:
        self.d0 = factory.pin(D0)
        self.d1 = factory.pin(D1)

    def _send(self, frames: list[list[int]], gap_s: float) -> None:
        for index, frame in enumerate(frames):
            if index:
                time.sleep(gap_s)  # the pause between two frames, in the driver's thread
            for bit in frame:
                pin = self.d1 if bit else self.d0
                pin.drive_low()
                pin.drive_high()

    async def send(self, *frames: list[int], gap_s: float = 0.3) -> None:
        await asyncio.to_thread(self._send, list(frames), gap_s)


class Reads:
    def __init__(self, reader: GpioWiegandReader) -> None:
        self.reader = reader
        self.queue: asyncio.Queue[CardRead] = asyncio.Queue()
        reader.on_card = self.queue.put_nowait

    async def next(self) -> CardRead:
        return await asyncio.wait_for(self.queue.get(), TIMEOUT)

    async def frames(self, count: int) -> None:
        """Wait until ``count`` frames ended (read or dropped)."""
        async with asyncio.timeout(TIMEOUT):
            while self.reader.frames < count:  # noqa: ASYNC110 - a counter, no event to wait on
                await asyncio.sleep(0.005)


@pytest.fixture
async def rig(factory: Any) -> AsyncIterator[tuple[Line, Reads]]:
    line = Line(factory)
    # a longer frame gap than a reader's 25 ms: a test thread on a busy machine may pause
    # mid-frame for longer than a reader ever does
    spec = WiegandSpec(d0=D0, d1=D1, frame_gap_ms=100)
    reader = GpioWiegandReader("entrance", spec, pin_factory=factory)
    await reader.start()
    yield line, Reads(reader)
    await reader.close()


async def test_a_wiegand26_frame_is_read(rig: tuple[Line, Reads]) -> None:
    line, reads = rig
    await line.send(frame26(123, 45678))
    assert await reads.next() == CardRead("entrance", "wiegand26", "123:45678")


async def test_a_wiegand34_frame_is_read(rig: tuple[Line, Reads]) -> None:
    line, reads = rig
    await line.send(frame34(54321, 65535))
    read = await reads.next()
    assert read == CardRead("entrance", "wiegand34", "54321:65535")
    assert read.card_id == "wiegand34:54321:65535"


async def test_two_frames_back_to_back_are_two_reads(rig: tuple[Line, Reads]) -> None:
    line, reads = rig
    await line.send(frame26(1, 2), frame34(3, 4))
    assert await reads.next() == CardRead("entrance", "wiegand26", "1:2")
    assert await reads.next() == CardRead("entrance", "wiegand34", "3:4")


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        ([1 - frame26(7, 9)[0], *frame26(7, 9)[1:]], "wiegand26 frame: wrong even parity"),
        ([*frame26(7, 9)[:-1], 1 - frame26(7, 9)[-1]], "wiegand26 frame: wrong odd parity"),
        ([*frame34(7, 9)[:-1], 1 - frame34(7, 9)[-1]], "wiegand34 frame: wrong odd parity"),
        (frame26(7, 9)[:20], "a frame of 20 bits is neither Wiegand 26 nor 34"),
    ],
    ids=["even-parity", "odd-parity", "w34-odd-parity", "truncated"],
)
async def test_bad_frames_are_dropped_with_a_reason(
    rig: tuple[Line, Reads], caplog: pytest.LogCaptureFixture, frame: list[int], why: str
) -> None:
    line, reads = rig
    with caplog.at_level(logging.INFO, logger="hal.wiegand"):
        await line.send(frame, frame26(10, 11))
        assert await reads.next() == CardRead("entrance", "wiegand26", "10:11")
    assert reads.queue.empty()
    assert f"Wiegand reader 'entrance': dropped a frame: {why}" in caplog.text


async def test_noise_and_overlong_frames_are_dropped(
    rig: tuple[Line, Reads], caplog: pytest.LogCaptureFixture
) -> None:
    line, reads = rig
    with caplog.at_level(logging.INFO, logger="hal.wiegand"):
        await line.send([1, 0], [1] * (MAX_FRAME_BITS + 10), frame26(5, 6))
        assert await reads.next() == CardRead("entrance", "wiegand26", "5:6")
    assert reads.reader.frames == 3
    assert "Wiegand reader 'entrance': ignored 2 bit(s) of noise" in caplog.text
    assert f"dropped a frame of more than {MAX_FRAME_BITS} bits" in caplog.text


async def test_close_releases_the_pins_and_drops_a_half_frame(factory: Any) -> None:
    line = Line(factory)
    reader = GpioWiegandReader("gate", WiegandSpec(d0=D0, d1=D1), pin_factory=factory)
    reads = Reads(reader)
    await reader.start()
    await line.send(frame26(1, 1)[:10])
    await reader.close()
    await reader.close()
    await asyncio.sleep(0.05)
    assert reads.queue.empty()
    GpioWiegandReader("gate", WiegandSpec(d0=D0, d1=D1), pin_factory=factory).release()


def test_a_pin_in_use_is_a_hal_error_naming_it(factory: Any) -> None:
    from gpiozero import DigitalInputDevice

    holder = DigitalInputDevice(D1, pin_factory=factory)
    try:
        with pytest.raises(HalError, match="'gate' d1 on pin 'GPIO21': already in use"):
            GpioWiegandReader("gate", WiegandSpec(d0=D0, d1=D1), pin_factory=factory)
    finally:
        holder.close()
    GpioWiegandReader("gate", WiegandSpec(d0=D0, d1=D1), pin_factory=factory).release()


def test_decode_frame_known_vectors() -> None:
    # facility 1, card 1 in Wiegand 26: 1 00000001 0000000000000001 0 (parities: even, odd)
    bits = [int(b) for b in "10000000100000000000000010"]
    assert decode_frame("r", bits).number == "1:1"
    assert decode_frame("r", frame26(255, 65535)).number == "255:65535"
    assert decode_frame("r", frame34(0, 0)).number == "0:0"
    with pytest.raises(ValueError, match="neither"):
        decode_frame("r", [0] * 32)


def test_d0_and_d1_on_one_pin_is_refused() -> None:
    with pytest.raises(HalError, match="d0 and d1 are both"):
        WiegandSpec(d0=D0, d1=D0)
