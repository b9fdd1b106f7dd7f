"""The GPIO matrix keypad on gpiozero's MockFactory, keys pressed through a wired KeyMatrix.

Real gpiozero devices on mock pins linked like a key matrix (tests/hal/keypad_helpers.py): a
pressed key joins its row output to its column input. Idle rows are all driven; an edge starts
a scan; a key counts once after debounce, held keys report once, chords report nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from gpio_helpers import TIMEOUT
from gpiozero.pins.mock import MockFactory
from keypad_helpers import KeyMatrix

from hal.errors import HalError
from hal.gpio_specs import MatrixKeypadSpec
from hal.keypad_gpio import GpioMatrixKeypad

ROWS = ("GPIO4", "GPIO14", "GPIO15", "GPIO18")
COLUMNS = ("GPIO23", "GPIO25", "GPIO8")
KEYS = ("123", "456", "789", "*0#")
SPEC = MatrixKeypadSpec(rows=ROWS, columns=COLUMNS, keys=KEYS, debounce_ms=15, scan_ms=2)


@pytest.fixture
def factory() -> Iterator[Any]:
    pin_factory = MockFactory()
    yield pin_factory
    pin_factory.close()


class Wired:
    """A started keypad on a KeyMatrix, and the keys it reported."""

    def __init__(self, keypad: GpioMatrixKeypad, matrix: KeyMatrix) -> None:
        self.keypad = keypad
        self.matrix = matrix
        self.keys: asyncio.Queue[str] = asyncio.Queue()
        keypad.on_key = self.keys.put_nowait

    async def key(self) -> str:
        return await asyncio.wait_for(self.keys.get(), TIMEOUT)

    async def idle(self) -> None:
        """Wait until the keypad stopped scanning (every key released and debounced)."""
        await asyncio.wait_for(self.keypad.wait_idle(), TIMEOUT)

    async def tap(self, row: int, column: int) -> str:
        """Press a key until the keypad reports it, then release it; the key reported."""
        self.matrix.press(row, column)
        key = await self.key()
        self.matrix.release(row, column)
        await self.idle()
        return key

    def reported(self) -> list[str]:
        keys = []
        while not self.keys.empty():
            keys.append(self.keys.get_nowait())
        return keys


@pytest.fixture
async def wired(factory: Any) -> AsyncIterator[Wired]:
    matrix = KeyMatrix(factory, ROWS, COLUMNS)
    keypad = GpioMatrixKeypad(SPEC, pin_factory=factory)
    await keypad.start()
    yield Wired(keypad, matrix)
    await keypad.close()


async def test_idle_keypad_drives_every_row_and_does_not_scan(wired: Wired) -> None:
    assert wired.matrix.rows_driven_low() == [True] * len(ROWS)
    await asyncio.sleep(0.05)
    assert not wired.keypad.is_scanning


async def test_every_key_of_a_4x3_matrix_reports_its_label(wired: Wired) -> None:
    for r, row in enumerate(KEYS):
        for c, label in enumerate(row):
            assert await wired.tap(r, c) == label
    assert wired.reported() == []
    assert wired.matrix.rows_driven_low() == [True] * len(ROWS)


async def test_a_held_key_reports_once_and_again_after_release(wired: Wired) -> None:
    wired.matrix.press(1, 2)
    assert await wired.key() == "6"
    await asyncio.sleep(0.2)  # held for many scans and debounce periods
    assert wired.keypad.is_scanning
    wired.matrix.release(1, 2)
    await wired.idle()
    assert wired.reported() == []
    assert await wired.tap(1, 2) == "6"
    assert wired.reported() == []


async def test_contact_chatter_shorter_than_debounce_counts_once(wired: Wired) -> None:
    for _ in range(5):  # a bouncing contact: on/off every millisecond
        wired.matrix.press(3, 1)
        await asyncio.sleep(0.001)
        wired.matrix.release(3, 1)
        await asyncio.sleep(0.001)
    wired.matrix.press(3, 1)
    assert await wired.key() == "0"
    wired.matrix.release(3, 1)
    await wired.idle()
    assert wired.reported() == []


async def test_a_blip_shorter_than_debounce_reports_nothing(wired: Wired) -> None:
    wired.matrix.press(0, 0)
    await asyncio.sleep(0.003)
    wired.matrix.release(0, 0)
    await wired.idle()
    assert wired.reported() == []


async def test_two_keys_at_once_report_neither(
    wired: Wired, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hal.keypad_gpio")
    wired.matrix.press(0, 0)
    wired.matrix.press(2, 2)
    await asyncio.sleep(0.1)
    wired.matrix.release_all()
    await wired.idle()
    assert wired.reported() == []
    assert "2 keys down at once (19): none reported" in caplog.text
    assert await wired.tap(0, 0) == "1"


async def test_a_second_key_while_one_is_held_reports_nothing_more(wired: Wired) -> None:
    wired.matrix.press(0, 1)
    assert await wired.key() == "2"
    wired.matrix.press(0, 2)
    await asyncio.sleep(0.05)
    wired.matrix.release(0, 1)  # "3" now alone, but the keypad waits for every key up
    await asyncio.sleep(0.05)
    wired.matrix.release(0, 2)
    await wired.idle()
    assert wired.reported() == []


async def test_a_key_held_at_start_is_reported(factory: Any) -> None:
    matrix = KeyMatrix(factory, ROWS, COLUMNS)
    keypad = GpioMatrixKeypad(SPEC, pin_factory=factory)
    matrix.press(2, 0)
    wired = Wired(keypad, matrix)
    await keypad.start()
    try:
        assert await wired.key() == "7"
    finally:
        await keypad.close()


async def test_close_stops_reports_releases_pins_and_is_idempotent(factory: Any) -> None:
    matrix = KeyMatrix(factory, ROWS, COLUMNS)
    keypad = GpioMatrixKeypad(SPEC, pin_factory=factory)
    wired = Wired(keypad, matrix)
    await keypad.start()
    matrix.press(0, 0)
    await keypad.close()
    await keypad.close()
    await asyncio.sleep(0.05)
    assert wired.reported() == []
    again = GpioMatrixKeypad(SPEC, pin_factory=factory)  # every pin was released
    again.release()


def test_a_pin_in_use_is_a_hal_error_naming_it_and_nothing_stays_claimed(factory: Any) -> None:
    from gpiozero import DigitalInputDevice

    holder = DigitalInputDevice("GPIO25", pin_factory=factory)
    try:
        with pytest.raises(HalError, match="keypad column on pin 'GPIO25': already in use"):
            GpioMatrixKeypad(SPEC, pin_factory=factory)
    finally:
        holder.close()
    GpioMatrixKeypad(SPEC, pin_factory=factory).release()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (dict(keys=("123", "456", "789")), "keys must be 4 strings"),
        (dict(keys=("123", "456", "789", "*0")), "of 3 keys"),
        (dict(keys=("123", "456", "789", "*0x")), "'x' is not a keypad key"),
        (dict(columns=("GPIO23", "GPIO25", "GPIO4")), "GPIO4 is used twice"),
        (dict(rows=()), "1 to 8 rows"),
    ],
)
def test_bad_layouts_are_refused(spec: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"rows": ROWS, "columns": COLUMNS, "keys": KEYS, **spec}
    with pytest.raises(HalError, match=message):
        MatrixKeypadSpec(**fields)
