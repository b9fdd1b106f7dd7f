"""A board's GPIO-side devices, built from an ``IoSpec``: buttons, relay, LEDs, sensors.

``build_io`` creates one pin factory per call and wires every device on it, claiming
the pins at once (a bad or doubly used pin is a HalError naming it, and the relay is
driven inactive before anything else). Hardware the spec leaves out gets the null
back-end, so services never test for None (except ``button()``: a missing button is
worth knowing about). ``SIM_PINS`` is the default pin map, also the wiring table of
docs/hardware.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from hal.backlight import Backlight, NullBacklight, SysfsBacklight
from hal.cards import CardReader
from hal.closing import CloseOnce
from hal.errors import HalError
from hal.gpio import close_pin_factory, make_pin_factory
from hal.gpio_specs import (
    BacklightSpec,
    ButtonRole,
    ButtonSpec,
    EvdevKeypadSpec,
    GpioProximitySpec,
    IoSpec,
    LedSpec,
    MatrixKeypadSpec,
    Pn532Spec,
    RelaySpec,
    SwitchSpec,
    WiegandSpec,
)
from hal.inputs import Button, GpioButton
from hal.keypad import Keypad
from hal.keypad_evdev import EvdevKeypad
from hal.keypad_gpio import GpioMatrixKeypad
from hal.leds import GpioLed, Led, NullLed
from hal.pn532 import Pn532Reader
from hal.proximity import (
    GpioProximitySensor,
    I2cProximitySensor,
    NullProximitySensor,
    ProximitySensor,
)
from hal.relay import GpioRelay, NullRelay, Relay
from hal.switches import GpioSwitch, NullSwitch, Switch
from hal.wiegand import GpioWiegandReader

_log = logging.getLogger(__name__)

SIM_PINS: Mapping[str, str] = MappingProxyType(
    {
        "doorbell": "GPIO17",
        "answer": "GPIO27",
        "decline": "GPIO22",
        "door_release": "GPIO5",
        "mute": "GPIO6",
        "hook": "GPIO13",
        "monitor": "GPIO19",
        "proximity": "GPIO26",
        "relay": "GPIO24",
        "status_led": "GPIO16",
        "door_contact": "GPIO21",
        "tamper": "GPIO7",
    }
)
"""Default BCM pins: buttons by role value, then the proximity input, relay and status LED,
the door contact and the tamper switch."""

SIM_BACKLIGHT = "sim-backlight"


def sim_io_spec(*, sysfs_root: str = "/sys/class/backlight") -> IoSpec:
    """Every device of ``SIM_PINS`` on a MockFactory, and a backlight under ``sysfs_root``."""
    return IoSpec(
        pin_factory="mock",
        buttons={role: ButtonSpec(pin=SIM_PINS[role.value]) for role in ButtonRole},
        relay=RelaySpec(pin=SIM_PINS["relay"]),
        leds={"status": LedSpec(pin=SIM_PINS["status_led"])},
        proximity=GpioProximitySpec(pin=SIM_PINS["proximity"]),
        backlight=BacklightSpec(sysfs_root=sysfs_root, device=SIM_BACKLIGHT),
        # pulled down: a sim door is closed and untampered until a test drives the pin high
        door_contact=SwitchSpec(pin=SIM_PINS["door_contact"], pull_up=False),
        tamper=SwitchSpec(pin=SIM_PINS["tamper"], pull_up=False),
    )


class _Releasable(Protocol):
    def release(self) -> None: ...


def _no_buttons() -> Mapping[ButtonRole, Button]:
    return MappingProxyType({})


def _no_bells() -> Mapping[str, Button]:
    return MappingProxyType({})


def _no_leds() -> Mapping[str, Led]:
    return MappingProxyType({})


def _no_card_readers() -> Mapping[str, CardReader]:
    return MappingProxyType({})


@dataclass
class IoDevices:
    """The GPIO-side devices of one board (null back-ends where the board has none).

    ``pin_factory`` is the gpiozero factory the devices use, None without GPIO devices
    (a MockFactory on the sim board, so tests can drive and inspect its pins; typed
    ``Any`` because gpiozero has no type hints). ``cleanups`` run once, after the
    devices closed (close the pin factory, remove a temporary sysfs tree).
    """

    buttons: Mapping[ButtonRole, Button] = field(default_factory=_no_buttons)
    bells: Mapping[str, Button] = field(default_factory=_no_bells)
    """An entrance panel's doorbell buttons (role DOORBELL) by bell name."""
    relay: Relay = field(default_factory=NullRelay)
    leds: Mapping[str, Led] = field(default_factory=_no_leds)
    proximity: ProximitySensor = field(default_factory=NullProximitySensor)
    backlight: Backlight = field(default_factory=NullBacklight)
    door_contact: Switch = field(default_factory=lambda: NullSwitch("door_contact"))
    """The door's reed contact: active = the door is open."""
    tamper: Switch = field(default_factory=lambda: NullSwitch("tamper"))
    """The tamper switch: active = the housing is open or off the wall."""
    keypad: Keypad | None = None
    """An entrance panel's keypad, None without one (services.intercom.entrance binds it)."""
    card_readers: Mapping[str, CardReader] = field(default_factory=_no_card_readers)
    """Card readers by name."""
    pin_factory: Any = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    _null_leds: dict[str, Led] = field(default_factory=dict, init=False, repr=False)
    _close: CloseOnce = field(default_factory=CloseOnce, init=False, repr=False)

    def button(self, role: ButtonRole) -> Button | None:
        """The button with ``role``, or None when the board has none."""
        return self.buttons.get(ButtonRole(role))

    def led(self, name: str = "status") -> Led:
        """The LED called ``name``; a NullLed (the same one each time) when missing."""
        led = self.leds.get(name)
        if led is None:
            led = self._null_leds.setdefault(name, NullLed(name))
        return led

    def state(self) -> dict[str, Any]:
        """A JSON-ready snapshot for status and self-test output.

        Keys: ``buttons`` (role -> pressed), ``bells`` (bell -> pressed), ``relay_active``,
        ``leds`` (name -> pattern), ``near``, ``backlight_on``, ``door_open`` and
        ``tampered`` (None when the board has no such switch), ``keypad`` (None, or
        ``{"name", "connected"}``), ``card_readers`` (name -> connected).
        """
        keypad = self.keypad
        return {
            "buttons": {role.value: button.is_pressed for role, button in self.buttons.items()},
            "bells": {name: button.is_pressed for name, button in self.bells.items()},
            "relay_active": self.relay.is_active,
            "leds": {name: led.pattern.value for name, led in self.leds.items()},
            "near": self.proximity.is_near,
            "backlight_on": self.backlight.is_on,
            "door_open": self.door_contact.is_active if self.door_contact.wired else None,
            "tampered": self.tamper.is_active if self.tamper.wired else None,
            "keypad": None
            if keypad is None
            else {"name": keypad.name, "connected": keypad.is_connected},
            "card_readers": {
                name: reader.is_connected for name, reader in self.card_readers.items()
            },
        }

    async def start(self) -> None:
        """Start every device, the relay first (released before anything else runs)."""
        await self.relay.start()
        for button in (*self.buttons.values(), *self.bells.values()):
            await button.start()
        for led in self.leds.values():
            await led.start()
        await self.proximity.start()
        await self.backlight.start()
        await self.door_contact.start()
        await self.tamper.start()
        if self.keypad is not None:
            await self.keypad.start()
        for reader in self.card_readers.values():
            await reader.start()

    async def close(self) -> None:
        """Close every device (relay first), then run the cleanups; idempotent.

        Every device is closed even if one fails; the first failure is raised after. A
        second call waits for the first.
        """
        if not await self._close.begin():
            return
        try:
            await self._close_devices()
        finally:
            self._close.finish()

    async def _close_devices(self) -> None:
        first_error: Exception | None = None
        closers = [
            self.relay.close,
            *(button.close for button in self.buttons.values()),
            *(button.close for button in self.bells.values()),
            *(led.close for led in self.leds.values()),
            self.proximity.close,
            self.backlight.close,
            self.door_contact.close,
            self.tamper.close,
            *((self.keypad.close,) if self.keypad is not None else ()),
            *(reader.close for reader in self.card_readers.values()),
        ]
        for close in closers:
            try:
                await close()
            except Exception as err:  # noqa: BLE001 - the other devices must close too
                _log.exception("closing a device failed")
                first_error = first_error or err
        # The pin factory's close, removing a temporary sysfs tree: file I/O, in a thread.
        first_error = await asyncio.to_thread(_run_cleanups, self.cleanups) or first_error
        if first_error is not None:
            raise first_error


