"""Proximity sensing (a handset or a face near the screen): interface and back-ends.

``GpioProximitySensor`` reads a module with a digital output; a level must hold for
``debounce_ms`` before it counts. ``I2cProximitySensor`` polls a Vishay VCNL4010 or
VCNL4040 over smbus2 in a thread and turns the count into near/far with a threshold
and a hysteresis band, so a hand hovering at the threshold does not flicker the screen.
A failing sensor reads as far (the screen stays usable) and is retried. Callbacks run
in the event loop thread.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from hal.closing import CloseOnce
from hal.errors import DeviceUnavailableError
from hal.gpio import call_in_loop, fire
from hal.gpio_specs import GpioProximitySpec, I2cProximitySpec, SwitchSpec
from hal.switches import GpioSwitch

_log = logging.getLogger(__name__)


class ProximitySensor(abc.ABC):
    """Tells whether something is near; the service sets ``on_change(near)``."""

    on_change: Callable[[bool], None] | None

    def __init__(self) -> None:
        """A sensor with no callback yet."""
        self.on_change = None

    @property
    @abc.abstractmethod
    def is_near(self) -> bool:
        """The current (filtered) state; False before start and after close."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start sensing; the state at start is in ``is_near`` (no callback for it)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop sensing and release the hardware; calling it again does nothing."""


class NullProximitySensor(ProximitySensor):
    """No sensor: never near, never fires."""

    @property
    def is_near(self) -> bool:
        """Always False."""
        return False

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to release."""


class GpioProximitySensor(ProximitySensor):
    """A digital proximity output on a GPIO pin (claimed on construction).

    A debounced GPIO level read at start, which is what a `GpioSwitch` is: "near" is the
    switch's "active", at the level the spec says.
    """

    def __init__(self, spec: GpioProximitySpec, *, pin_factory: Any) -> None:
        """Claim ``spec.pin`` as an input with the spec's pull."""
        super().__init__()
        self.spec = spec
        level = SwitchSpec(
            pin=spec.pin,
            active_high=not spec.near_when_low,
            pull_up=spec.pull_up,
            debounce_ms=spec.debounce_ms,
        )
        self._switch = GpioSwitch("proximity_sensor", level, pin_factory=pin_factory)
        self._switch.on_change = self._changed
        self._closed = False

    @property
    def is_near(self) -> bool:
        """The debounced state (False once closed)."""
        return self._switch.is_active and not self._closed

    async def start(self) -> None:
        """Read the current level and watch the pin's edges."""
        await self._switch.start()

    async def close(self) -> None:
        """Stop watching and release the pin; idempotent."""
        self.release()

    def release(self) -> None:
        """What ``close()`` does, callable without awaiting (a board that failed to build)."""
        self._closed = True
        self._switch.release()

    def _changed(self, near: bool) -> None:
        fire("proximity", self.on_change, near)


class SMBusLike(Protocol):
    """The part of smbus2.SMBus the sensor uses (a test passes its own bus)."""

    def read_byte_data(self, i2c_addr: int, register: int) -> int:
        """Read one byte register."""

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None:
        """Write one byte register."""

    def read_word_data(self, i2c_addr: int, register: int) -> int:
        """Read a 16-bit register, low byte first."""

    def write_word_data(self, i2c_addr: int, register: int, value: int) -> None:
        """Write a 16-bit register, low byte first."""

    def close(self) -> None:
        """Close the bus device."""


class _Chip(abc.ABC):
    """Register-level driver of one sensor chip (I/O errors are OSError)."""

    @abc.abstractmethod
    def init(self, bus: SMBusLike, address: int) -> None:
        """Configure the chip and start periodic proximity measurement."""

    @abc.abstractmethod
    def read(self, bus: SMBusLike, address: int) -> int:
        """The latest proximity count (0..65535, higher = nearer)."""

    @abc.abstractmethod
    def shutdown(self, bus: SMBusLike, address: int) -> None:
        """Stop measuring (the IR LED draws current)."""


class _Vcnl4010(_Chip):
    COMMAND = 0x80
    PROX_RATE = 0x82
    LED_CURRENT = 0x83
    PROX_RESULT_HIGH = 0x87
    PROX_RESULT_LOW = 0x88
    SELFTIMED_EN = 0x01
    PROX_EN = 0x02
    RATE_16_6_PER_S = 0x03
    LED_100_MA = 10  # units of 10 mA

    def init(self, bus: SMBusLike, address: int) -> None:
        # The rate register only takes a write while measurements are stopped.
        bus.write_byte_data(address, self.COMMAND, 0x00)
        bus.write_byte_data(address, self.LED_CURRENT, self.LED_100_MA)
        bus.write_byte_data(address, self.PROX_RATE, self.RATE_16_6_PER_S)
        bus.write_byte_data(address, self.COMMAND, self.SELFTIMED_EN | self.PROX_EN)

    def read(self, bus: SMBusLike, address: int) -> int:
        high = bus.read_byte_data(address, self.PROX_RESULT_HIGH)
        low = bus.read_byte_data(address, self.PROX_RESULT_LOW)
        return ((high & 0xFF) << 8) | (low & 0xFF)

    def shutdown(self, bus: SMBusLike, address: int) -> None:
        bus.write_byte_data(address, self.COMMAND, 0x00)


