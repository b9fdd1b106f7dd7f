"""The status LED's keypad and card flashes: over the call state, back to it, and losing to it.

On gpiozero MockFactory pins: `StatusLed` alone on a watched pin, then a whole door
station (device app from a callbox.toml, sim keypad, real mosquitto) whose wrong access
code flashes its LED and puts the idle pattern back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from intercom_site import IntercomSite, Unit, start_intercom_site, wait_for

from hal.gpio import close_pin_factory, make_pin_factory
from hal.gpio_specs import LedSpec
from hal.keypad import SimKeypad
from hal.leds import GpioLed, LedPattern, NullLed, flash_s
from services.intercom.entrance import FEEDBACK_LEDS, Feedback, LedFeedback
from services.intercom.status_led import StatusLed

PIN = "GPIO16"


class RecordingLed(NullLed):
    """A NullLed that keeps every pattern it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[LedPattern] = []

    def set_pattern(self, pattern: LedPattern) -> None:
        super().set_pattern(pattern)
        self.shown.append(pattern)


@pytest.fixture
def factory() -> Iterator[Any]:
    pin_factory = make_pin_factory("mock")
    yield pin_factory
    close_pin_factory(pin_factory)


@pytest.fixture
async def gpio_led(factory: Any) -> AsyncIterator[GpioLed]:
    led = GpioLed("status", LedSpec(pin=PIN), pin_factory=factory)
    await led.start()
    yield led
    await led.close()


async def test_a_flash_blinks_then_the_call_state_pattern_comes_back(
    gpio_led: GpioLed, factory: Any
) -> None:
    pin = factory.pin(PIN)
    status = StatusLed(lambda: gpio_led)
    status.show(LedPattern.IDLE)
    assert pin.state  # idle: steady on
    pin.clear_states()
    status.flash(LedPattern.REFUSED)
    assert status.flashing is LedPattern.REFUSED and gpio_led.pattern is LedPattern.REFUSED
    await wait_for(lambda: gpio_led.pattern is LedPattern.IDLE, "the idle pattern again")
    assert status.flashing is None and pin.state
    lit = [state for state in pin.states if state.state]
    assert len(lit) >= 3, f"two blinks, then steady on again: {pin.states}"


async def test_a_call_state_change_during_a_flash_wins() -> None:
    led = RecordingLed()
    status = StatusLed(lambda: led)
    status.show(LedPattern.IDLE)
    status.flash(LedPattern.UNKNOWN)
    status.show(LedPattern.RINGING)  # the visitor's dial rang a flat meanwhile
    assert led.pattern is LedPattern.RINGING and status.flashing is None
    await asyncio.sleep(flash_s(LedPattern.UNKNOWN) + 0.2)  # past the flash's own end
    assert led.shown == [LedPattern.IDLE, LedPattern.UNKNOWN, LedPattern.RINGING]


async def test_a_new_flash_replaces_one_under_way_and_lasting_patterns_are_no_flash() -> None:
    led = RecordingLed()
    status = StatusLed(lambda: led)
    status.show(LedPattern.IN_CALL)
    status.flash(LedPattern.LOCKED)
    status.flash(LedPattern.REFUSED)
    await wait_for(lambda: led.pattern is LedPattern.IN_CALL, "the call state again")
    await asyncio.sleep(flash_s(LedPattern.LOCKED) - flash_s(LedPattern.REFUSED) + 0.2)
    # the replaced flash's end changes nothing: one way back, after the second flash
    assert led.shown == [
        LedPattern.IN_CALL,
        LedPattern.LOCKED,
        LedPattern.REFUSED,
        LedPattern.IN_CALL,
    ]
    with pytest.raises(ValueError, match="'ringing' is not a flash pattern"):
        status.flash(LedPattern.RINGING)


def test_every_outcome_but_ringing_has_a_flash() -> None:
    flashed: list[LedPattern] = []
    feedback = LedFeedback(flashed.append)
    for outcome in Feedback:
        feedback(outcome)
    assert flashed == [FEEDBACK_LEDS[o] for o in Feedback if o is not Feedback.RINGING]
    assert all(flash_s(pattern) > 0 for pattern in flashed)


PANEL = """
[[bells]]
name = "smith"
label = "Flat 12 - Smith"
targets = ["flat12"]
code = "12"

[keypad]
kind = "matrix"
rows = ["GPIO4", "GPIO14", "GPIO15", "GPIO18"]
columns = ["GPIO23", "GPIO25", "GPIO8"]
keys = ["123", "456", "789", "*0#"]

[access]
enabled = true
"""


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[IntercomSite]:
    site = await start_intercom_site(
        tmp_path, [Unit("door", "door", extra_toml=PANEL), Unit("flat12", "indoor")]
    )
    yield site
    await site.close()


async def test_a_wrong_code_at_the_door_flashes_refused_then_idle(site: IntercomSite) -> None:
    endpoint = site["door"].endpoint
    assert endpoint is not None and isinstance(endpoint.board.io.keypad, SimKeypad)
    led = endpoint.board.io.led()
    assert isinstance(led, GpioLed) and led.pattern is LedPattern.IDLE
    seen: list[LedPattern] = []
    original = led.set_pattern

    def recording(pattern: LedPattern) -> None:
        seen.append(pattern)
        original(pattern)

    led.set_pattern = recording  # type: ignore[method-assign]
    endpoint.board.io.keypad.press("*1111#")  # nobody's code: refused
    await wait_for(lambda: LedPattern.REFUSED in seen, "the refused flash")
    await wait_for(lambda: led.pattern is LedPattern.IDLE, "the idle pattern again")
    endpoint.board.io.keypad.press("99#")  # no bell or flat 99
    await wait_for(lambda: LedPattern.UNKNOWN in seen, "the unknown-code flash")
    await wait_for(lambda: led.pattern is LedPattern.IDLE, "the idle pattern again")
    assert seen == [LedPattern.REFUSED, LedPattern.IDLE, LedPattern.UNKNOWN, LedPattern.IDLE]
