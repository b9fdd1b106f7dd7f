"""Wiring descriptions: which pin each button, relay, LED and sensor of a board is on.

Frozen, keyword-only dataclasses that the config layer produces and ``hal.io_devices``
turns into devices. Each checks its own numbers on construction (HalError), so a spec
that exists is one a back-end can honour. Pin names are gpiozero's: ``"GPIO17"``
(BCM numbering), ``"BOARD11"`` (header position) or ``"17"``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from hal.errors import HalError

I2C_CHIPS = ("vcnl4010", "vcnl4040")
PIN_FACTORY_NAMES = ("default", "lgpio", "rpigpio", "mock")
MAX_RELAY_ON_MS = 60_000


class ButtonRole(enum.StrEnum):
    """What a push button (or the hook switch) means to the intercom."""

    DOORBELL = "doorbell"
    ANSWER = "answer"
    DECLINE = "decline"
    DOOR_RELEASE = "door_release"
    MUTE = "mute"
    HOOK = "hook"
    MONITOR = "monitor"


def _check_pin(what: str, pin: str) -> None:
    if not isinstance(pin, str) or not pin.strip():
        raise HalError(f"{what}: a pin name is required (e.g. 'GPIO17'), got {pin!r}")


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise HalError(f"{what} must be in {low}..{high}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class ButtonSpec:
    """A push button or hook switch on one GPIO pin.

    ``pull_up=True``: internal pull-up, switch to GND, active low. ``pull_up=False``:
    active high, the switch goes to 3V3 (the internal pull-down is enabled; an external
    one may be added). A press shorter than ``min_press_ms`` is a phantom (interference
    on a long cable) and is ignored.
    """

    pin: str
    pull_up: bool = True
    debounce_ms: int = 20
    min_press_ms: int = 50

    def __post_init__(self) -> None:
        """Refuse an empty pin name and negative or absurd times."""
        _check_pin("button", self.pin)
        _check_range("button debounce_ms", self.debounce_ms, 0, 1000)
        _check_range("button min_press_ms", self.min_press_ms, 0, 10_000)


@dataclass(frozen=True, kw_only=True)
class RelaySpec:
    """The door-release relay: a pulse of ``pulse_ms``, never on longer than ``max_on_ms``."""

    pin: str
    active_high: bool = True
    pulse_ms: int = 3000
    max_on_ms: int = 10_000

    def __post_init__(self) -> None:
        """Require 0 < pulse_ms <= max_on_ms <= 60 s."""
        _check_pin("relay", self.pin)
        _check_range("relay max_on_ms", self.max_on_ms, 1, MAX_RELAY_ON_MS)
        _check_range("relay pulse_ms", self.pulse_ms, 1, self.max_on_ms)


@dataclass(frozen=True, kw_only=True)
class LedSpec:
    """An LED (through a resistor) on one GPIO pin."""

    pin: str
    active_high: bool = True

    def __post_init__(self) -> None:
        """Refuse an empty pin name."""
        _check_pin("LED", self.pin)


@dataclass(frozen=True, kw_only=True)
class GpioProximitySpec:
    """A proximity module with a digital output (IR reflex module, VCNL breakout's INT)."""

    pin: str
    near_when_low: bool = True
    pull_up: bool = True
    debounce_ms: int = 50

    def __post_init__(self) -> None:
        """Refuse an empty pin name and negative or absurd times."""
        _check_pin("proximity sensor", self.pin)
        _check_range("proximity debounce_ms", self.debounce_ms, 0, 5000)


@dataclass(frozen=True, kw_only=True)
class SwitchSpec:
    """A supervision switch on one GPIO pin: the door's reed contact or the tamper switch.

    ``active_high``: the switch is active (door open, housing tampered with) while the pin
    reads high. With ``pull_up=True`` (internal pull-up, the switch to GND) a normally
    closed contact held closed by the magnet / the cover pulls the pin low; it opens (or
    its wire is cut) and the pin goes high: active, fail-safe. ``pull_up=False`` enables
    the internal pull-down (the switch goes to 3V3). A level must hold ``debounce_ms``.
    """

    pin: str
    active_high: bool = True
    pull_up: bool = True
    debounce_ms: int = 50

    def __post_init__(self) -> None:
        """Refuse an empty pin name and negative or absurd times."""
        _check_pin("switch", self.pin)
        _check_range("switch debounce_ms", self.debounce_ms, 0, 5000)


@dataclass(frozen=True, kw_only=True)
class I2cProximitySpec:
    """A Vishay VCNL4010 or VCNL4040 proximity sensor on an I2C bus, polled.

    Near once the count reaches ``near_threshold``; far again only below
    ``near_threshold - hysteresis``.
    """

    bus: int = 1
    address: int = 0x13
    chip: str = "vcnl4010"
    near_threshold: int = 2000
    hysteresis: int = 200
    poll_ms: int = 100

    def __post_init__(self) -> None:
        """Refuse unknown chips, 10-bit addresses and thresholds outside the 16-bit count."""
        if self.chip not in I2C_CHIPS:
            raise HalError(f"unknown proximity chip {self.chip!r} (known: {', '.join(I2C_CHIPS)})")
        _check_range("I2C bus", self.bus, 0, 255)
        _check_range("I2C address", self.address, 0x03, 0x77)
        _check_range("proximity near_threshold", self.near_threshold, 1, 0xFFFF)
        _check_range("proximity hysteresis", self.hysteresis, 0, self.near_threshold - 1)
        _check_range("proximity poll_ms", self.poll_ms, 1, 10_000)


@dataclass(frozen=True, kw_only=True)
class BacklightSpec:
    """A display backlight under ``sysfs_root`` (``device=None``: the only one there)."""

    sysfs_root: str = "/sys/class/backlight"
    device: str | None = None
    brightness: int | None = None

    def __post_init__(self) -> None:
        """Refuse a negative brightness and device names that are paths."""
        if self.brightness is not None and self.brightness < 0:
            raise HalError(f"backlight brightness must be >= 0, got {self.brightness!r}")
        if self.device is not None and (not self.device or "/" in self.device):
            raise HalError(f"backlight device must be a plain name, got {self.device!r}")


@dataclass(frozen=True, kw_only=True)
class MatrixKeypadSpec:
    """A matrix keypad on GPIO: ``rows`` driven as outputs, ``columns`` read with pull-ups.

    ``keys`` has one string per row, one key per column (``"123"``, ``"456"``, ...). A key
    counts once it reads the same for ``debounce_ms``; the matrix is scanned every
    ``scan_ms`` while a key is down (idle: no scanning, a column edge wakes it).
    """

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    keys: tuple[str, ...]
    debounce_ms: int = 20
    scan_ms: int = 5

    def __post_init__(self) -> None:
        """Refuse a layout that does not match rows x columns, unknown keys, a pin twice."""
        from hal.keypad import KEYS  # here: hal.keypad imports hal.gpio, which imports us

        object.__setattr__(self, "rows", tuple(self.rows))
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "keys", tuple(self.keys))
        if not 1 <= len(self.rows) <= 8 or not 1 <= len(self.columns) <= 8:
            raise HalError(
                f"matrix keypad: 1 to 8 rows and columns, got {len(self.rows)} x "
                f"{len(self.columns)}"
            )
        pins = (*self.rows, *self.columns)
        for pin in pins:
            _check_pin("matrix keypad", pin)
        twice = sorted({pin for pin in pins if pins.count(pin) > 1})
        if twice:
            raise HalError(f"matrix keypad: pin {', '.join(twice)} is used twice")
        if len(self.keys) != len(self.rows) or any(
            len(row) != len(self.columns) for row in self.keys
        ):
            raise HalError(
                f"matrix keypad: keys must be {len(self.rows)} strings (one per row) of "
                f"{len(self.columns)} keys (one per column), got {list(self.keys)!r}"
            )
        bad = sorted(set("".join(self.keys)) - KEYS)
        if bad:
            raise HalError(f"matrix keypad: {', '.join(map(repr, bad))} is not a keypad key")
        _check_range("matrix keypad debounce_ms", self.debounce_ms, 0, 1000)
        _check_range("matrix keypad scan_ms", self.scan_ms, 1, 100)


