"""Shared by the GPIO tests: a MockPin to wait on, and a check for leaked background threads.

gpiozero's MockPin with a way to wait for its changes, and the check that no gpiozero or callbox
background thread outlives a test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin
from gpiozero.threads import GPIOThread

TIMEOUT = 3.0


class WatchedPin(MockPin):  # type: ignore[misc]  # gpiozero has no type hints
    """The MockPin of gpiozero, plus a condition notified on every state change.

    So a test can wait for "the relay went off" or "the LED toggled N times" instead of sleeping.
    """

    def __init__(self, factory: Any, info: Any) -> None:
        self.changed = threading.Condition()
        super().__init__(factory, info)

    def _change_state(self, value: bool) -> bool:
        changed = bool(super()._change_state(value))
        if changed:
            with self.changed:
                self.changed.notify_all()
        return changed

    def wait_until(self, predicate: Callable[[WatchedPin], bool], timeout: float) -> bool:
        """Block the calling thread until ``predicate(pin)`` holds; False on timeout."""
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)

    async def reach(
        self, predicate: Callable[[WatchedPin], bool], timeout: float = TIMEOUT
    ) -> None:
        """Wait (without blocking the loop) until ``predicate(pin)`` holds; fail on timeout."""
        reached = await asyncio.to_thread(self.wait_until, predicate, timeout)
        assert reached, f"pin {self.info.name} never reached the expected state: {self.states}"


def watched_factory() -> Any:
    """A fresh MockFactory whose pins are WatchedPins."""
    return MockFactory(pin_class=WatchedPin)


def is_high(pin: WatchedPin) -> bool:
    """Predicate: the pin is high."""
    return bool(pin.state)


def is_low(pin: WatchedPin) -> bool:
    """Predicate: the pin is low."""
    return not pin.state


def gpio_threads() -> list[threading.Thread]:
    """The background threads of gpiozero alive now (blink threads)."""
    return [t for t in threading.enumerate() if isinstance(t, GPIOThread) and t.is_alive()]