def _run_cleanups(cleanups: list[Callable[[], None]]) -> Exception | None:
    first_error: Exception | None = None
    while cleanups:
        cleanup = cleanups.pop()
        try:
            cleanup()
        except Exception as err:  # noqa: BLE001 - the other clean-ups must run too
            _log.exception("I/O clean-up failed")
            first_error = first_error or err
    return first_error


def build_io(
    spec: IoSpec,
    *,
    i2c_bus_factory: Callable[[int], Any] | None = None,
) -> IoDevices:
    """Build the devices of ``spec`` on a new pin factory of ``spec.pin_factory``.

    Pins are claimed now: HalError naming the device and pin for a bad name or a pin
    used twice (and nothing stays claimed). ``i2c_bus_factory`` opens an I2C bus by
    number for an I2C proximity sensor (default: smbus2).
    """
    uses_gpio = bool(
        spec.buttons
        or spec.bells
        or spec.relay
        or spec.leds
        or isinstance(spec.proximity, GpioProximitySpec)
        or spec.door_contact
        or spec.tamper
        or isinstance(spec.keypad, MatrixKeypadSpec)
        or any(isinstance(reader, WiegandSpec) for reader in spec.card_readers.values())
    )
    factory = make_pin_factory(spec.pin_factory) if uses_gpio else None
    built: list[_Releasable] = []
    try:
        devices = _build_devices(spec, factory, built, i2c_bus_factory)
    except HalError:
        for device in reversed(built):
            device.release()
        if factory is not None:
            close_pin_factory(factory)
        raise
    if factory is not None:
        devices.cleanups.append(lambda: close_pin_factory(factory))
    return devices


