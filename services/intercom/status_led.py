"""The status LED of an endpoint: its lasting call-state pattern, and short flashes over it.

``IntercomService`` shows the call state (idle, ringing, in a call, error) with `show`;
an entrance panel's keypad and card feedback (``services.intercom.entrance``) flashes over
it with `flash` (``hal.leds.FLASH_TIMES``). After the flash the LED goes back to the
call-state pattern of that moment; a call-state change during a flash ends the flash at
once (the call state wins).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from hal.errors import HalError
from hal.leds import Led, LedPattern, flash_s

_log = logging.getLogger(__name__)


class StatusLed:
    """One LED (``led()``, looked up on each change) showing a call state and flashes."""

    def __init__(self, led: Callable[[], Led]) -> None:
        """``led``: the LED, e.g. ``IoDevices.led`` (a NullLed on boards without one)."""
        self._led = led
        self.pattern = LedPattern.OFF
        """The lasting (call-state) pattern, shown whenever no flash is."""
        self.flashing: LedPattern | None = None
        """The flash being shown, None when none is."""
        self._timer: asyncio.TimerHandle | None = None

    def show(self, pattern: LedPattern) -> None:
        """Show the lasting ``pattern`` from now on; a flash under way ends now."""
        self._end_flash()
        self.pattern = pattern
        self._led().set_pattern(pattern)

    def flash(self, pattern: LedPattern) -> None:
        """Flash ``pattern`` (a ``FLASH_TIMES`` pattern) once, then the lasting pattern again.

        A flash under way is replaced. Call from the event loop. ValueError for a lasting
        pattern.
        """
        duration = flash_s(pattern)
        if duration <= 0:
            raise ValueError(f"{pattern.value!r} is not a flash pattern")
        self._end_flash()
        self.flashing = pattern
        self._led().set_pattern(pattern)
        self._timer = asyncio.get_running_loop().call_later(duration, self._flash_over)

    def close(self) -> None:
        """End a flash under way without showing anything else (the owner switches off)."""
        self._end_flash()

    def _end_flash(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self.flashing = None

    def _flash_over(self) -> None:
        self._timer = None
        self.flashing = None
        try:
            self._led().set_pattern(self.pattern)
        except HalError:  # a timer callback: log it, the next change tries again
            _log.exception("status LED: could not go back to %s", self.pattern.value)
