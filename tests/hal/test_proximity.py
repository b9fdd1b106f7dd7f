"""Proximity sensors: a digital module on a MockFactory pin, VCNL4010/VCNL4040 chips on I2C.

For the I2C sensor the only fake is ``ScriptedBus``: it stands in for the I2C bus
(smbus2.SMBus: register reads and writes), answering with scripted proximity counts or
I/O errors. Everything above the bus (chip set-up, polling thread, threshold,
hysteresis, error handling) is the real ``I2cProximitySensor``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from gpio_helpers import TIMEOUT, watched_factory

from hal.errors import DeviceUnavailableError, HalError
from hal.gpio_specs import GpioProximitySpec, I2cProximitySpec
from hal.proximity import GpioProximitySensor, I2cProximitySensor, NullProximitySensor

VCNL4010_INIT = [
    ("byte", 0x13, 0x80, 0x00),  # stop measuring so the rate can be written
    ("byte", 0x13, 0x83, 10),  # IR LED 100 mA
    ("byte", 0x13, 0x82, 0x03),  # 16.6 measurements/s
    ("byte", 0x13, 0x80, 0x03),  # periodic proximity measurement on
]
VCNL4040_INIT = [
    ("word", 0x60, 0x04, 0x0200),  # PS_MS: IR LED 100 mA
    ("word", 0x60, 0x03, 0x080E),  # PS_CONF1: 8T, powered on; PS_CONF2: 16-bit output
]


class Changes:
    """on_change(near) values as the sensor delivers them."""

    def __init__(self, sensor: Any) -> None:
        self.values: list[bool] = []
        self.queue: asyncio.Queue[bool] = asyncio.Queue()
        self.threads: set[int] = set()
        sensor.on_change = self._changed

    def _changed(self, near: bool) -> None:
        self.values.append(near)
        self.threads.add(threading.get_ident())
        self.queue.put_nowait(near)

    async def next(self) -> bool:
        return await asyncio.wait_for(self.queue.get(), TIMEOUT)


# --- digital module on a GPIO pin ---------------------------------------------------------

MakeGpioSensor = Callable[..., Awaitable[GpioProximitySensor]]


@pytest.fixture
def factory() -> Iterator[Any]:
    pin_factory = watched_factory()
    yield pin_factory
    pin_factory.close()


@pytest.fixture
async def make_gpio_sensor(factory: Any) -> AsyncIterator[MakeGpioSensor]:
    sensors: list[GpioProximitySensor] = []

    async def make(**spec: Any) -> GpioProximitySensor:
        sensor = GpioProximitySensor(
            GpioProximitySpec(**{"pin": "GPIO26", **spec}), pin_factory=factory
        )
        sensors.append(sensor)
        await sensor.start()
        return sensor

    yield make
    for sensor in sensors:
        await sensor.close()


async def test_digital_near_and_far_after_the_debounce_time(
    make_gpio_sensor: MakeGpioSensor, factory: Any
) -> None:
    sensor = await make_gpio_sensor(debounce_ms=50)
    changes = Changes(sensor)
    pin = factory.pin("GPIO26")
    assert not sensor.is_near and pin.pull == "up"
    loop = asyncio.get_running_loop()
    edge = loop.time()
    pin.drive_low()
    assert await changes.next() is True
    assert loop.time() - edge >= 0.049 and sensor.is_near
    pin.drive_high()
    assert await changes.next() is False
    assert changes.threads == {threading.get_ident()}


async def test_digital_glitch_shorter_than_debounce_is_ignored(
    make_gpio_sensor: MakeGpioSensor, factory: Any
) -> None:
    sensor = await make_gpio_sensor(debounce_ms=50)
    changes = Changes(sensor)
    pin = factory.pin("GPIO26")
    pin.drive_low()
    pin.drive_high()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(changes.queue.get(), timeout=0.1)
    assert not sensor.is_near


async def test_digital_active_high_module(make_gpio_sensor: MakeGpioSensor, factory: Any) -> None:
    sensor = await make_gpio_sensor(near_when_low=False, pull_up=False, debounce_ms=0)
    changes = Changes(sensor)
    pin = factory.pin("GPIO26")
    assert pin.pull == "down"
    pin.drive_high()
    assert await changes.next() is True
    pin.drive_low()
    assert await changes.next() is False


async def test_digital_state_at_start_is_read_without_a_callback(factory: Any) -> None:
    sensor = GpioProximitySensor(GpioProximitySpec(pin="GPIO26"), pin_factory=factory)
    try:
        factory.pin("GPIO26").drive_low()  # a face already at the screen
        await sensor.start()
        assert sensor.is_near
    finally:
        await sensor.close()
        await sensor.close()
    assert not sensor.is_near


# --- VCNL4010 / VCNL4040 on I2C -------------------------------------------------------------


class ScriptedBus:
    """Stands in for the I2C bus (smbus2.SMBus): proximity readings come from ``script``.

    A script entry is a count, or an OSError raised by that read; after the script the last count
    repeats, and ``finished`` is set on the first read past it. Writes are recorded.
    """

    def __init__(self, script: list[int | OSError], loop: asyncio.AbstractEventLoop) -> None:
        self.script = list(script)
        self.writes: list[tuple[str, int, int, int]] = []
        self.finished = asyncio.Event()
        self.closed = False
        self.bus_numbers: list[int] = []
        self._loop = loop
        self._count = 0
        self._signalled = False
        self._lock = threading.Lock()

    def open(self, bus: int) -> ScriptedBus:
        """The sensor's ``bus_factory``."""
        self.bus_numbers.append(bus)
        return self

    def _next_count(self) -> int:
        with self._lock:
            if not self.script:
                # The poll after the last scripted one: whatever the sensor made of the
                # script is already on its way to the loop, ahead of this.
                if not self._signalled:
                    self._signalled = True
                    self._loop.call_soon_threadsafe(self.finished.set)
                return self._count
            item = self.script.pop(0)
            if isinstance(item, OSError):
                raise item
            self._count = item
            return self._count

    def write_byte_data(self, address: int, register: int, value: int) -> None:
        self.writes.append(("byte", address, register, value))

    def write_word_data(self, address: int, register: int, value: int) -> None:
        self.writes.append(("word", address, register, value))

    def read_byte_data(self, address: int, register: int) -> int:
        assert address == 0x13
        if register == 0x87:
            self._pending = self._next_count()
            return self._pending >> 8
        assert register == 0x88
        return self._pending & 0xFF

    def read_word_data(self, address: int, register: int) -> int:
        assert (address, register) == (0x60, 0x08)
        return self._next_count()

    def close(self) -> None:
        self.closed = True


