"""A key matrix on gpiozero's MockFactory: press key (row, column) and the pins follow.

Each row pin is a ``MatrixRowPin``, a MockPin that (like gpiozero's MockConnectedPin, which
links one output to one input) drives the column inputs of the pressed keys of its row when
its own output state changes: a column reads low while a pressed key joins it to a row
driven low, high (its pull-up) otherwise. Real gpiozero devices on real mock pins: the
keypad back-end under test cannot tell it from a wired matrix.
"""

from __future__ import annotations

from typing import Any

from gpiozero.pins.mock import MockPin


class MatrixRowPin(MockPin):  # type: ignore[misc]  # gpiozero has no type hints
    """A row pin of a ``KeyMatrix``: its changes reach the columns of pressed keys."""

    def __init__(self, factory: Any, info: Any, matrix: KeyMatrix | None = None) -> None:
        self.matrix = matrix
        super().__init__(factory, info)

    def _change_state(self, value: bool) -> bool:
        changed = bool(super()._change_state(value))
        if changed and self.matrix is not None:
            self.matrix.update()
        return changed


class KeyMatrix:
    """The keys of a matrix wired between ``rows`` and ``columns`` pins of ``factory``.

    Build it before the keypad claims the pins (it creates them with their classes).
    """

    def __init__(self, factory: Any, rows: tuple[str, ...], columns: tuple[str, ...]) -> None:
        self.pressed: set[tuple[int, int]] = set()
        self.rows = [factory.pin(name, pin_class=MatrixRowPin, matrix=self) for name in rows]
        self.columns = [factory.pin(name) for name in columns]

    def press(self, row: int, column: int) -> None:
        """Close the switch of key (row, column)."""
        self.pressed.add((row, column))
        self.update()

    def release(self, row: int, column: int) -> None:
        """Open the switch of key (row, column)."""
        self.pressed.discard((row, column))
        self.update()

    def release_all(self) -> None:
        """Open every switch."""
        self.pressed.clear()
        self.update()

    def update(self) -> None:
        """Drive each column: low when a pressed key joins it to a row driven low."""
        for index, column in enumerate(self.columns):
            if column.function != "input" or column.pull != "up":
                continue  # not claimed by the keypad yet: floating
            low = any(
                self.rows[r].function == "output" and not self.rows[r].state
                for r, c in self.pressed
                if c == index
            )
            if low:
                column.drive_low()
            else:
                column.drive_high()

    def rows_driven_low(self) -> list[bool]:
        """Which rows the keypad drives active (low) now."""
        return [row.function == "output" and not row.state for row in self.rows]
