"""`SimulatedInput`: the start/close life of an input driven by code (sim board, tests).

`SimKeypad` and `SimCardReader` take presses and cards only between ``start()`` and
``close()``, like their hardware back-ends: a press before the start is an error, not a
silent no-op, and a closed one cannot start again.
"""

from __future__ import annotations

from hal.errors import DeviceUnavailableError


class SimulatedInput:
    """Mixed into a simulated back-end before its interface (``name`` comes from that)."""

    name: str
    _started = False
    _closed = False

    async def start(self) -> None:
        """Accept input from now on; DeviceUnavailableError once closed."""
        if self._closed:
            raise DeviceUnavailableError(f"{self.name} is closed")
        self._started = True

    async def close(self) -> None:
        """Ignore input from now on."""
        self._closed = True
        self._started = False

    def require_started(self) -> None:
        """DeviceUnavailableError unless started (input before the start is a test's bug)."""
        if not self._started:
            raise DeviceUnavailableError(f"{self.name} is not started")
