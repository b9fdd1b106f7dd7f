"""Keypads and card readers in ``IoSpec``/``IoDevices``, real and simulated.

``build_io`` builds them on one pin factory with the other devices (a pin used twice is a
HalError naming it), starts and closes them and shows them in ``state()``; on the sim board
they become ``SimKeypad``/``SimCardReader``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hal.board import build_sim_board, build_sim_io
from hal.cards import CardRead, SimCardReader
from hal.errors import HalError
from hal.gpio_specs import (
    ButtonRole,
    ButtonSpec,
    EvdevKeypadSpec,
    IoSpec,
    MatrixKeypadSpec,
    Pn532Spec,
    RelaySpec,
    WiegandSpec,
)
from hal.io_devices import build_io
from hal.keypad import SimKeypad
from hal.keypad_evdev import EvdevKeypad
from hal.keypad_gpio import GpioMatrixKeypad
from hal.pn532 import Pn532Reader
from hal.wiegand import GpioWiegandReader

MATRIX = MatrixKeypadSpec(
    rows=("GPIO4", "GPIO14", "GPIO15", "GPIO18"),
    columns=("GPIO23", "GPIO25", "GPIO8"),
    keys=("123", "456", "789", "*0#"),
)
WIEGAND = WiegandSpec(d0="GPIO20", d1="GPIO21")


async def test_build_io_wires_a_matrix_keypad_and_card_readers() -> None:
    io = build_io(
        IoSpec(
            pin_factory="mock",
            relay=RelaySpec(pin="GPIO24"),
            keypad=MATRIX,
            card_readers={"entrance": WIEGAND, "lobby": Pn532Spec(poll_ms=50)},
        )
    )
    try:
        assert isinstance(io.keypad, GpioMatrixKeypad)
        assert isinstance(io.card_readers["entrance"], GpioWiegandReader)
        assert isinstance(io.card_readers["lobby"], Pn532Reader)
        assert io.card_readers["entrance"].name == "entrance"
        assert io.pin_factory.pin("GPIO4").function == "output"
        assert io.pin_factory.pin("GPIO21").function == "input"
        await io.start()
        state = io.state()
        assert state["keypad"] == {"name": "keypad", "connected": True}
        assert state["card_readers"]["entrance"] is True
        assert set(state["card_readers"]) == {"entrance", "lobby"}
    finally:
        await io.close()
        await io.close()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            IoSpec(relay=RelaySpec(pin="GPIO14"), keypad=MATRIX),
            "keypad row on pin 'GPIO14': already in use",
        ),
        (
            IoSpec(
                buttons={ButtonRole.DOORBELL: ButtonSpec(pin="GPIO21")},
                card_readers={"entrance": WIEGAND},
            ),
            "Wiegand reader 'entrance' d1 on pin 'GPIO21': already in use",
        ),
        (
            IoSpec(keypad=MATRIX, card_readers={"entrance": WiegandSpec(d0="GPIO8", d1="GPIO7")}),
            "'entrance' d0 on pin 'GPIO8': already in use",
        ),
        (
            IoSpec(keypad=MatrixKeypadSpec(rows=("GPIO99",), columns=("GPIO5",), keys=("1",))),
            "keypad row on pin 'GPIO99': not a pin of this board",
        ),
    ],
    ids=["keypad-vs-relay", "wiegand-vs-button", "wiegand-vs-keypad", "bad-pin"],
)
def test_a_bad_or_twice_used_pin_names_it(spec: IoSpec, message: str) -> None:
    import dataclasses

    with pytest.raises(HalError, match=message):
        build_io(dataclasses.replace(spec, pin_factory="mock"))


async def test_an_evdev_keypad_needs_no_gpio() -> None:
    io = build_io(
        IoSpec(pin_factory="lgpio", keypad=EvdevKeypadSpec(device="/dev/input/event-missing"))
    )
    assert io.pin_factory is None  # nothing on GPIO: lgpio not loaded
    assert isinstance(io.keypad, EvdevKeypad)
    await io.start()  # a missing device is logged and retried, not fatal
    assert io.state()["keypad"] == {"name": "keypad", "connected": False}
    await io.close()


async def test_the_sim_board_simulates_the_configured_keypad_and_readers(tmp_path: Path) -> None:
    spec = IoSpec(
        buttons={ButtonRole.DOORBELL: ButtonSpec(pin="GPIO4")},  # a keypad row pin: unclaimed
        keypad=MATRIX,
        card_readers={"entrance": WIEGAND, "lobby": Pn532Spec()},
    )
    board = build_sim_board(io=spec, sysfs_root=tmp_path)
    try:
        io = board.io
        assert isinstance(io.keypad, SimKeypad)
        assert {name: type(r) for name, r in io.card_readers.items()} == {
            "entrance": SimCardReader,
            "lobby": SimCardReader,
        }
        keys: list[str] = []
        cards: list[CardRead] = []
        io.keypad.on_key = keys.append
        io.card_readers["lobby"].on_card = cards.append
        await io.start()
        io.keypad.press("12#")
        lobby = io.card_readers["lobby"]
        assert isinstance(lobby, SimCardReader)
        lobby.present("nfc", "04a1b2c3")
        assert keys == ["1", "2", "#"]
        assert cards == [CardRead("lobby", "nfc", "04a1b2c3")]
    finally:
        await board.close()


async def test_a_sim_board_without_a_keypad_has_none() -> None:
    io = build_sim_io(IoSpec())
    assert io.keypad is None and not io.card_readers
    assert io.state()["keypad"] is None
    await io.close()


def test_card_readers_need_names() -> None:
    with pytest.raises(HalError, match="needs a name"):
        IoSpec(card_readers={"": WIEGAND})
