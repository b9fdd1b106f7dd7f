"""``[keypad]`` and ``[[card_readers]]``: an entrance panel's keypad and card readers.

Its own module so the tables, their checks across keys, their pins and their HAL specs
stay together (docs/hardware.md, "Keypads and card readers"). Both are door-station
hardware and apply as ``Apply.DEVICES`` (the GPIO devices are claimed again).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Final, Literal

from pydantic import AfterValidator, Discriminator, Field, StrictBool, StrictInt, StrictStr, Tag

from device.config._apply import Apply
from device.config._models import I2C_PINS, DebounceMs, Name, Pin, Section
from hal.gpio_specs import (
    CardReaderSpec,
    EvdevKeypadSpec,
    KeypadSpec,
    MatrixKeypadSpec,
    Pn532Spec,
    WiegandSpec,
)
from hal.keypad import KEYS

if TYPE_CHECKING:
    from device.config._file import CallboxConfig

KEYPAD_KINDS: Final = ("matrix", "evdev")
CARD_READER_KINDS: Final = ("wiegand", "pn532")
SPI0_PINS: Final = ("GPIO9", "GPIO10", "GPIO11")
"""MISO, MOSI and SCLK of the Pi's SPI0 (a PN532 on SPI; its chip select is ``cs``)."""
_KEY_NAMES: Final = "0-9, *, #, A-D"


def _key_row(value: str) -> str:
    bad = [key for key in value if key not in KEYS]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a keypad key (keys: {_KEY_NAMES}); one key per column")
    return value


def _input_device(value: str) -> str:
    if not value.startswith("/dev/input/") or len(value) > 255 or ".." in value.split("/"):
        raise ValueError(
            f"{value!r} is not an input device: a path under /dev/input/, best the stable "
            "/dev/input/by-id/usb-...-event-kbd"
        )
    return value


KeyRow = Annotated[StrictStr, AfterValidator(_key_row)]
Pins = Annotated[tuple[Pin, ...], Field(min_length=1, max_length=8)]


class MatrixKeypadConfig(Section):
    """``[keypad]`` with ``kind = "matrix"``: a key matrix on GPIO (rows driven, columns read).

    ``keys``: one string per row, one key per column.
    """

    APPLY = Apply.DEVICES
    kind: Literal["matrix"] = "matrix"
    rows: Pins
    columns: Pins
    keys: tuple[KeyRow, ...] = ("123", "456", "789", "*0#")
    debounce_ms: DebounceMs = 20


class EvdevKeypadConfig(Section):
    """``[keypad]`` with ``kind = "evdev"``: a USB keypad read through evdev."""

    APPLY = Apply.DEVICES
    kind: Literal["evdev"] = "evdev"
    device: Annotated[StrictStr, AfterValidator(_input_device)]
    grab: StrictBool = True


class WiegandReaderConfig(Section):
    """``[[card_readers]]`` with ``kind = "wiegand"``: D0/D1 of a Wiegand 26/34 reader."""

    APPLY = Apply.DEVICES
    name: Name
    kind: Literal["wiegand"] = "wiegand"
    d0: Pin
    d1: Pin


class Pn532ReaderConfig(Section):
    """``[[card_readers]]`` with ``kind = "pn532"``: a PN532 NFC reader on I2C or SPI0."""

    APPLY = Apply.DEVICES
    name: Name
    kind: Literal["pn532"] = "pn532"
    interface: Literal["i2c", "spi"] = "i2c"
    bus: StrictInt = Field(default=1, ge=0, le=31)
    i2c_address: StrictInt = Field(default=0x24, ge=0x03, le=0x77)
    cs: Pin | None = None
    poll_ms: StrictInt = Field(default=200, ge=20, le=10_000)


def _kind(value: object) -> str | None:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if isinstance(kind, str) else None


KeypadConfig = Annotated[
    Annotated[MatrixKeypadConfig, Tag("matrix")] | Annotated[EvdevKeypadConfig, Tag("evdev")],
    Discriminator(_kind),
]
CardReaderConfig = Annotated[
    Annotated[WiegandReaderConfig, Tag("wiegand")] | Annotated[Pn532ReaderConfig, Tag("pn532")],
    Discriminator(_kind),
]
TAGGED_TABLES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {"keypad": KEYPAD_KINDS, "card_readers": CARD_READER_KINDS}
)
"""The tables of this module whose ``kind`` picks the model, and their kinds (errors)."""


