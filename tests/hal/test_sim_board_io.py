"""The sim board's GPIO side: every device on SIM_PINS on a MockFactory of its own.

A backlight in a sysfs tree, null devices where a spec leaves hardware out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from gpio_helpers import TIMEOUT
from gpiozero.pins.mock import MockFactory

from hal.backlight import NullBacklight, SysfsBacklight
from hal.board import Board, build_board, build_sim_board
from hal.errors import DeviceUnavailableError, HalError
from hal.gpio_specs import (
    BacklightSpec,
    ButtonRole,
    ButtonSpec,
    I2cProximitySpec,
    IoSpec,
    RelaySpec,
)
from hal.inputs import GpioButton
from hal.io_devices import SIM_PINS, build_io, sim_io_spec
from hal.leds import GpioLed, LedPattern, NullLed
from hal.proximity import GpioProximitySensor, I2cProximitySensor, NullProximitySensor
from hal.relay import GpioRelay, NullRelay

MakeBoard = Callable[..., Board]


@pytest.fixture
async def make_board() -> AsyncIterator[MakeBoard]:
    """build_sim_board(...); every board is closed after the test."""
    boards: list[Board] = []

    def make(*args: Any, **options: Any) -> Board:
        board = build_sim_board(*args, **options)
        boards.append(board)
        return board

    yield make
    for board in boards:
        await board.close()


async def test_every_device_sits_on_its_default_pin(make_board: MakeBoard) -> None:
    board = make_board("door")
    io = board.io
    assert isinstance(io.pin_factory, MockFactory)
    assert set(io.buttons) == set(ButtonRole)
    for role, button in io.buttons.items():
        assert isinstance(button, GpioButton) and button.spec.pin == SIM_PINS[role.value]
    assert isinstance(io.relay, GpioRelay) and io.relay.spec.pin == "GPIO24"
    assert io.relay.spec.active_high
    status = io.led()
    assert isinstance(status, GpioLed) and status.spec.pin == "GPIO16"
    assert isinstance(io.proximity, GpioProximitySensor) and io.proximity.spec.pin == "GPIO26"
    assert isinstance(io.backlight, SysfsBacklight)
    await io.start()
    pins = io.pin_factory.pins
    assert {info.name for info in pins} == set(SIM_PINS.values())


async def test_a_doorbell_press_on_the_sim_board(make_board: MakeBoard) -> None:
    board = make_board()
    await board.io.start()
    doorbell = board.io.button(ButtonRole.DOORBELL)
    assert doorbell is not None
    pressed = asyncio.Event()
    doorbell.on_press = pressed.set
    board.io.pin_factory.pin(SIM_PINS["doorbell"]).drive_low()
    await asyncio.wait_for(pressed.wait(), TIMEOUT)


async def test_two_sim_boards_have_separate_pins(make_board: MakeBoard) -> None:
    first, second = make_board("door"), make_board("indoor")
    assert first.io.pin_factory is not second.io.pin_factory
    await first.io.start()
    await second.io.start()
    first.io.pin_factory.pin("GPIO17").drive_low()
    assert second.io.pin_factory.pin("GPIO17").state  # still pulled up: another pin
    await first.io.relay.pulse(0.02)
    assert first.io.pin_factory.pin("GPIO24").states[-1].state is False
    assert len(first.io.pin_factory.pin("GPIO24").states) == 3
    assert len(second.io.pin_factory.pin("GPIO24").states) == 1  # never energised


async def test_the_backlight_lives_in_a_temp_tree_removed_on_close() -> None:
    board = build_sim_board()
    backlight = board.io.backlight
    assert isinstance(backlight, SysfsBacklight)
    await board.io.start()
    assert backlight.path is not None and backlight.path.name == "sim-backlight"
    tree = backlight.path.parent
    await backlight.set_power(False)
    assert (backlight.path / "bl_power").read_text().strip() == "1"
    await board.close()
    await board.close()
    assert not tree.exists()


async def test_a_given_sysfs_root_is_used_and_kept(make_board: MakeBoard, tmp_path: Path) -> None:
    board = make_board(sysfs_root=tmp_path)
    await board.io.start()
    await board.io.backlight.set_power(False)
    assert (tmp_path / "sim-backlight" / "bl_power").read_text().strip() == "1"
    await board.close()
    assert (tmp_path / "sim-backlight" / "bl_power").read_text().strip() == "0"  # left on


async def test_an_io_spec_leaves_out_what_a_model_lacks(make_board: MakeBoard) -> None:
    spec = IoSpec(pin_factory="default", buttons={ButtonRole.DOORBELL: ButtonSpec(pin="GPIO4")})
    board = make_board("door", io=spec)
    io = board.io
    assert isinstance(io.pin_factory, MockFactory)  # the sim board always mocks its pins
    assert list(io.buttons) == [ButtonRole.DOORBELL]
    assert io.button(ButtonRole.HOOK) is None
    assert isinstance(io.relay, NullRelay)
    assert isinstance(io.proximity, NullProximitySensor)
    assert isinstance(io.backlight, NullBacklight)
    led = io.led()
    assert isinstance(led, NullLed) and io.led() is led
    led.set_pattern(LedPattern.RINGING)
    await io.start()
    with pytest.raises(DeviceUnavailableError, match="no door relay"):
        await io.relay.pulse()


async def test_build_board_passes_io_options(make_board: MakeBoard, tmp_path: Path) -> None:
    spec = IoSpec(relay=RelaySpec(pin="GPIO23", pulse_ms=50), backlight=BacklightSpec())
    board = build_board("sim", name="gate", io=spec, sysfs_root=tmp_path)
    try:
        assert isinstance(board.io.relay, GpioRelay) and board.io.relay.spec.pin == "GPIO23"
        await board.io.start()
        assert isinstance(board.io.backlight, SysfsBacklight)
        assert board.io.backlight.path == tmp_path / "sim-backlight"
    finally:
        await board.close()


async def test_a_pin_used_twice_refuses_to_build(tmp_path: Path) -> None:
    spec = IoSpec(
        buttons={ButtonRole.DOORBELL: ButtonSpec(pin="GPIO24")}, relay=RelaySpec(pin="GPIO24")
    )
    with pytest.raises(HalError, match=r"doorbell button on pin 'GPIO24': already in use"):
        build_sim_board(io=spec, sysfs_root=tmp_path)


async def test_closing_the_board_releases_the_relay_mid_pulse(make_board: MakeBoard) -> None:
    board = make_board(io=IoSpec(relay=RelaySpec(pin="GPIO24", pulse_ms=5000)))
    await board.io.start()
    relay_pin = board.io.pin_factory.pin("GPIO24")
    pulse = asyncio.create_task(board.io.relay.pulse())
    await asyncio.sleep(0)  # one turn of the loop: the new task energises, then waits
    assert relay_pin.state
    await board.close()
    assert not relay_pin.state
    with pytest.raises(DeviceUnavailableError):
        await asyncio.wait_for(pulse, TIMEOUT)


async def test_build_io_with_an_i2c_sensor_and_no_gpio() -> None:
    class SilentBus:
        def write_byte_data(self, address: int, register: int, value: int) -> None: ...

        def read_byte_data(self, address: int, register: int) -> int:
            return 0

        def close(self) -> None: ...

    io = build_io(
        IoSpec(pin_factory="lgpio", proximity=I2cProximitySpec()),
        i2c_bus_factory=lambda number: SilentBus(),
    )
    assert io.pin_factory is None  # nothing on GPIO: no pin factory (lgpio) loaded
    assert isinstance(io.proximity, I2cProximitySensor)
    await io.start()
    assert not io.proximity.is_near
    await io.close()
    await io.close()


async def test_a_board_built_by_hand_has_null_io() -> None:
    board = Board(name="bare", cameras={}, microphones={}, speakers={})
    io = board.io
    assert isinstance(io.relay, NullRelay) and isinstance(io.proximity, NullProximitySensor)
    assert isinstance(io.backlight, NullBacklight) and isinstance(io.led(), NullLed)
    assert io.pin_factory is None and not io.buttons and not io.leds
    assert Board(name="other", cameras={}, microphones={}, speakers={}).io is not io
    await board.io.start()
    await board.close()


def test_sim_io_spec_matches_the_pin_map() -> None:
    spec = sim_io_spec()
    assert spec.pin_factory == "mock"
    assert {role.value: b.pin for role, b in spec.buttons.items()} == {
        role.value: SIM_PINS[role.value] for role in ButtonRole
    }
    assert spec.relay == RelaySpec(pin="GPIO24")
    with pytest.raises(TypeError):
        spec.buttons[ButtonRole.DOORBELL] = ButtonSpec(pin="GPIO4")  # type: ignore[index]