def _build_devices(
    spec: IoSpec,
    factory: Any,
    built: list[_Releasable],
    i2c_bus_factory: Callable[[int], Any] | None,
) -> IoDevices:
    relay: Relay = NullRelay()
    if spec.relay is not None:
        gpio_relay = GpioRelay(spec.relay, pin_factory=factory)
        built.append(gpio_relay)
        relay = gpio_relay
    buttons: dict[ButtonRole, Button] = {}
    for role, button_spec in spec.buttons.items():
        button = GpioButton(role, button_spec, pin_factory=factory)
        built.append(button)
        buttons[role] = button
    bells: dict[str, Button] = {}
    for name, bell_spec in spec.bells.items():
        bell = GpioButton(ButtonRole.DOORBELL, bell_spec, pin_factory=factory, name=name)
        built.append(bell)
        bells[name] = bell
    leds: dict[str, Led] = {}
    for name, led_spec in spec.leds.items():
        led = GpioLed(name, led_spec, pin_factory=factory)
        built.append(led)
        leds[name] = led
    proximity: ProximitySensor = NullProximitySensor()
    if isinstance(spec.proximity, GpioProximitySpec):
        gpio_proximity = GpioProximitySensor(spec.proximity, pin_factory=factory)
        built.append(gpio_proximity)
        proximity = gpio_proximity
    elif spec.proximity is not None:
        proximity = I2cProximitySensor(spec.proximity, bus_factory=i2c_bus_factory)
    backlight: Backlight = NullBacklight()
    if spec.backlight is not None:
        backlight = SysfsBacklight(spec.backlight)
    switches: dict[str, Switch] = {}
    for name, switch_spec in (("door_contact", spec.door_contact), ("tamper", spec.tamper)):
        if switch_spec is None:
            switches[name] = NullSwitch(name)
            continue
        switch = GpioSwitch(name, switch_spec, pin_factory=factory)
        built.append(switch)
        switches[name] = switch
    keypad: Keypad | None = None
    if isinstance(spec.keypad, MatrixKeypadSpec):
        matrix = GpioMatrixKeypad(spec.keypad, pin_factory=factory)
        built.append(matrix)
        keypad = matrix
    elif isinstance(spec.keypad, EvdevKeypadSpec):
        keypad = EvdevKeypad(spec.keypad)
    readers: dict[str, CardReader] = {}
    for name, reader_spec in spec.card_readers.items():
        if isinstance(reader_spec, WiegandSpec):
            wiegand = GpioWiegandReader(name, reader_spec, pin_factory=factory)
            built.append(wiegand)
            readers[name] = wiegand
        elif isinstance(reader_spec, Pn532Spec):
            readers[name] = Pn532Reader(name, reader_spec)
    return IoDevices(
        buttons=MappingProxyType(buttons),
        bells=MappingProxyType(bells),
        relay=relay,
        leds=MappingProxyType(leds),
        proximity=proximity,
        backlight=backlight,
        door_contact=switches["door_contact"],
        tamper=switches["tamper"],
        keypad=keypad,
        card_readers=MappingProxyType(readers),
        pin_factory=factory,
    )