class _Vcnl4040(_Chip):
    PS_CONF1_2 = 0x03
    PS_CONF3_MS = 0x04
    PS_DATA = 0x08
    # PS_CONF1: duty 1/40, integration 8T, powered on; PS_CONF2: 16-bit output (PS_HD).
    CONF1_2_ON = 0x080E
    PS_SD = 0x0001
    # PS_CONF3: defaults; PS_MS: IR LED 100 mA.
    CONF3_MS = 0x0200

    def init(self, bus: SMBusLike, address: int) -> None:
        bus.write_word_data(address, self.PS_CONF3_MS, self.CONF3_MS)
        bus.write_word_data(address, self.PS_CONF1_2, self.CONF1_2_ON)

    def read(self, bus: SMBusLike, address: int) -> int:
        return bus.read_word_data(address, self.PS_DATA) & 0xFFFF

    def shutdown(self, bus: SMBusLike, address: int) -> None:
        bus.write_word_data(address, self.PS_CONF1_2, self.CONF1_2_ON | self.PS_SD)


_CHIPS: dict[str, Callable[[], _Chip]] = {"vcnl4010": _Vcnl4010, "vcnl4040": _Vcnl4040}


def _smbus2_bus(bus: int) -> SMBusLike:
    from smbus2 import SMBus

    opened: SMBusLike = SMBus(bus)
    return opened


class I2cProximitySensor(ProximitySensor):
    """A VCNL4010/VCNL4040 on an I2C bus, polled every ``poll_ms`` in a thread.

    Near once the count reaches ``near_threshold``, far again only below
    ``near_threshold - hysteresis``. An I/O error is logged (once per outage), reads as
    far, and the chip is configured again on the next poll (a sensor that lost power
    forgets its settings).
    """

    def __init__(
        self,
        spec: I2cProximitySpec,
        *,
        bus_factory: Callable[[int], Any] | None = None,
    ) -> None:
        """``bus_factory(bus_number)`` opens the bus (default: ``smbus2.SMBus``)."""
        super().__init__()
        self.spec = spec
        self._what = f"proximity sensor {spec.chip} at {spec.address:#04x} on I2C bus {spec.bus}"
        self._bus_factory: Callable[[int], Any] = bus_factory or _smbus2_bus
        self._chip = _CHIPS[spec.chip]()
        self._near = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bus: SMBusLike | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._close = CloseOnce()
        # Owned by the polling thread:
        self._thread_near = False
        self._needs_init = True
        self._failing = False

    @property
    def is_near(self) -> bool:
        """The state after threshold and hysteresis."""
        return self._near

    async def start(self) -> None:
        """Open the bus (DeviceUnavailableError if it does not exist) and start polling."""
        if self._close.started:
            raise DeviceUnavailableError(f"{self._what} is closed")
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._bus = await asyncio.to_thread(self._open_bus)
        self._thread = threading.Thread(
            target=self._run,
            name=f"callbox-proximity-i2c{self.spec.bus}-{self.spec.address:#04x}",
            daemon=True,
        )
        self._thread.start()

    async def close(self) -> None:
        """Stop polling, switch the chip's IR LED off and close the bus.

        Idempotent; a second call waits for the first.
        """
        if not await self._close.begin():
            return
        try:
            self._near = False
            self._stop.set()
            thread, self._thread = self._thread, None
            if thread is not None:
                await asyncio.to_thread(thread.join)
            bus, self._bus = self._bus, None
            if bus is not None:
                await asyncio.to_thread(self._shutdown, bus)
        finally:
            self._close.finish()

    def _open_bus(self) -> SMBusLike:
        try:
            bus: SMBusLike = self._bus_factory(self.spec.bus)
        except (OSError, ImportError) as err:
            raise DeviceUnavailableError(
                f"{self._what}: cannot open /dev/i2c-{self.spec.bus} ({err});"
                " is I2C enabled (dtparam=i2c_arm=on in config.txt)?"
            ) from err
        return bus

    def _shutdown(self, bus: SMBusLike) -> None:
        try:
            if not self._needs_init:
                self._chip.shutdown(bus, self.spec.address)
        except OSError as err:
            _log.warning("%s: could not stop measuring: %s", self._what, err)
        finally:
            bus.close()

    def _run(self) -> None:
        """The polling thread: one reading per ``poll_ms`` until close."""
        period = self.spec.poll_ms / 1000.0
        try:
            while not self._stop.is_set():
                self._poll_once()
                self._stop.wait(period)
        except Exception:  # noqa: BLE001 - log it; a dead thread must read as far
            _log.exception("%s: polling stopped by an unexpected error; reporting far", self._what)
            self._report(False)

    def _poll_once(self) -> None:
        bus = self._bus
        assert bus is not None
        try:
            if self._needs_init:
                self._chip.init(bus, self.spec.address)
                self._needs_init = False
            count = self._chip.read(bus, self.spec.address)
        except OSError as err:
            if not self._failing:
                _log.warning("%s: I/O error (%s); reporting far and retrying", self._what, err)
                self._failing = True
            self._needs_init = True
            self._report(False)
            return
        if self._failing:
            _log.info("%s: readings are back", self._what)
            self._failing = False
        self._report(self._decide(count))

    def _decide(self, count: int) -> bool:
        if self._thread_near:
            return count >= self.spec.near_threshold - self.spec.hysteresis
        return count >= self.spec.near_threshold

    def _report(self, near: bool) -> None:
        if near == self._thread_near:
            return
        self._thread_near = near
        assert self._loop is not None
        call_in_loop(self._loop, self._deliver, near)

    def _deliver(self, near: bool) -> None:
        if self._close.started or near == self._near:
            return
        self._near = near
        fire("proximity", self.on_change, near)