def entrance_pin_users(config: CallboxConfig) -> Iterator[tuple[str, str]]:
    """(key, GPIO name) of every pin the keypad and card readers use, in file order.

    Keys of shared bus pins (I2C, SPI0) end in ``.bus`` / ``.interface``.
    """
    keypad = config.keypad
    if isinstance(keypad, MatrixKeypadConfig):
        for part in ("rows", "columns"):
            for index, pin in enumerate(getattr(keypad, part)):
                yield f"keypad.{part}.{index}", pin
    for index, reader in enumerate(config.card_readers):
        key = f"card_readers.{index}"
        if isinstance(reader, WiegandReaderConfig):
            yield f"{key}.d0", reader.d0
            yield f"{key}.d1", reader.d1
        elif reader.interface == "i2c":
            for pin in I2C_PINS.get(reader.bus, ()):
                yield f"{key}.bus", pin
        else:
            for pin in SPI0_PINS:
                yield f"{key}.interface", pin
            if reader.cs is not None:
                yield f"{key}.cs", reader.cs


def entrance_problems(config: CallboxConfig) -> Iterator[tuple[str, str]]:
    """The cross-key problems of ``[keypad]`` and ``[[card_readers]]`` (`device.config._rules`)."""
    if config.role != "door":
        if config.keypad is not None:
            yield "keypad", "only a door station has a keypad; remove [keypad] here"
        if config.card_readers:
            yield "card_readers", "only a door station reads cards; remove [[card_readers]] here"
    keypad = config.keypad
    if isinstance(keypad, MatrixKeypadConfig):
        rows, columns = len(keypad.rows), len(keypad.columns)
        if len(keypad.keys) != rows:
            yield (
                "keypad.keys",
                f"has {len(keypad.keys)} strings but the keypad has {rows} rows: one string "
                f"per row, one key per column (e.g. {['123', '456', '789', '*0#']!r} for 4 x 3)",
            )
        for index, row in enumerate(keypad.keys):
            if len(row) != columns:
                yield (
                    f"keypad.keys.{index}",
                    f"{row!r} has {len(row)} keys but the keypad has {columns} columns",
                )
    seen: dict[str, int] = {}
    for index, reader in enumerate(config.card_readers):
        key = f"card_readers.{index}"
        if reader.name in seen:
            yield f"{key}.name", f"{reader.name!r} is already card_readers.{seen[reader.name]}"
        seen.setdefault(reader.name, index)
        if isinstance(reader, Pn532ReaderConfig):
            if reader.interface == "spi" and reader.cs is None:
                yield f"{key}.cs", "is required with interface = 'spi': the chip-select GPIO"
            if reader.interface == "i2c" and reader.cs is not None:
                yield f"{key}.cs", "is only for interface = 'spi'"


def keypad_spec(config: CallboxConfig) -> KeypadSpec | None:
    """The HAL spec of ``[keypad]`` (None without one)."""
    keypad = config.keypad
    if isinstance(keypad, MatrixKeypadConfig):
        return MatrixKeypadSpec(
            rows=keypad.rows,
            columns=keypad.columns,
            keys=keypad.keys,
            debounce_ms=keypad.debounce_ms,
        )
    if isinstance(keypad, EvdevKeypadConfig):
        return EvdevKeypadSpec(device=keypad.device, grab=keypad.grab)
    return None


def card_reader_specs(config: CallboxConfig) -> Mapping[str, CardReaderSpec]:
    """The HAL specs of ``[[card_readers]]`` by reader name."""
    specs: dict[str, CardReaderSpec] = {}
    for reader in config.card_readers:
        if isinstance(reader, WiegandReaderConfig):
            specs[reader.name] = WiegandSpec(d0=reader.d0, d1=reader.d1)
        else:
            specs[reader.name] = Pn532Spec(
                interface=reader.interface,
                i2c_bus=reader.bus,
                i2c_address=reader.i2c_address,
                cs=reader.cs,
                poll_ms=reader.poll_ms,
            )
    return MappingProxyType(specs)
