"""The door-release relay: the ``Relay`` interface, the GPIO back-end and a null one.

A relay that stays energised keeps a door open (and burns a door strike), so the GPIO
back-end bounds every pulse twice: the pulse coroutine releases the relay in a
``finally`` (normal end, cancellation, error), and a ``threading.Timer`` armed before
the relay is energised forces it off after ``max_on_s`` even when the event loop is
blocked or the task was lost. The pin is claimed and driven inactive on construction,
so a relay left energised by a crashed process is released as early as possible.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import threading
from typing import Any

from hal.errors import DeviceUnavailableError, HalError
from hal.gpio import gpio_error, open_gpio, switch_off_and_close
from hal.gpio_specs import RelaySpec

_log = logging.getLogger(__name__)


class RelayBusyError(DeviceUnavailableError):
    """A pulse was asked for while one is running (it is neither extended nor restarted)."""


class Relay(abc.ABC):
    """A relay energised in bounded pulses (``pulse_s`` by default, at most ``max_on_s``)."""

    pulse_s: float
    max_on_s: float

    @property
    @abc.abstractmethod
    def is_active(self) -> bool:
        """True while the relay is energised."""

    @abc.abstractmethod
    async def pulse(self, duration_s: float | None = None) -> None:
        """Energise for ``duration_s`` (default ``pulse_s``, clamped to ``max_on_s``).

        Returns once the relay is released. RelayBusyError while a pulse runs;
        DeviceUnavailableError if there is no relay or it closes during the pulse.
        """

    @abc.abstractmethod
    async def start(self) -> None:
        """Make sure the relay is released; never energises it."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the relay (ending a pulse) and the pin; calling it again does nothing."""


class NullRelay(Relay):
    """A model without a door relay: never active, a pulse is an error."""

    pulse_s = 0.0
    max_on_s = 0.0

    @property
    def is_active(self) -> bool:
        """Always False."""
        return False

    async def pulse(self, duration_s: float | None = None) -> None:
        """Always DeviceUnavailableError: there is nothing to open the door with."""
        raise DeviceUnavailableError("no door relay")

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to release."""


class GpioRelay(Relay):
    """A relay driver (transistor, MOSFET or opto-isolated module) on a GPIO pin.

    A pulse asked for while one runs raises RelayBusyError: the running pulse keeps its
    end time, so repeated unlock requests cannot hold a door open.
    """

    def __init__(self, spec: RelaySpec, *, pin_factory: Any, name: str = "door relay") -> None:
        """Claim ``spec.pin`` as an output and drive it inactive at once."""
        from gpiozero import DigitalOutputDevice

        self.spec = spec
        self.name = name
        self.pulse_s = spec.pulse_ms / 1000.0
        self.max_on_s = spec.max_on_ms / 1000.0
        self._lock = threading.Lock()
        self._device: Any = open_gpio(
            name,
            spec.pin,
            lambda: DigitalOutputDevice(
                spec.pin,
                active_high=spec.active_high,
                initial_value=False,
                pin_factory=pin_factory,
            ),
        )
        self._watchdog: threading.Timer | None = None
        self._generation = 0
        self._pulsing = False
        self._interrupt: asyncio.Event | None = None

    @property
    def is_active(self) -> bool:
        """True while the output is in its active state."""
        device = self._device
        return device is not None and bool(device.is_active)

    async def start(self) -> None:
        """Drive the output inactive (it already is, unless something else wrote the pin)."""
        with self._lock:
            self._write(False)

    async def pulse(self, duration_s: float | None = None) -> None:
        """Energise for ``duration_s`` (default ``pulse_s``, at most ``max_on_s``)."""
        length = self._pulse_length(duration_s)
        if self._device is None:
            raise DeviceUnavailableError(f"{self.name} is closed")
        if self._pulsing:
            raise RelayBusyError(f"{self.name} is already energised; the running pulse stands")
        self._pulsing = True
        interrupt = self._interrupt = asyncio.Event()
        try:
            self._energise()
            try:
                await asyncio.wait_for(interrupt.wait(), timeout=length)
            except TimeoutError:
                return
            raise DeviceUnavailableError(f"{self.name} closed during the pulse")
        finally:
            self._release()
            self._pulsing = False
            self._interrupt = None

    async def close(self) -> None:
        """Drive the output inactive, end a running pulse, release the pin; idempotent."""
        self.release()

    def release(self) -> None:
        """What ``close()`` does, callable without awaiting (a board that failed to build)."""
        if self._interrupt is not None:
            self._interrupt.set()
        with self._lock:
            device, self._device = self._device, None
            self._generation += 1
            timer, self._watchdog = self._watchdog, None
        if timer is not None:
            _stop_timer(timer)
        if device is None:
            return
        switch_off_and_close(self.name, self.spec.pin, device)

    def _pulse_length(self, duration_s: float | None) -> float:
        length = self.pulse_s if duration_s is None else float(duration_s)
        if not length > 0.0:
            raise HalError(f"{self.name}: a pulse must last > 0 s, got {duration_s!r}")
        if length > self.max_on_s:
            _log.warning("%s: %.3f s pulse cut to max_on %.3f s", self.name, length, self.max_on_s)
            length = self.max_on_s
        return length

    def _energise(self) -> None:
        with self._lock:
            self._generation += 1
            # Armed before the output goes active: no moment without a bound.
            timer = threading.Timer(self.max_on_s, self._watchdog_fired, args=(self._generation,))
            timer.name = f"callbox-relay-watchdog-{self.spec.pin}"
            timer.daemon = True
            timer.start()
            self._watchdog = timer
            self._write(True)

    def _release(self) -> None:
        with self._lock:
            self._generation += 1
            timer, self._watchdog = self._watchdog, None
            if self._device is not None:
                self._write(False)
        if timer is not None:
            _stop_timer(timer)

    def _watchdog_fired(self, generation: int) -> None:
        """Runs in the timer thread when a pulse outlived ``max_on_s``."""
        with self._lock:
            if generation != self._generation or self._device is None:
                return
            _log.error(
                "%s: still energised after max_on %.3f s (event loop blocked?); forcing it off",
                self.name,
                self.max_on_s,
            )
            try:
                self._write(False)
            except HalError:
                _log.exception("%s: the watchdog could not release the relay", self.name)

    def _write(self, active: bool) -> None:
        """Set the output; the caller holds ``_lock``."""
        if self._device is None:
            raise DeviceUnavailableError(f"{self.name} is closed")
        try:
            if active:
                self._device.on()
            else:
                self._device.off()
        except Exception as err:
            raise gpio_error(self.name, self.spec.pin, err) from err


def _stop_timer(timer: threading.Timer) -> None:
    timer.cancel()
    if timer is not threading.current_thread():
        timer.join()
