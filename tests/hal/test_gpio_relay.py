"""The door relay on gpiozero's MockFactory.

Bounded pulses, the watchdog, safe start and close, active-low drivers, the null relay.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from gpio_helpers import TIMEOUT, WatchedPin, is_high, is_low, watched_factory

from hal.errors import DeviceUnavailableError, HalError
from hal.gpio_specs import RelaySpec
from hal.relay import GpioRelay, NullRelay, RelayBusyError

MakeRelay = Callable[..., Awaitable[GpioRelay]]
PIN = "GPIO24"


@pytest.fixture
def factory() -> Iterator[Any]:
    pin_factory = watched_factory()
    yield pin_factory
    pin_factory.close()


@pytest.fixture
def pin(factory: Any) -> WatchedPin:
    """The relay's pin, created before the relay so a test can see everything it does."""
    watched: WatchedPin = factory.pin(PIN)
    return watched


@pytest.fixture
async def make_relay(factory: Any) -> AsyncIterator[MakeRelay]:
    """Build and start a GpioRelay on ``factory``; every one is closed after the test."""
    relays: list[GpioRelay] = []

    async def make(**spec: Any) -> GpioRelay:
        relay = GpioRelay(RelaySpec(**{"pin": PIN, **spec}), pin_factory=factory)
        relays.append(relay)
        await relay.start()
        return relay

    yield make
    for relay in relays:
        await relay.close()


def high_periods(pin: WatchedPin) -> list[float]:
    """Seconds the pin spent high, one entry per high period that ended."""
    return [after.timestamp for before, after in itertools.pairwise(pin.states) if before.state]


async def test_pulse_energises_for_pulse_ms_then_releases(
    make_relay: MakeRelay, pin: WatchedPin
) -> None:
    relay = await make_relay(pulse_ms=200)
    pin.clear_states()
    await relay.pulse()
    assert len(pin.states) == 3
    pin.assert_states_and_times([(0.0, False), (0.0, True), (0.2, False)])
    assert not relay.is_active and not pin.state


async def test_a_pin_left_high_by_a_crashed_process_is_released_on_construction(
    make_relay: MakeRelay, pin: WatchedPin
) -> None:
    pin.drive_high()  # what a process that died mid-pulse leaves behind
    assert pin.state
    relay = await make_relay()
    assert (pin.function, pin.state, relay.is_active) == ("output", False, False)


async def test_close_mid_pulse_releases_and_ends_the_pulse(
    make_relay: MakeRelay, pin: WatchedPin
) -> None:
    relay = await make_relay(pulse_ms=5000)
    pulse = asyncio.create_task(relay.pulse())
    await pin.reach(is_high)
    await relay.close()
    assert not pin.state and not relay.is_active
    with pytest.raises(DeviceUnavailableError, match="closed during the pulse"):
        await asyncio.wait_for(pulse, TIMEOUT)
    assert not pin.state
    await relay.close()
    with pytest.raises(DeviceUnavailableError, match="door relay is closed"):
        await relay.pulse()


async def test_a_cancelled_pulse_releases(make_relay: MakeRelay, pin: WatchedPin) -> None:
    relay = await make_relay(pulse_ms=5000)
    pulse = asyncio.create_task(relay.pulse())
    await pin.reach(is_high)
    pulse.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pulse
    assert not pin.state and not relay.is_active
    await relay.pulse(0.02)  # the relay still works
    assert len(high_periods(pin)) == 2


async def test_the_watchdog_releases_when_the_event_loop_is_blocked(
    make_relay: MakeRelay, pin: WatchedPin, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await make_relay(pulse_ms=300, max_on_ms=300)
    pin.clear_states()
    pulse = asyncio.create_task(relay.pulse())
    await pin.reach(is_high)
    with caplog.at_level(logging.ERROR):
        # Block the event loop (as a stuck call would) until the pin drops: only the
        # watchdog thread can release the relay now.
        released = pin.wait_until(is_low, timeout=TIMEOUT)
    assert released
    assert "forcing it off" in caplog.text
    assert high_periods(pin) == [pytest.approx(0.3, abs=0.05)]
    await asyncio.wait_for(pulse, TIMEOUT)  # the late pulse task ends quietly
    assert len(pin.states) == 3 and not relay.is_active


async def test_a_pulse_while_pulsing_neither_extends_nor_restarts(
    make_relay: MakeRelay, pin: WatchedPin
) -> None:
    relay = await make_relay(pulse_ms=300)
    pin.clear_states()
    first = asyncio.create_task(relay.pulse())
    await pin.reach(is_high)
    with pytest.raises(RelayBusyError, match="already energised"):
        await relay.pulse()
    await asyncio.wait_for(first, TIMEOUT)
    assert high_periods(pin) == [pytest.approx(0.3, abs=0.05)]


async def test_an_active_low_relay_inverts_the_pin(make_relay: MakeRelay, pin: WatchedPin) -> None:
    relay = await make_relay(active_high=False, pulse_ms=100)
    assert pin.state and not relay.is_active  # released = high
    pin.clear_states()
    await relay.pulse()
    pin.assert_states_and_times([(0.0, True), (0.0, False), (0.1, True)])
    assert len(pin.states) == 3 and pin.state
    await relay.close()
    assert pin.state  # closed = still released


async def test_a_pulse_longer_than_max_on_is_cut_to_max_on(
    make_relay: MakeRelay, pin: WatchedPin, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await make_relay(pulse_ms=100, max_on_ms=200)
    assert (relay.pulse_s, relay.max_on_s) == (0.1, 0.2)
    pin.clear_states()
    with caplog.at_level(logging.WARNING):
        await relay.pulse(5.0)
    assert high_periods(pin) == [pytest.approx(0.2, abs=0.05)]
    assert "cut to max_on" in caplog.text


async def test_a_pulse_must_have_a_length(make_relay: MakeRelay, pin: WatchedPin) -> None:
    relay = await make_relay()
    with pytest.raises(HalError, match="must last > 0 s"):
        await relay.pulse(0)
    assert len(pin.states) == 1 and not pin.state


async def test_bad_relay_pin_is_a_hal_error_naming_it(factory: Any) -> None:
    with pytest.raises(HalError, match=r"door relay on pin 'GPIO28'"):
        GpioRelay(RelaySpec(pin="GPIO28"), pin_factory=factory)


def test_relay_spec_keeps_pulse_within_max_on() -> None:
    with pytest.raises(HalError, match=r"pulse_ms must be in 1\.\.2000, got 3000"):
        RelaySpec(pin=PIN, pulse_ms=3000, max_on_ms=2000)
    with pytest.raises(HalError, match=r"max_on_ms must be in 1\.\.60000"):
        RelaySpec(pin=PIN, max_on_ms=120_000)


async def test_null_relay_refuses_to_pulse() -> None:
    relay = NullRelay()
    await relay.start()
    with pytest.raises(DeviceUnavailableError, match="no door relay"):
        await relay.pulse()
    assert not relay.is_active
    await relay.close()
    await relay.close()
