"""Keypads at the door: the ``Keypad`` interface and its simulated back-end.

A keypad reports single keys: ``"0"`` .. ``"9"``, ``"*"``, ``"#"`` (and ``"A"`` .. ``"D"``
on a 4x4 matrix). What a sequence of keys means (a dial code, an access code) is the
service's business (``services/access``), not the HAL's. Back-ends: a GPIO matrix keypad
and a USB keypad through evdev (``hal.keypad_gpio``, ``hal.keypad_evdev``), and
``SimKeypad`` for the sim board and tests. Callbacks run in the event loop thread.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from hal.gpio import fire
from hal.sim_input import SimulatedInput

__all__ = ["KEYS", "Keypad", "SimKeypad"]

KEYS = frozenset("0123456789*#ABCD")
"""Every key a keypad may report."""


class Keypad(abc.ABC):
    """A keypad; the service sets ``on_key`` (one call per key press, in order)."""

    name: str
    on_key: Callable[[str], None] | None

    def __init__(self, name: str = "keypad") -> None:
        """A keypad called ``name`` (for logs and status) with no callback yet."""
        self.name = name
        self.on_key = None

    @property
    def is_connected(self) -> bool:
        """False while the keypad is known to be gone (a USB keypad unplugged); for status."""
        return True

    @abc.abstractmethod
    async def start(self) -> None:
        """Start reporting keys to ``on_key`` (call from the event loop)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop reporting and release the device; calling it again does nothing."""

    def key_pressed(self, key: str) -> None:
        """Report ``key`` to ``on_key`` (back-ends call this in the loop thread)."""
        fire(f"{self.name} key", self.on_key, key)


class SimKeypad(SimulatedInput, Keypad):
    """A keypad pressed by code: the sim board's, and the tests'."""

    def press(self, keys: str) -> None:
        """Press each key of ``keys`` in turn; ValueError for a key no keypad has."""
        bad = sorted(set(keys) - KEYS)
        if bad:
            raise ValueError(f"{self.name}: no key {', '.join(map(repr, bad))} on a keypad")
        self.require_started()
        for key in keys:
            self.key_pressed(key)