@dataclass(frozen=True, kw_only=True)
class EvdevKeypadSpec:
    """A USB (HID) keypad read through evdev from ``device`` (``/dev/input/...``).

    ``grab``: take the device for this process alone (the console sees no key presses).
    """

    device: str
    grab: bool = True

    def __post_init__(self) -> None:
        """Require an absolute path under /dev/input."""
        if not isinstance(self.device, str) or not self.device.startswith("/dev/input/"):
            raise HalError(
                f"evdev keypad: device must be a path under /dev/input/, got {self.device!r}"
            )


PN532_INTERFACES = ("i2c", "spi")


@dataclass(frozen=True, kw_only=True)
class WiegandSpec:
    """A Wiegand 26/34 card reader: its D0 and D1 lines on two GPIO inputs.

    A frame ends after ``frame_gap_ms`` without a bit (readers send a bit every 1 to 2 ms).
    """

    d0: str
    d1: str
    frame_gap_ms: int = 25

    def __post_init__(self) -> None:
        """Refuse empty pins, D0 and D1 on one pin, an absurd frame gap."""
        _check_pin("Wiegand d0", self.d0)
        _check_pin("Wiegand d1", self.d1)
        if self.d0 == self.d1:
            raise HalError(f"Wiegand: d0 and d1 are both {self.d0!r}; they are two lines")
        _check_range("Wiegand frame_gap_ms", self.frame_gap_ms, 5, 500)


