"""Two-state supervision inputs: the door's reed contact and the tamper switch.

A ``Switch`` has a state known from the moment it starts (a door already open at boot
reads open: ``is_active`` is read from the pin, not learnt from an edge) and tells
``on_change(active)`` about every settled change. ``GpioSwitch`` reads one GPIO pin
through a gpiozero ``DigitalInputDevice``; a new level must hold for ``debounce_ms``
before it counts (every edge restarts the wait, so contact bounce and a slammed door's
rattle report one change, and no edge is ever lost to a bounce window). ``NullSwitch``
stands for a switch the board does not have. Callbacks run in the event loop thread.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from typing import Any

from hal.errors import DeviceUnavailableError
from hal.gpio import call_in_loop, fire, gpio_error, open_gpio
from hal.gpio_specs import SwitchSpec

__all__ = ["GpioSwitch", "NullSwitch", "Switch", "SwitchSpec"]


class Switch(abc.ABC):
    """A supervision input: the door contact (active = open) or tamper (active = tampered).

    The service sets ``on_change(active)``; it runs in the event loop thread for every
    settled change after ``start()`` (the state at start is in ``is_active``, no callback).
    """

    name: str
    on_change: Callable[[bool], None] | None

    def __init__(self, name: str) -> None:
        """A switch called ``name`` ("door_contact", "tamper") with no callback yet."""
        self.name = name
        self.on_change = None

    @property
    @abc.abstractmethod
    def wired(self) -> bool:
        """False for the null back-end: the board has no such input."""

    @property
    @abc.abstractmethod
    def is_active(self) -> bool:
        """The debounced state: True while the door is open / the housing is tampered with."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Read the current state and start reporting changes (call from the event loop)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop reporting and release the pin; calling it again does nothing."""


class NullSwitch(Switch):
    """A switch this board does not have: never active, never fires."""

    @property
    def wired(self) -> bool:
        """Always False."""
        return False

    @property
    def is_active(self) -> bool:
        """Always False."""
        return False

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to release."""


class GpioSwitch(Switch):
    """A switch on a GPIO pin, read with gpiozero (the pin is claimed on construction).

    HalError naming the pin for a bad name or a pin another device holds.
    """

    def __init__(self, name: str, spec: SwitchSpec, *, pin_factory: Any) -> None:
        """Claim ``spec.pin`` as an input with the spec's pull."""
        from gpiozero import DigitalInputDevice

        super().__init__(name)
        self.spec = spec
        self._what = name.replace("_", " ")
        self._device: Any = open_gpio(
            self._what,
            spec.pin,
            lambda: DigitalInputDevice(spec.pin, pull_up=spec.pull_up, pin_factory=pin_factory),
        )
        # gpiozero's "active" is low with a pull-up, high with a pull-down.
        self._high_when_device_active = not spec.pull_up
        self._debounce_s = spec.debounce_ms / 1000.0
        self._active = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._settle_timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def wired(self) -> bool:
        """Always True."""
        return True

    @property
    def is_active(self) -> bool:
        """The debounced state (read from the pin at start)."""
        return self._active

    async def start(self) -> None:
        """Read the current level and watch the pin's edges."""
        if self._closed:
            raise DeviceUnavailableError(f"{self._what} is closed")
        if self._loop is not None:
            return
        loop = self._loop = asyncio.get_running_loop()
        self._active = self._level_is_active()
        self._device.when_activated = lambda: call_in_loop(loop, self._on_edge)
        self._device.when_deactivated = lambda: call_in_loop(loop, self._on_edge)

    async def close(self) -> None:
        """Stop watching and release the pin; idempotent."""
        self.release()

    def release(self) -> None:
        """What ``close()`` does, callable without awaiting (a board that failed to build)."""
        if self._closed:
            return
        self._closed = True
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        try:
            self._device.close()  # also drops the when_* handlers
        except Exception as err:
            raise gpio_error(self._what, self.spec.pin, err) from err

    def _level_is_active(self) -> bool:
        high = bool(self._device.is_active) == self._high_when_device_active
        return high == self.spec.active_high

    def _on_edge(self) -> None:
        if self._closed or self._loop is None:
            return
        if self._settle_timer is not None:
            self._settle_timer.cancel()
        self._settle_timer = self._loop.call_later(self._debounce_s, self._settle)

    def _settle(self) -> None:
        self._settle_timer = None
        if self._closed:
            return
        active = self._level_is_active()
        if active != self._active:
            self._active = active
            fire(self._what, self.on_change, active)
