"""Buttons on gpiozero's MockFactory: pulls, the minimum press, hook, errors, null button."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from gpio_helpers import TIMEOUT, watched_factory
from gpiozero import DigitalInputDevice

from hal.errors import HalError
from hal.gpio_specs import ButtonRole, ButtonSpec
from hal.inputs import Button, GpioButton, NullButton

MakeButton = Callable[..., Awaitable[GpioButton]]


@pytest.fixture
def factory() -> Iterator[Any]:
    pin_factory = watched_factory()
    yield pin_factory
    pin_factory.close()


@pytest.fixture
async def make_button(factory: Any) -> AsyncIterator[MakeButton]:
    """Build and start a GpioButton on ``factory``; every one is closed after the test."""
    buttons: list[GpioButton] = []

    async def make(role: ButtonRole = ButtonRole.DOORBELL, **spec: Any) -> GpioButton:
        button = GpioButton(role, ButtonSpec(**{"pin": "GPIO17", **spec}), pin_factory=factory)
        buttons.append(button)
        await button.start()
        return button

    yield make
    for button in buttons:
        await button.close()


class Events:
    """Presses and releases of one button, as a test waits for them."""

    def __init__(self, button: Button) -> None:
        self.presses = 0
        self.releases = 0
        self.pressed = asyncio.Event()
        self.released = asyncio.Event()
        self.press_time: float | None = None
        button.on_press = self._press
        button.on_release = self._release

    def _press(self) -> None:
        self.presses += 1
        self.press_time = time.monotonic()
        self.pressed.set()

    def _release(self) -> None:
        self.releases += 1
        self.released.set()


async def test_phantom_short_press_is_ignored(make_button: MakeButton, factory: Any) -> None:
    button = await make_button(min_press_ms=80)
    events = Events(button)
    pin = factory.pin("GPIO17")
    pin.drive_low()
    pin.drive_high()
    # The only negative wait: a little longer than min_press, the press must not count.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(events.pressed.wait(), timeout=0.15)
    assert (events.presses, events.releases) == (0, 0)
    assert not button.is_pressed


async def test_a_long_press_fires_once_measured_from_the_edge(
    make_button: MakeButton, factory: Any
) -> None:
    button = await make_button(min_press_ms=60)
    events = Events(button)
    pin = factory.pin("GPIO17")
    edge = time.monotonic()
    pin.drive_low()
    await asyncio.wait_for(events.pressed.wait(), TIMEOUT)
    assert events.press_time is not None and events.press_time - edge >= 0.059
    assert button.is_pressed and events.releases == 0
    pin.drive_high()
    await asyncio.wait_for(events.released.wait(), TIMEOUT)
    assert (events.presses, events.releases) == (1, 1)
    assert not button.is_pressed


async def test_pull_up_button_switches_to_ground(make_button: MakeButton, factory: Any) -> None:
    button = await make_button(pull_up=True, debounce_ms=20)
    pin = factory.pin("GPIO17")
    assert (pin.pull, pin.state, pin.bounce) == ("up", True, 0.02)
    events = Events(button)
    pin.drive_low()
    await asyncio.wait_for(events.pressed.wait(), TIMEOUT)


async def test_pull_down_button_is_active_high(make_button: MakeButton, factory: Any) -> None:
    button = await make_button(pull_up=False, debounce_ms=0)
    pin = factory.pin("GPIO17")
    assert (pin.pull, pin.state, pin.bounce) == ("down", False, None)
    events = Events(button)
    pin.drive_high()
    await asyncio.wait_for(events.pressed.wait(), TIMEOUT)
    pin.drive_low()
    await asyncio.wait_for(events.released.wait(), TIMEOUT)


async def test_hook_switch_lifted_and_replaced(make_button: MakeButton, factory: Any) -> None:
    hook = await make_button(ButtonRole.HOOK, pin="GPIO13", min_press_ms=30)
    assert hook.name == "hook"
    events = Events(hook)
    pin = factory.pin("GPIO13")
    pin.drive_low()  # handset lifted
    await asyncio.wait_for(events.pressed.wait(), TIMEOUT)
    assert hook.is_pressed  # off-hook
    pin.drive_high()  # handset back on the cradle
    await asyncio.wait_for(events.released.wait(), TIMEOUT)
    assert not hook.is_pressed


async def test_handset_lifted_before_start_is_off_hook(factory: Any) -> None:
    hook = GpioButton(ButtonRole.HOOK, ButtonSpec(pin="GPIO13", pull_up=False), pin_factory=factory)
    try:
        factory.pin("GPIO13").drive_high()  # lifted while the unit boots (pull-down wiring)
        events = Events(hook)
        await hook.start()
        await asyncio.wait_for(events.pressed.wait(), TIMEOUT)
        assert hook.is_pressed
    finally:
        await hook.close()


async def test_callbacks_run_in_the_event_loop_thread(
    make_button: MakeButton, factory: Any
) -> None:
    button = await make_button(min_press_ms=10)
    threads: list[int] = []
    pressed = asyncio.Event()

    def on_press() -> None:
        threads.append(threading.get_ident())
        pressed.set()

    button.on_press = on_press
    # The edge arrives on another thread, as a GPIO driver's callback does.
    await asyncio.to_thread(factory.pin("GPIO17").drive_low)
    await asyncio.wait_for(pressed.wait(), TIMEOUT)
    assert threads == [threading.get_ident()]


async def test_a_failing_callback_is_logged_and_the_button_goes_on(
    make_button: MakeButton, factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    button = await make_button(min_press_ms=10)
    pressed, released = asyncio.Event(), asyncio.Event()

    def broken() -> None:
        pressed.set()
        raise RuntimeError("service bug")

    button.on_press = broken
    button.on_release = released.set
    pin = factory.pin("GPIO17")
    with caplog.at_level(logging.ERROR):
        pin.drive_low()
        await asyncio.wait_for(pressed.wait(), TIMEOUT)
    assert "doorbell button press callback failed" in caplog.text
    pin.drive_high()
    await asyncio.wait_for(released.wait(), TIMEOUT)


async def test_bad_pin_name_is_a_hal_error_naming_it(factory: Any) -> None:
    with pytest.raises(HalError, match=r"doorbell button on pin 'GPIO99': not a pin of this board"):
        GpioButton(ButtonRole.DOORBELL, ButtonSpec(pin="GPIO99"), pin_factory=factory)


async def test_two_buttons_on_one_pin_is_a_hal_error(make_button: MakeButton, factory: Any) -> None:
    await make_button(ButtonRole.DOORBELL, pin="GPIO17")
    with pytest.raises(HalError, match=r"answer button on pin 'GPIO17': already in use"):
        GpioButton(ButtonRole.ANSWER, ButtonSpec(pin="GPIO17"), pin_factory=factory)


async def test_close_is_idempotent_silences_the_button_and_frees_the_pin(factory: Any) -> None:
    spec = ButtonSpec(pin="GPIO6", min_press_ms=0)
    button = GpioButton(ButtonRole.MUTE, spec, pin_factory=factory)
    await button.start()
    events = Events(button)
    await button.close()
    await button.close()
    pin = factory.pin("GPIO6")
    pin.drive_low()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(events.pressed.wait(), timeout=0.05)
    DigitalInputDevice("GPIO6", pin_factory=factory).close()  # the pin is free again


async def test_null_button_never_fires() -> None:
    button = NullButton(ButtonRole.DOOR_RELEASE)
    button.on_press = lambda: pytest.fail("a null button pressed")
    await button.start()
    assert button.name == "door_release" and not button.is_pressed
    await button.close()
    await button.close()


def test_button_spec_refuses_nonsense() -> None:
    with pytest.raises(HalError, match="pin name is required"):
        ButtonSpec(pin="")
    with pytest.raises(HalError, match=r"min_press_ms must be in 0\.\.10000, got -1"):
        ButtonSpec(pin="GPIO17", min_press_ms=-1)
