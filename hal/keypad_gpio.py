"""A matrix keypad on GPIO pins, read with gpiozero.

Rows are outputs (active low), columns inputs with pull-ups. Idle, every row is driven
active, so any key pulls its column low: that edge (gpiozero's callback, in its driver
thread) wakes a scan task in the event loop. The task drives one row at a time and reads
the columns every ``scan_ms`` until every key is released again, then drives all rows
active and goes back to waiting for an edge: an idle keypad costs no CPU.

What counts:
- a key counts once it reads the same (alone) for ``debounce_ms``; it is reported once,
  however long it is held;
- two or more keys down at once report **neither** (a chord is a finger slip, or the
  ghost keys a diode-less matrix shows with three keys down); after a report, nothing
  more is reported until every key is released (no roll-over: keypads are pressed one
  key at a time).

The scan does a handful of pin writes and reads in the loop thread (microseconds with
lgpio), as the other GPIO back-ends do, and gives the column lines ``SETTLE_S`` after each
row change (an ``asyncio.sleep``: about a millisecond per row in practice, a few ms a scan).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from hal.errors import DeviceUnavailableError, HalError
from hal.gpio import call_in_loop, gpio_error, open_gpio
from hal.gpio_specs import MatrixKeypadSpec
from hal.keypad import Keypad

__all__ = ["GpioMatrixKeypad"]

_log = logging.getLogger(__name__)

SETTLE_S = 0.0002
"""Time the column lines get after a row changes, before they are read."""


class GpioMatrixKeypad(Keypad):
    """A rows x columns key matrix on GPIO (see the module docstring).

    The pins are claimed on construction (HalError naming the pin for a bad name or one
    another device holds; the pins claimed so far are released again).
    """

    def __init__(self, spec: MatrixKeypadSpec, *, pin_factory: Any, name: str = "keypad") -> None:
        """Claim the row pins as outputs (driven active) and the column pins as inputs."""
        from gpiozero import DigitalInputDevice, DigitalOutputDevice

        super().__init__(name)
        self.spec = spec
        self._rows: list[Any] = []
        self._columns: list[Any] = []
        try:
            for pin in spec.rows:
                self._rows.append(
                    open_gpio(
                        f"{name} row",
                        pin,
                        functools.partial(
                            DigitalOutputDevice,
                            pin,
                            active_high=False,
                            initial_value=True,
                            pin_factory=pin_factory,
                        ),
                    )
                )
            for pin in spec.columns:
                self._columns.append(
                    open_gpio(
                        f"{name} column",
                        pin,
                        functools.partial(
                            DigitalInputDevice,
                            pin,
                            pull_up=True,
                            bounce_time=None,
                            pin_factory=pin_factory,
                        ),
                    )
                )
        except HalError:
            self._release_pins()
            raise
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def is_scanning(self) -> bool:
        """True while a key is down (or was less than ``debounce_ms`` ago): scans run."""
        return self._task is not None and not self._task.done()

    async def wait_idle(self) -> None:
        """Return once no scan runs (every key released and debounced)."""
        while (task := self._task) is not None and not task.done():
            await asyncio.wait({task})

    async def start(self) -> None:
        """Watch the columns; a key already down starts a scan now."""
        if self._closed:
            raise DeviceUnavailableError(f"{self.name} is closed")
        if self._loop is not None:
            return
        loop = self._loop = asyncio.get_running_loop()
        for column in self._columns:
            column.when_activated = lambda: call_in_loop(loop, self._wake)
        if self._any_column_active():
            self._wake()

    async def close(self) -> None:
        """Stop scanning and release the pins; idempotent."""
        task = self._task
        self.release()
        if task is not None and task is not asyncio.current_task():
            await asyncio.gather(task, return_exceptions=True)

    def release(self) -> None:
        """What ``close()`` does, callable without awaiting (a board that failed to build)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._release_pins()

    def _release_pins(self) -> None:
        first: HalError | None = None
        for device, pin in (
            *zip(self._columns, self.spec.columns, strict=False),
            *zip(self._rows, self.spec.rows, strict=False),
        ):
            try:
                device.close()  # also drops the when_* handlers
            except Exception as err:  # noqa: BLE001 - release the other pins too
                first = first or gpio_error(self.name, pin, err)
        self._columns.clear()
        self._rows.clear()
        if first is not None:
            raise first

    def _wake(self) -> None:
        """A column went low (loop thread): scan until every key is up, unless scanning."""
        if self._closed or (self._task is not None and not self._task.done()):
            return
        assert self._loop is not None
        self._task = self._loop.create_task(self._scan_until_released(), name=f"{self.name} scan")

    def _any_column_active(self) -> bool:
        return any(column.is_active for column in self._columns)

    def _drive_rows(self, active: int | None) -> None:
        """Drive row ``active`` (None: every row) active and the others inactive."""
        for index, row in enumerate(self._rows):
            if active is None or index == active:
                row.on()
            else:
                row.off()

    async def _scan(self) -> frozenset[tuple[int, int]]:
        """Every (row, column) that reads pressed now; leaves every row driven active.

        After each row change the columns get ``SETTLE_S`` to follow: a column a key held low
        through the previous row rises through the ~50 kΩ pull-up and the cable's capacitance,
        and read at once it would show a key of the next row too (a false chord).
        """
        down: set[tuple[int, int]] = set()
        try:
            for r in range(len(self._rows)):
                self._drive_rows(r)
                await asyncio.sleep(SETTLE_S)
                down.update((r, c) for c, col in enumerate(self._columns) if col.is_active)
        finally:
            self._drive_rows(None)
        return frozenset(down)

    async def _scan_until_released(self) -> None:
        interval = self.spec.scan_ms / 1000.0
        debounce = self.spec.debounce_ms / 1000.0
        loop = asyncio.get_running_loop()
        reported = False
        candidate: frozenset[tuple[int, int]] | None = None
        since = loop.time()
        try:
            while not self._closed:
                down = await self._scan()
                now = loop.time()
                if down != candidate:
                    candidate, since = down, now
                stable = now - since >= debounce
                if stable and not down:
                    if not self._any_column_active():
                        return  # every key up: back to waiting for an edge
                elif stable and not reported:
                    reported = True
                    self._report(down)
                await asyncio.sleep(interval)
        except Exception:  # noqa: BLE001 - a driver error ends this scan, not the loop
            _log.exception(
                "%s: scanning the matrix failed; the next key press scans again", self.name
            )

    def _report(self, down: frozenset[tuple[int, int]]) -> None:
        if len(down) > 1:
            keys = "".join(sorted(self.spec.keys[r][c] for r, c in down))
            _log.info("%s: %d keys down at once (%s): none reported", self.name, len(down), keys)
            return
        ((r, c),) = down
        self.key_pressed(self.spec.keys[r][c])
