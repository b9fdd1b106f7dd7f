"""LED patterns on gpiozero's MockFactory: blinking, steady, off, switching, null LED."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from gpio_helpers import WatchedPin, gpio_threads, watched_factory
from support import wait_for

from hal.errors import DeviceUnavailableError, HalError
from hal.gpio_specs import LedSpec
from hal.leds import FLASH_TIMES, GpioLed, LedPattern, NullLed, flash_s

MakeLed = Callable[..., Awaitable[GpioLed]]
PIN = "GPIO16"


@pytest.fixture
def factory() -> Iterator[Any]:
    pin_factory = watched_factory()
    yield pin_factory
    pin_factory.close()


@pytest.fixture
def pin(factory: Any) -> WatchedPin:
    watched: WatchedPin = factory.pin(PIN)
    return watched


@pytest.fixture
async def make_led(factory: Any) -> AsyncIterator[MakeLed]:
    leds: list[GpioLed] = []

    async def make(**spec: Any) -> GpioLed:
        led = GpioLed("status", LedSpec(**{"pin": PIN, **spec}), pin_factory=factory)
        leds.append(led)
        await led.start()
        return led

    yield make
    for led in leds:
        await led.close()


def changes_at_least(count: int) -> Callable[[WatchedPin], bool]:
    """Predicate: the pin changed state ``count`` times since its history was cleared."""
    return lambda pin: len(pin.states) > count


@pytest.mark.alone  # blink times within 50 ms: not on a loaded machine
async def test_ringing_blinks_a_quarter_second_on_and_off(
    make_led: MakeLed, pin: WatchedPin
) -> None:
    led = await make_led()
    pin.clear_states()
    led.set_pattern(LedPattern.RINGING)
    await pin.reach(changes_at_least(5))
    pin.assert_states_and_times(
        [(0.0, False), (0.0, True), (0.25, False), (0.25, True), (0.25, False), (0.25, True)]
    )
    assert led.pattern is LedPattern.RINGING


@pytest.mark.alone  # blink times within 50 ms: not on a loaded machine
async def test_error_blinks_short_on_long_off(make_led: MakeLed, pin: WatchedPin) -> None:
    led = await make_led()
    pin.clear_states()
    led.set_pattern(LedPattern.ERROR)
    await pin.reach(changes_at_least(3))
    pin.assert_states_and_times([(0.0, False), (0.0, True), (0.1, False), (0.9, True)])


@pytest.mark.alone  # blink times within 50 ms: not on a loaded machine
async def test_refused_is_a_short_double_blink_that_ends_off(
    make_led: MakeLed, pin: WatchedPin
) -> None:
    led = await make_led()
    pin.clear_states()
    led.set_pattern(LedPattern.REFUSED)
    await pin.reach(changes_at_least(4))
    pin.assert_states_and_times(
        [(0.0, False), (0.0, True), (0.15, False), (0.15, True), (0.15, False)]
    )
    assert flash_s(LedPattern.REFUSED) == pytest.approx(0.6)


@pytest.mark.parametrize("pattern", list(FLASH_TIMES))
async def test_a_flash_blinks_its_count_ends_off_and_plays_again_when_set_again(
    make_led: MakeLed, pin: WatchedPin, pattern: LedPattern
) -> None:
    _, _, blinks = FLASH_TIMES[pattern]
    led = await make_led()
    for _ in range(2):  # the same flash again plays it again
        pin.clear_states()
        led.set_pattern(pattern)
        await pin.reach(changes_at_least(2 * blinks))
        lit = [state for state in pin.states if state.state]
        assert len(lit) == blinks and not pin.state and led.pattern is pattern
        await wait_for(lambda: not gpio_threads(), "the flash's blink thread to end")
    assert flash_s(LedPattern.RINGING) == 0.0 and flash_s(LedPattern.IDLE) == 0.0


async def test_in_call_and_idle_are_steady_on_and_off_is_off(
    make_led: MakeLed, pin: WatchedPin
) -> None:
    led = await make_led()
    assert not pin.state and not led.is_lit
    led.set_pattern(LedPattern.IN_CALL)
    assert pin.state and led.is_lit and not gpio_threads()
    led.set_pattern(LedPattern.IDLE)
    assert pin.state and not gpio_threads()
    led.set_pattern(LedPattern.OFF)
    assert not pin.state


async def test_switching_pattern_stops_the_old_blink_thread(
    make_led: MakeLed, pin: WatchedPin
) -> None:
    led = await make_led()
    led.set_pattern(LedPattern.RINGING)
    await pin.reach(changes_at_least(2))
    assert len(gpio_threads()) == 1
    led.set_pattern(LedPattern.IN_CALL)
    assert not gpio_threads()  # stopped and joined before set_pattern returned
    assert pin.state
    led.set_pattern(LedPattern.ERROR)
    led.set_pattern(LedPattern.RINGING)
    assert len(gpio_threads()) == 1
    led.set_pattern(LedPattern.OFF)
    assert not gpio_threads() and not pin.state


async def test_the_same_pattern_again_does_not_restart_the_blink(
    make_led: MakeLed, pin: WatchedPin
) -> None:
    led = await make_led()
    led.set_pattern(LedPattern.RINGING)
    (thread,) = gpio_threads()
    led.set_pattern(LedPattern.RINGING)
    assert gpio_threads() == [thread]


async def test_an_active_low_led_inverts_the_pin(make_led: MakeLed, pin: WatchedPin) -> None:
    led = await make_led(active_high=False)
    assert pin.state  # off = high
    led.set_pattern(LedPattern.IN_CALL)
    assert not pin.state


async def test_close_switches_off_stops_blinking_and_is_idempotent(
    factory: Any, pin: WatchedPin
) -> None:
    led = GpioLed("status", LedSpec(pin=PIN), pin_factory=factory)
    led.set_pattern(LedPattern.RINGING)
    await pin.reach(changes_at_least(1))
    await led.close()
    await led.close()
    assert not pin.state and not gpio_threads() and not led.is_lit
    with pytest.raises(DeviceUnavailableError, match="status LED is closed"):
        led.set_pattern(LedPattern.IN_CALL)


async def test_bad_led_pin_is_a_hal_error_naming_it(factory: Any) -> None:
    with pytest.raises(HalError, match=r"porch LED on pin 'LED9'"):
        GpioLed("porch", LedSpec(pin="LED9"), pin_factory=factory)


async def test_null_led_accepts_patterns() -> None:
    led = NullLed()
    await led.start()
    led.set_pattern(LedPattern.RINGING)
    assert led.pattern is LedPattern.RINGING and led.name == "status"
    await led.close()
