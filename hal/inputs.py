"""Push buttons and the hook switch: the ``Button`` interface and its back-ends.

``GpioButton`` reads one GPIO pin through a gpiozero ``DigitalInputDevice`` (contact
bounce filtered by gpiozero's ``bounce_time``) and adds the one filter an intercom
needs on top: a press must last ``min_press_ms``, measured from the edge, to count, so
a spike on a long doorbell cable does not ring the flat. ``NullButton`` stands for a
button a model does not have. Callbacks run in the event loop thread.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from hal.errors import DeviceUnavailableError
from hal.gpio import call_in_loop, fire, gpio_error, open_gpio
from hal.gpio_specs import ButtonRole, ButtonSpec

__all__ = ["Button", "ButtonRole", "ButtonSpec", "GpioButton", "NullButton"]

_log = logging.getLogger(__name__)


class Button(abc.ABC):
    """A push button (or the hook switch: press = off-hook, release = on-hook).

    The service sets ``on_press`` (a press that lasted at least ``min_press_ms``) and
    ``on_release`` (the end of a counted press); both run in the event loop thread.
    """

    role: ButtonRole
    name: str
    on_press: Callable[[], None] | None
    on_release: Callable[[], None] | None

    def __init__(self, role: ButtonRole, name: str | None = None) -> None:
        """A button with ``role`` and no callbacks yet, called ``name`` (default: the role).

        An entrance panel has several doorbell buttons: each is called by its bell's name.
        """
        self.role = role
        self.name = role.value if name is None else name
        self.on_press = None
        self.on_release = None

    @property
    @abc.abstractmethod
    def is_pressed(self) -> bool:
        """True between a counted press and its release."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start reporting presses to the callbacks (call from the event loop)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop reporting and release the pin; calling it again does nothing."""


class NullButton(Button):
    """A button this model does not have: never pressed, never fires."""

    @property
    def is_pressed(self) -> bool:
        """Always False."""
        return False

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to release."""


class GpioButton(Button):
    """A button on a GPIO pin, read with gpiozero.

    The pin is claimed on construction (HalError naming the pin for a bad name or a pin
    another device holds). A button already held when ``start()`` runs counts as a
    press from that moment (a handset lifted while the unit booted is off-hook).
    """

    def __init__(
        self, role: ButtonRole, spec: ButtonSpec, *, pin_factory: Any, name: str | None = None
    ) -> None:
        """Claim ``spec.pin`` on ``pin_factory`` as an input with the spec's pull."""
        from gpiozero import DigitalInputDevice

        super().__init__(role, name)
        self.spec = spec
        self._what = f"{role.value} button" if name is None else f"{role.value} button {name!r}"
        self._min_press_s = spec.min_press_ms / 1000.0
        self._device: Any = open_gpio(
            self._what,
            spec.pin,
            lambda: DigitalInputDevice(
                spec.pin,
                pull_up=spec.pull_up,
                bounce_time=spec.debounce_ms / 1000.0 if spec.debounce_ms else None,
                pin_factory=pin_factory,
            ),
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pressed_at: float | None = None
        self._counted = False
        self._confirm: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def is_pressed(self) -> bool:
        """True between a counted press and its release."""
        return self._counted

    async def start(self) -> None:
        """Hook the pin's edges; a button already held starts its press now."""
        if self._closed:
            raise DeviceUnavailableError(f"{self._what} is closed")
        if self._loop is not None:
            return
        loop = self._loop = asyncio.get_running_loop()
        self._device.when_activated = lambda: call_in_loop(
            loop, self._on_edge, True, time.monotonic()
        )
        self._device.when_deactivated = lambda: call_in_loop(
            loop, self._on_edge, False, time.monotonic()
        )
        if self._level():
            self._on_edge(True, time.monotonic())

    async def close(self) -> None:
        """Stop reporting and release the pin; idempotent."""
        self.release()

    def release(self) -> None:
        """What ``close()`` does, callable without awaiting (a board that failed to build)."""
        if self._closed:
            return
        self._closed = True
        self._cancel_confirm()
        self._pressed_at = None
        self._counted = False
        try:
            self._device.close()  # also drops the when_* handlers
        except Exception as err:
            raise gpio_error(self._what, self.spec.pin, err) from err

    def _level(self) -> bool:
        return bool(self._device.is_active)

    def _on_edge(self, active: bool, at: float) -> None:
        """Runs in the loop thread for every edge the driver reported, in order."""
        if self._closed:
            return
        if active:
            if self._pressed_at is None:
                self._pressed_at = at
                delay = max(0.0, at + self._min_press_s - time.monotonic())
                assert self._loop is not None
                self._confirm = self._loop.call_later(delay, self._confirm_press)
            return
        if self._pressed_at is None:
            return
        held = at - self._pressed_at
        self._pressed_at = None
        self._cancel_confirm()
        if not self._counted and held >= self._min_press_s:
            # The loop was too busy to run the confirmation in time; the edges decide.
            self._count_press()
        if self._counted:
            self._counted = False
            fire(f"{self._what} release", self.on_release)
        else:
            _log.debug("%s: ignored a %.0f ms press", self._what, held * 1000)

    def _confirm_press(self) -> None:
        self._confirm = None
        if self._closed or self._pressed_at is None or self._counted:
            return
        if not self._level():
            # The release edge was lost (a driver's bounce window swallowed it).
            _log.debug("%s: press ended without a release edge; ignored", self._what)
            self._pressed_at = None
            return
        self._count_press()

    def _count_press(self) -> None:
        self._counted = True
        fire(f"{self._what} press", self.on_press)

    def _cancel_confirm(self) -> None:
        if self._confirm is not None:
            self._confirm.cancel()
            self._confirm = None