@dataclass(frozen=True, kw_only=True)
class Pn532Spec:
    """A PN532 NFC reader on I2C (``i2c_bus``, ``i2c_address``) or SPI0 (chip select ``cs``).

    Polled every ``poll_ms`` for an ISO 14443A tag.
    """

    interface: str = "i2c"
    i2c_bus: int = 1
    i2c_address: int = 0x24
    cs: str | None = None
    poll_ms: int = 200

    def __post_init__(self) -> None:
        """Refuse unknown interfaces, SPI without a chip select, out-of-range numbers."""
        if self.interface not in PN532_INTERFACES:
            known = ", ".join(PN532_INTERFACES)
            raise HalError(f"PN532 interface {self.interface!r} is unknown (known: {known})")
        if self.interface == "spi":
            if self.cs is None:
                raise HalError("PN532 on SPI needs its chip-select pin (cs)")
            _check_pin("PN532 cs", self.cs)
        _check_range("PN532 I2C bus", self.i2c_bus, 0, 255)
        _check_range("PN532 I2C address", self.i2c_address, 0x03, 0x77)
        _check_range("PN532 poll_ms", self.poll_ms, 20, 10_000)


KeypadSpec = MatrixKeypadSpec | EvdevKeypadSpec
CardReaderSpec = WiegandSpec | Pn532Spec


def _empty_mapping() -> Mapping[str, LedSpec]:
    return MappingProxyType({})


def _no_buttons() -> Mapping[ButtonRole, ButtonSpec]:
    return MappingProxyType({})


def _no_bells() -> Mapping[str, ButtonSpec]:
    return MappingProxyType({})


def _no_card_readers() -> Mapping[str, CardReaderSpec]:
    return MappingProxyType({})


@dataclass(frozen=True, kw_only=True)
class IoSpec:
    """One board's GPIO wiring and the gpiozero pin factory that drives it.

    ``pin_factory``: "default" (lgpio, else RPi.GPIO), "lgpio", "rpigpio" or "mock"
    (gpiozero's MockFactory, for the sim board). LED "status" shows the intercom's
    patterns; other LED names are free.
    """

    pin_factory: str = "default"
    buttons: Mapping[ButtonRole, ButtonSpec] = field(default_factory=_no_buttons)
    relay: RelaySpec | None = None
    leds: Mapping[str, LedSpec] = field(default_factory=_empty_mapping)
    bells: Mapping[str, ButtonSpec] = field(default_factory=_no_bells)
    """Doorbell buttons of an entrance panel beside ``[inputs.doorbell]``, by bell name."""
    proximity: GpioProximitySpec | I2cProximitySpec | None = None
    backlight: BacklightSpec | None = None
    door_contact: SwitchSpec | None = None
    """The door's reed contact (active = open); a door station's."""
    tamper: SwitchSpec | None = None
    """The door station's tamper switch (active = tampered with)."""
    keypad: KeypadSpec | None = None
    """An entrance panel's keypad (GPIO matrix or USB through evdev)."""
    card_readers: Mapping[str, CardReaderSpec] = field(default_factory=_no_card_readers)
    """Card readers (Wiegand, PN532) by reader name."""

    def __post_init__(self) -> None:
        """Refuse unknown pin factories and roles; freeze the mappings it was given."""
        if self.pin_factory not in PIN_FACTORY_NAMES:
            known = ", ".join(PIN_FACTORY_NAMES)
            raise HalError(f"unknown GPIO pin factory {self.pin_factory!r} (known: {known})")
        try:
            buttons = {ButtonRole(role): spec for role, spec in self.buttons.items()}
        except ValueError as err:
            raise HalError(f"unknown button role: {err}") from err
        object.__setattr__(self, "buttons", MappingProxyType(buttons))
        object.__setattr__(self, "leds", MappingProxyType(dict(self.leds)))
        object.__setattr__(self, "bells", MappingProxyType(dict(self.bells)))
        for name in self.card_readers:
            if not isinstance(name, str) or not name:
                raise HalError(f"a card reader needs a name, got {name!r}")
        object.__setattr__(self, "card_readers", MappingProxyType(dict(self.card_readers)))
