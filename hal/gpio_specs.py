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


def _empty_mapping() -> Mapping[str, LedSpec]:
    return MappingProxyType({})


def _no_buttons() -> Mapping[ButtonRole, ButtonSpec]:
    return MappingProxyType({})


def _no_bells() -> Mapping[str, ButtonSpec]:
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