MakeI2cSensor = Callable[..., Awaitable[tuple[I2cProximitySensor, ScriptedBus, Changes]]]


@pytest.fixture
async def make_i2c_sensor() -> AsyncIterator[MakeI2cSensor]:
    sensors: list[I2cProximitySensor] = []

    async def make(
        script: list[int | OSError], **spec: Any
    ) -> tuple[I2cProximitySensor, ScriptedBus, Changes]:
        bus = ScriptedBus(script, asyncio.get_running_loop())
        sensor = I2cProximitySensor(
            I2cProximitySpec(**{"poll_ms": 2, **spec}), bus_factory=bus.open
        )
        sensors.append(sensor)
        changes = Changes(sensor)
        await sensor.start()
        await asyncio.wait_for(bus.finished.wait(), TIMEOUT)
        return sensor, bus, changes

    yield make
    for sensor in sensors:
        await sensor.close()


async def test_vcnl4010_is_set_up_and_read_big_endian(make_i2c_sensor: MakeI2cSensor) -> None:
    sensor, bus, changes = await make_i2c_sensor([0x0102, 0x0834], near_threshold=0x0800)
    assert bus.bus_numbers == [1]
    assert bus.writes == VCNL4010_INIT
    assert changes.values == [True] and sensor.is_near
    assert changes.threads == {threading.get_ident()}


async def test_vcnl4040_is_set_up_and_read_as_16_bit_words(
    make_i2c_sensor: MakeI2cSensor,
) -> None:
    sensor, bus, changes = await make_i2c_sensor(
        [100, 40000], chip="vcnl4040", address=0x60, bus=3, near_threshold=30000
    )
    assert bus.bus_numbers == [3]
    assert bus.writes == VCNL4040_INIT
    assert changes.values == [True]
    await sensor.close()
    assert bus.writes[-1] == ("word", 0x60, 0x03, 0x080F)  # PS_SD: IR LED off
    assert bus.closed


async def test_threshold_and_hysteresis_do_not_flap(make_i2c_sensor: MakeI2cSensor) -> None:
    # near at >= 2000, far again below 1800
    script: list[int | OSError] = [100, 1999, 2100, 1950, 1850, 2050, 1800, 1799, 1900, 1999]
    script += [2000, 1990, 1810]
    sensor, _, changes = await make_i2c_sensor(script, near_threshold=2000, hysteresis=200)
    assert changes.values == [True, False, True]
    assert sensor.is_near


async def test_an_io_error_reads_far_is_logged_and_the_sensor_recovers(
    make_i2c_sensor: MakeI2cSensor, caplog: pytest.LogCaptureFixture
) -> None:
    remote_io = OSError(errno.EREMOTEIO, "Remote I/O error")
    with caplog.at_level(logging.INFO, logger="hal.proximity"):
        sensor, bus, changes = await make_i2c_sensor([2500, remote_io, remote_io, 2500, 2600])
    assert changes.values == [True, False, True]
    assert sensor.is_near
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Remote I/O error" in warnings[0].getMessage()
    assert "readings are back" in caplog.text
    # A chip that lost power forgets its set-up: each retry after an error sets it up again.
    assert bus.writes == VCNL4010_INIT * 3


async def test_a_missing_i2c_bus_is_device_unavailable() -> None:
    def no_bus(number: int) -> Any:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"/dev/i2c-{number}")

    sensor = I2cProximitySensor(I2cProximitySpec(), bus_factory=no_bus)
    with pytest.raises(DeviceUnavailableError, match=r"/dev/i2c-1.*i2c_arm=on"):
        await sensor.start()
    await sensor.close()


async def test_close_stops_the_chip_and_is_idempotent(make_i2c_sensor: MakeI2cSensor) -> None:
    sensor, bus, _ = await make_i2c_sensor([0])
    await sensor.close()
    await sensor.close()
    assert bus.writes[-1] == ("byte", 0x13, 0x80, 0x00) and bus.closed
    assert not sensor.is_near
    with pytest.raises(DeviceUnavailableError):
        await sensor.start()


def test_i2c_spec_refuses_unknown_chips_and_thresholds() -> None:
    with pytest.raises(HalError, match="unknown proximity chip 'apds9960'"):
        I2cProximitySpec(chip="apds9960")
    with pytest.raises(HalError, match=r"hysteresis must be in 0\.\.99"):
        I2cProximitySpec(near_threshold=100, hysteresis=100)


async def test_null_sensor_is_never_near() -> None:
    sensor = NullProximitySensor()
    sensor.on_change = lambda near: pytest.fail("a null sensor changed")
    await sensor.start()
    assert not sensor.is_near
    await sensor.close()
