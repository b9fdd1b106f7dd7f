"""A Wiegand card reader on two GPIO inputs: frames of 26 or 34 bits.

The reader holds D0 and D1 high and pulls one low for ~50 µs per bit: D0 for a 0, D1 for a
1, a bit every 1 to 2 ms. gpiozero reports each falling edge in its driver thread (no
bounce filter: it would swallow the pulses), where the bit joins the frame at the time it
came (so a busy event loop neither splits nor joins frames); a frame ends after
``frame_gap_ms`` without a bit and is decoded in the event loop:

- Wiegand 26: even parity over bits 1-12 (bit 0), 8-bit facility, 16-bit card, odd parity
  over bits 13-24 (bit 25) -> ``CardRead(reader, "wiegand26", "<facility>:<card>")``;
- Wiegand 34: even parity over bits 1-16, 16-bit facility, 16-bit card, odd parity over
  bits 17-32 -> ``"wiegand34"``.

A frame with a wrong parity or another length, and noise (1 to 3 bits: a spike on the
cable), is dropped with a log line naming the reader and why. A frame never holds more
than ``MAX_FRAME_BITS`` bits (a line stuck toggling cannot grow memory).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from hal.cards import CardRead, CardReader
from hal.errors import DeviceUnavailableError, HalError
from hal.gpio import call_in_loop, gpio_error, open_gpio
from hal.gpio_specs import WiegandSpec

__all__ = ["MAX_FRAME_BITS", "GpioWiegandReader", "decode_frame"]

_log = logging.getLogger(__name__)

MAX_FRAME_BITS = 64
"""Bits kept of one frame; more make it an overlong frame, dropped whole."""
NOISE_BITS = 3
"""A frame this short is noise on the lines, not a card."""


def _parity_ok(bits: Sequence[int], *, even: bool) -> bool:
    ones = sum(bits)
    return ones % 2 == (0 if even else 1)


def _number(bits: Sequence[int]) -> int:
    value = 0
    for bit in bits:
        value = (value << 1) | bit
    return value


def decode_frame(reader: str, bits: Sequence[int]) -> CardRead:
    """The card in one frame of ``bits`` (0/1, first bit first); ValueError saying why not."""
    count = len(bits)
    if count == 26:
        half, card_format, facility_bits = 13, "wiegand26", 8
    elif count == 34:
        half, card_format, facility_bits = 17, "wiegand34", 16
    else:
        raise ValueError(f"a frame of {count} bits is neither Wiegand 26 nor 34")
    if not _parity_ok(bits[:half], even=True):
        raise ValueError(f"{card_format} frame: wrong even parity (leading half)")
    if not _parity_ok(bits[half:], even=False):
        raise ValueError(f"{card_format} frame: wrong odd parity (trailing half)")
    payload = bits[1:-1]
    facility = _number(payload[:facility_bits])
    card = _number(payload[facility_bits:])
    return CardRead(reader, card_format, f"{facility}:{card}")


class GpioWiegandReader(CardReader):
    """A Wiegand reader's D0/D1 on two GPIO inputs (see the module docstring).

    The pins are claimed on construction (HalError naming the pin; nothing stays claimed).
    """

    def __init__(self, name: str, spec: WiegandSpec, *, pin_factory: Any) -> None:
        """Claim D0 and D1 as inputs with pull-ups (the reader's lines idle high)."""
        from gpiozero import DigitalInputDevice

        super().__init__(name)
        self.spec = spec
        self._gap_s = spec.frame_gap_ms / 1000.0
        self._lines: list[tuple[Any, str]] = []
        try:
            for what, pin in (("d0", spec.d0), ("d1", spec.d1)):
                device = open_gpio(
                    f"Wiegand reader {name!r} {what}",
                    pin,
                    functools.partial(
                        DigitalInputDevice,
                        pin,
                        pull_up=True,
                        bounce_time=None,
                        pin_factory=pin_factory,
                    ),
                )
                self._lines.append((device, pin))
        except HalError:
            self._release_lines()
            raise
        self._loop: asyncio.AbstractEventLoop | None = None
        # The frame being received: filled in the driver's thread (each pulse at its own
        # time, whatever the loop is doing), under the lock; the loop only takes frames out.
        self._lock = threading.Lock()
        self._bits: list[int] = []
        self._overlong = False
        self._last_bit_at = 0.0
        self._timer_armed = False
        self._frame_end: asyncio.TimerHandle | None = None
        self._closed = False
        self.frames = 0
        """Frames ended so far (read or dropped), for status and tests."""

    async def start(self) -> None:
        """Start collecting bits from D0 and D1."""
        if self._closed:
            raise DeviceUnavailableError(f"Wiegand reader {self.name!r} is closed")
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        (d0, _), (d1, _) = self._lines
        d0.when_activated = lambda: self._on_pulse(0)
        d1.when_activated = lambda: self._on_pulse(1)

    async def close(self) -> None:
        """Stop reading and release the pins; idempotent."""
        self.release()

    def release(self) -> None:
        """What ``close()`` does, callable without awaiting (a board that failed to build)."""
        if self._closed:
            return
        self._closed = True
        if self._frame_end is not None:
            self._frame_end.cancel()
            self._frame_end = None
        with self._lock:
            self._bits.clear()
        self._release_lines()

    def _release_lines(self) -> None:
        first: HalError | None = None
        for device, pin in self._lines:
            try:
                device.close()
            except Exception as err:  # noqa: BLE001 - release the other line too
                first = first or gpio_error(f"Wiegand reader {self.name!r}", pin, err)
        self._lines.clear()
        if first is not None:
            raise first

    def _on_pulse(self, bit: int) -> None:
        """One pulse on D0 (0) or D1 (1), in the driver's thread, as it happens.

        A pulse ``frame_gap_ms`` after the previous one starts a new frame (the previous one
        goes to the loop); the first pulse of a frame asks the loop to watch for its end.
        """
        now = time.monotonic()
        loop = self._loop
        if loop is None or self._closed:
            return
        with self._lock:
            ended = self._take_frame() if now - self._last_bit_at >= self._gap_s else None
            if len(self._bits) < MAX_FRAME_BITS:
                self._bits.append(bit)
            else:
                self._overlong = True
            self._last_bit_at = now
            arm = not self._timer_armed
            self._timer_armed = True
        if ended is not None:
            call_in_loop(loop, self._end_frame, *ended)
        if arm:
            call_in_loop(loop, self._watch_frame_end, self._gap_s)

    def _take_frame(self) -> tuple[list[int], bool] | None:
        """The frame received so far (None if empty), and a new empty one; under the lock."""
        if not self._bits and not self._overlong:
            return None
        frame = (self._bits, self._overlong)
        self._bits, self._overlong = [], False
        return frame

    def _watch_frame_end(self, delay: float) -> None:
        if self._closed:
            return
        assert self._loop is not None
        self._frame_end = self._loop.call_later(delay, self._maybe_end_frame)

    def _maybe_end_frame(self) -> None:
        """In the loop: the frame ends once no pulse came for ``frame_gap_ms``."""
        self._frame_end = None
        if self._closed:
            return
        with self._lock:
            quiet_for = time.monotonic() - self._last_bit_at
            if quiet_for < self._gap_s:
                ended = None
            else:
                ended = self._take_frame()
                self._timer_armed = False
        if ended is None and quiet_for < self._gap_s:
            self._watch_frame_end(self._gap_s - quiet_for)
        elif ended is not None:
            self._end_frame(*ended)

    def _end_frame(self, bits: list[int], overlong: bool) -> None:
        if self._closed:
            return
        self.frames += 1
        self._decode(bits, overlong)

    def _decode(self, bits: list[int], overlong: bool) -> None:
        if overlong:
            _log.warning(
                "Wiegand reader %r: dropped a frame of more than %d bits (a line toggling "
                "on its own? check the wiring and level shifter)",
                self.name,
                MAX_FRAME_BITS,
            )
            return
        if len(bits) <= NOISE_BITS:
            _log.info("Wiegand reader %r: ignored %d bit(s) of noise", self.name, len(bits))
            return
        try:
            read = decode_frame(self.name, bits)
        except ValueError as err:
            _log.warning("Wiegand reader %r: dropped a frame: %s", self.name, err)
            return
        self.card_read(read)
