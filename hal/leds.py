"""Indicator LEDs: the ``Led`` interface with the intercom's patterns, GPIO and null back-ends.

``GpioLed`` drives a gpiozero ``LED``; blinking patterns run in gpiozero's own blink
thread, which gpiozero stops (and joins) whenever the LED is switched to another
pattern or closed. A flash (``FLASH_TIMES``) blinks a few times and ends off.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from hal.errors import DeviceUnavailableError
from hal.gpio import gpio_error, open_gpio, switch_off_and_close
from hal.gpio_specs import LedSpec


class LedPattern(enum.StrEnum):
    """What an LED shows."""

    OFF = "off"
    IDLE = "idle"  # steady on: powered and ready
    RINGING = "ringing"  # 0.25 s on / 0.25 s off
    IN_CALL = "in_call"  # steady on
    ERROR = "error"  # 0.1 s on / 0.9 s off
    # short flashes of an entrance panel's keypad and card feedback (FLASH_TIMES), then off
    GRANTED = "granted"  # a fast flicker: 0.05 s on / 0.05 s off, 8 times
    REFUSED = "refused"  # a short double blink: 0.15 s on / 0.15 s off, twice
    LOCKED = "locked"  # three slow blinks: 0.4 s on / 0.2 s off
    UNKNOWN = "unknown"  # one long blink: 0.6 s on / 0.2 s off
    CODE = "code"  # card accepted, enter the code: 0.1 s on / 0.4 s off, 4 times


BLINK_TIMES: Mapping[LedPattern, tuple[float, float]] = MappingProxyType(
    {LedPattern.RINGING: (0.25, 0.25), LedPattern.ERROR: (0.1, 0.9)}
)
"""(on seconds, off seconds) of the blinking patterns."""

FLASH_TIMES: Mapping[LedPattern, tuple[float, float, int]] = MappingProxyType(
    {
        LedPattern.GRANTED: (0.05, 0.05, 8),
        LedPattern.REFUSED: (0.15, 0.15, 2),
        LedPattern.LOCKED: (0.4, 0.2, 3),
        LedPattern.UNKNOWN: (0.6, 0.2, 1),
        LedPattern.CODE: (0.1, 0.4, 4),
    }
)
"""(on seconds, off seconds, blinks) of the flashes: patterns that end (off) by themselves.

Whoever shows a flash puts the LED back to its lasting pattern after `flash_s` (see
``services.intercom.status_led``); the same flash again plays it again."""


def flash_s(pattern: LedPattern) -> float:
    """How long the flash ``pattern`` lasts; 0 for a lasting pattern."""
    times = FLASH_TIMES.get(pattern)
    if times is None:
        return 0.0
    on_s, off_s, blinks = times
    return (on_s + off_s) * blinks


_STEADY_ON = frozenset({LedPattern.IDLE, LedPattern.IN_CALL})


class Led(abc.ABC):
    """An indicator LED showing one ``LedPattern`` at a time."""

    name: str
    pattern: LedPattern

    @abc.abstractmethod
    def set_pattern(self, pattern: LedPattern) -> None:
        """Show ``pattern`` from now on.

        The same lasting pattern again changes nothing; the same flash again plays it again.
        """

    @abc.abstractmethod
    async def start(self) -> None:
        """Show the current pattern."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Switch off and release the pin; calling it again does nothing."""


class NullLed(Led):
    """An LED this model does not have: accepts and remembers patterns."""

    def __init__(self, name: str = "status") -> None:
        """An LED called ``name`` showing OFF."""
        self.name = name
        self.pattern = LedPattern.OFF

    def set_pattern(self, pattern: LedPattern) -> None:
        """Remember ``pattern``."""
        self.pattern = LedPattern(pattern)

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to release."""


class GpioLed(Led):
    """An LED on a GPIO pin, claimed (and switched off) on construction."""

    def __init__(self, name: str, spec: LedSpec, *, pin_factory: Any) -> None:
        """Claim ``spec.pin`` as an output, LED off."""
        from gpiozero import LED

        self.name = name
        self.spec = spec
        self.pattern = LedPattern.OFF
        self._what = f"{name} LED"
        self._device: Any = open_gpio(
            self._what,
            spec.pin,
            lambda: LED(
                spec.pin,
                active_high=spec.active_high,
                initial_value=False,
                pin_factory=pin_factory,
            ),
        )

    @property
    def is_lit(self) -> bool:
        """True while the LED is on (blinking patterns alternate)."""
        return self._device is not None and bool(self._device.is_active)

    def set_pattern(self, pattern: LedPattern) -> None:
        """Show ``pattern``; a blinking pattern's old thread stops before the new one runs."""
        pattern = LedPattern(pattern)
        if self._device is None:
            raise DeviceUnavailableError(f"{self._what} is closed")
        if pattern == self.pattern and pattern not in FLASH_TIMES:
            return
        self.pattern = pattern
        self._show()

    async def start(self) -> None:
        """Show the current pattern."""
        if self._device is None:
            raise DeviceUnavailableError(f"{self._what} is closed")
        self._show()

    async def close(self) -> None:
        """Stop blinking, switch off, release the pin; idempotent."""
        self.release()

    def release(self) -> None:
        """What ``close()`` does, callable without awaiting (a board that failed to build)."""
        device, self._device = self._device, None
        if device is None:
            return
        switch_off_and_close(self._what, self.spec.pin, device)

    def _show(self) -> None:
        try:
            if self.pattern in BLINK_TIMES:
                on_s, off_s = BLINK_TIMES[self.pattern]
                self._device.blink(on_time=on_s, off_time=off_s)
            elif self.pattern in FLASH_TIMES:
                on_s, off_s, blinks = FLASH_TIMES[self.pattern]
                self._device.blink(on_time=on_s, off_time=off_s, n=blinks)
            elif self.pattern in _STEADY_ON:
                self._device.on()
            else:
                self._device.off()
        except Exception as err:
            raise gpio_error(self._what, self.spec.pin, err) from err
