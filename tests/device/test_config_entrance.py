"""``[keypad]`` and ``[[card_readers]]`` in callbox.toml: parsing, HAL specs, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.config import ConfigError, apply_of, parse_config
from device.config._apply import Apply
from hal.gpio_specs import EvdevKeypadSpec, MatrixKeypadSpec, Pn532Spec, WiegandSpec

FILE = Path("/etc/callbox/callbox.toml")
DOOR = 'role = "door"\naddress = "door"\nsite = "home"\ntargets = ["flat1"]\n'
MATRIX = """
[keypad]
kind = "matrix"
rows = ["GPIO4", "GPIO14", "GPIO15", "GPIO18"]
columns = ["GPIO23", "GPIO25", "GPIO8"]
keys = ["123", "456", "789", "*0#"]
"""
WIEGAND = """
[[card_readers]]
name = "entrance"
kind = "wiegand"
d0 = "GPIO20"
d1 = "GPIO21"
"""
PN532 = """
[[card_readers]]
name = "lobby"
kind = "pn532"
"""


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    return dict(info.value.problems)


def test_the_design_example_parses_into_hal_specs() -> None:
    spec = parse_config(DOOR + MATRIX + WIEGAND + PN532).io_spec()
    assert spec.keypad == MatrixKeypadSpec(
        rows=("GPIO4", "GPIO14", "GPIO15", "GPIO18"),
        columns=("GPIO23", "GPIO25", "GPIO8"),
        keys=("123", "456", "789", "*0#"),
    )
    assert dict(spec.card_readers) == {
        "entrance": WiegandSpec(d0="GPIO20", d1="GPIO21"),
        "lobby": Pn532Spec(interface="i2c", i2c_bus=1, i2c_address=0x24),
    }


def test_an_evdev_keypad_and_a_pn532_on_spi() -> None:
    text = DOOR + (
        '[keypad]\nkind = "evdev"\ndevice = "/dev/input/by-id/usb-kp-event-kbd"\ngrab = false\n'
        '[[card_readers]]\nname = "gate"\nkind = "pn532"\ninterface = "spi"\ncs = 7\n'
        "poll_ms = 100\n"
    )
    spec = parse_config(text).io_spec()
    assert spec.keypad == EvdevKeypadSpec(device="/dev/input/by-id/usb-kp-event-kbd", grab=False)
    assert spec.card_readers["gate"] == Pn532Spec(interface="spi", cs="GPIO7", poll_ms=100)


def test_a_door_without_the_tables_has_neither() -> None:
    spec = parse_config(DOOR).io_spec()
    assert spec.keypad is None and not spec.card_readers


def test_a_keys_layout_that_does_not_match_rows_by_columns() -> None:
    text = DOOR + MATRIX.replace('"*0#"]', '"*0"]')
    assert problems(text) == {"keypad.keys.3": "'*0' has 2 keys but the keypad has 3 columns"}
    text = DOOR + MATRIX.replace(', "*0#"]', "]")
    assert "has 3 strings but the keypad has 4 rows" in problems(text)["keypad.keys"]


def test_a_key_not_on_a_keypad_is_named() -> None:
    found = problems(DOOR + MATRIX.replace('"789"', '"78x"'))
    assert found == {
        "keypad.keys.2": "'x' is not a keypad key (keys: 0-9, *, #, A-D); one key per column"
    }


def test_a_4x4_keypad_with_letters() -> None:
    text = DOOR + MATRIX.replace('"GPIO8"]', '"GPIO8", "GPIO7"]').replace(
        '["123", "456", "789", "*0#"]', '["123A", "456B", "789C", "*0#D"]'
    )
    spec = parse_config(text).io_spec()
    assert isinstance(spec.keypad, MatrixKeypadSpec) and spec.keypad.keys[3] == "*0#D"


def test_keypad_kind_is_required_and_checked() -> None:
    assert problems(DOOR + MATRIX.replace('kind = "matrix"\n', "")) == {
        "keypad.kind": "must be 'matrix' or 'evdev'"
    }
    assert problems(DOOR + '[keypad]\nkind = "usb"\n') == {
        "keypad.kind": "must be 'matrix' or 'evdev'"
    }
    found = problems(DOOR + '[[card_readers]]\nname = "a"\nkind = "rfid"\n')
    assert found == {"card_readers.0.kind": "must be 'wiegand' or 'pn532'"}


def test_keys_of_the_other_kind_are_named() -> None:
    found = problems(DOOR + '[keypad]\nkind = "evdev"\ndevice = "/dev/input/event3"\nrows = []\n')
    assert list(found) == ["keypad.rows"] and found["keypad.rows"].startswith("unknown key")
    found = problems(DOOR + WIEGAND.replace('d1 = "GPIO21"', 'd1 = "GPIO21"\ncs = "GPIO7"'))
    assert list(found) == ["card_readers.0.cs"]
    found = problems(DOOR + WIEGAND.replace('d1 = "GPIO21"\n', ""))
    assert found == {"card_readers.0.d1": "is required but missing"}


def test_an_evdev_device_outside_dev_input_is_refused() -> None:
    found = problems(DOOR + '[keypad]\nkind = "evdev"\ndevice = "/tmp/kbd"\n')
    assert "a path under /dev/input/" in found["keypad.device"]


def test_duplicate_reader_names() -> None:
    text = DOOR + WIEGAND + WIEGAND.replace("GPIO20", "GPIO5").replace("GPIO21", "GPIO6")
    assert problems(text) == {"card_readers.1.name": "'entrance' is already card_readers.0"}


def test_spi_without_cs_and_cs_without_spi() -> None:
    found = problems(DOOR + PN532 + 'interface = "spi"\n')
    assert found == {
        "card_readers.0.cs": "is required with interface = 'spi': the chip-select GPIO"
    }
    found = problems(DOOR + PN532 + 'cs = "GPIO8"\n')
    assert found == {"card_readers.0.cs": "is only for interface = 'spi'"}


def test_every_keypad_and_reader_pin_counts_for_uniqueness() -> None:
    found = problems(DOOR + MATRIX + WIEGAND.replace("GPIO21", "GPIO14"))
    assert found == {"card_readers.0.d1": "GPIO14 is already used by keypad.rows.1"}
    found = problems(DOOR + '[relay]\npin = "GPIO23"\n' + MATRIX)
    assert found == {"keypad.columns.0": "GPIO23 is already used by relay.pin"}
    found = problems(DOOR + MATRIX.replace('"GPIO18"]', '"GPIO4"]'))
    assert found == {"keypad.rows.3": "GPIO4 is already used by keypad.rows.0"}
    # a PN532 on SPI0: MOSI/MISO/SCLK and its cs; GPIO8 (CE0) is a keypad column here
    found = problems(DOOR + MATRIX + PN532 + 'interface = "spi"\ncs = "GPIO8"\n')
    assert found == {"card_readers.0.cs": "GPIO8 is already used by keypad.columns.2"}
    found = problems(
        DOOR + '[inputs.mute]\npin = "GPIO10"\n' + PN532 + 'interface = "spi"\ncs = 7\n'
    )
    assert found == {"card_readers.0.interface": "GPIO10 is already used by inputs.mute.pin"}


def test_i2c_and_spi_devices_share_their_bus() -> None:
    text = DOOR + '[proximity]\nkind = "i2c"\n' + PN532
    text += '[[card_readers]]\nname = "b"\nkind = "pn532"\ni2c_address = 0x25\n'
    assert set(parse_config(text).io_spec().card_readers) == {"lobby", "b"}
    text = DOOR + PN532 + 'interface = "spi"\ncs = 8\n'
    text += '[[card_readers]]\nname = "b"\nkind = "pn532"\ninterface = "spi"\ncs = 7\n'
    assert set(parse_config(text).io_spec().card_readers) == {"lobby", "b"}
    found = problems(DOOR + '[inputs.mute]\npin = "GPIO2"\n' + PN532)
    assert found == {"card_readers.0.bus": "GPIO2 is already used by inputs.mute.pin"}


def test_only_a_door_station_has_a_keypad_or_readers() -> None:
    indoor = DOOR.replace('"door"\naddress', '"indoor"\naddress').replace(
        'targets = ["flat1"]\n', ""
    )
    found = problems(indoor + MATRIX + WIEGAND)
    assert found == {
        "keypad": "only a door station has a keypad; remove [keypad] here",
        "card_readers": "only a door station reads cards; remove [[card_readers]] here",
    }


def test_both_tables_apply_as_devices() -> None:
    assert apply_of("keypad") is Apply.DEVICES
    assert apply_of("card_readers") is Apply.DEVICES
    assert apply_of("keypad.rows") is Apply.DEVICES


def test_the_example_tables_parse_once_uncommented() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "callbox.example.toml"
    text = example.read_text()
    start = text.index("# [keypad]")
    block = text[start : text.index("\n\n", start)]
    wanted: tuple[str, ...] = (
        "[keypad]",
        'kind = "matrix"',
        "rows",
        "columns",
        "keys",
        "debounce_ms",
    )
    wanted += ("[[card_readers]]", "name", 'kind = "wiegand"', "d0", "d1")
    lines = [line.removeprefix("# ") for line in block.splitlines() if line[2:].startswith(wanted)]
    spec = parse_config(text.replace(block, "\n".join(lines))).io_spec()
    assert isinstance(spec.keypad, MatrixKeypadSpec) and spec.keypad.keys[3] == "*0#"
    assert spec.card_readers == {"entrance": WiegandSpec(d0="GPIO12", d1="GPIO9")}


async def test_the_daemons_sim_board_simulates_the_configured_keypad_and_readers() -> None:
    from device.daemon._app import sim_board_io
    from hal.board import build_sim_io
    from hal.cards import SimCardReader
    from hal.keypad import SimKeypad

    # simulated: no pin of the keypad or the Wiegand reader is claimed on the sim board
    config = parse_config(DOOR + MATRIX + WIEGAND + PN532 + '[relay]\npin = "GPIO12"\n')
    io = build_sim_io(sim_board_io(config.io_spec()))
    try:
        assert isinstance(io.keypad, SimKeypad)
        assert set(io.card_readers) == {"entrance", "lobby"}
        assert all(isinstance(r, SimCardReader) for r in io.card_readers.values())
        assert io.pin_factory.pin("GPIO4").function == "input"  # a keypad row: not claimed
    finally:
        await io.close()
