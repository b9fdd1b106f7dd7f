"""The door contact and the tamper switch: ``GpioSwitch`` on MockFactory pins, ``NullSwitch``.

The pins are gpiozero's MockPins driven as the wiring would drive them; the state at start
is read from the pin (a door open at boot is open), bounces settle into one change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from gpio_helpers import TIMEOUT, watched_factory

from hal.board import build_sim_io
from hal.errors import DeviceUnavailableError, HalError
from hal.gpio_specs import IoSpec, SwitchSpec
from hal.io_devices import SIM_PINS, build_io, sim_io_spec
from hal.switches import GpioSwitch, NullSwitch

PIN = "GPIO21"
MakeSwitch = Callable[..., Awaitable[GpioSwitch]]


class Changes:
    """on_change(active) values as the switch delivers them."""

    def __init__(self, switch: Any) -> None:
        self.values: list[bool] = []
        self.queue: asyncio.Queue[bool] = asyncio.Queue()
        self.threads: set[int] = set()
        switch.on_change = self._changed

    def _changed(self, active: bool) -> None:
        self.values.append(active)
        self.threads.add(threading.get_ident())
        self.queue.put_nowait(active)

    async def next(self) -> bool:
        return await asyncio.wait_for(self.queue.get(), TIMEOUT)


@pytest.fixture
def factory() -> Iterator[Any]:
    pin_factory = watched_factory()
    yield pin_factory
    pin_factory.close()


@pytest.fixture
async def make_switch(factory: Any) -> AsyncIterator[MakeSwitch]:
    switches: list[GpioSwitch] = []

    async def make(level: bool | None = None, **spec: Any) -> GpioSwitch:
        """A started switch; ``level``: drive its pin to this before start (None: the pull)."""
        switch = GpioSwitch("door_contact", SwitchSpec(**{"pin": PIN, **spec}), pin_factory=factory)
        switches.append(switch)
        if level is not None:
            factory.pin(PIN).drive_high() if level else factory.pin(PIN).drive_low()
        await switch.start()
        return switch

    yield make
    for switch in switches:
        await switch.close()


async def test_a_nc_reed_with_the_pull_up_reads_open_when_high(
    make_switch: MakeSwitch, factory: Any
) -> None:
    switch = await make_switch(level=False)  # the magnet holds the contact closed: closed
    pin = factory.pin(PIN)
    assert pin.pull == "up" and switch.wired and not switch.is_active
    changes = Changes(switch)
    loop = asyncio.get_running_loop()
    edge = loop.time()
    pin.drive_high()  # the door opens (or the wire is cut)
    assert await changes.next() is True
    assert loop.time() - edge >= 0.049 and switch.is_active, "after the 50 ms debounce"
    pin.drive_low()
    assert await changes.next() is False
    assert changes.threads == {threading.get_ident()}


async def test_a_door_open_at_start_is_open_without_an_edge(
    make_switch: MakeSwitch, factory: Any
) -> None:
    switch = await make_switch()  # the pull-up alone: an open contact
    assert switch.is_active


async def test_bounces_settle_into_one_change(make_switch: MakeSwitch, factory: Any) -> None:
    switch = await make_switch(level=False, debounce_ms=50)
    pin = factory.pin(PIN)
    changes = Changes(switch)
    for _ in range(5):  # a slammed door rattles the reed
        pin.drive_high()
        pin.drive_low()
    pin.drive_high()
    assert await changes.next() is True
    pin.drive_low()
    assert await changes.next() is False
    assert changes.values == [True, False]


async def test_active_low_and_pull_down_wirings(make_switch: MakeSwitch, factory: Any) -> None:
    switch = await make_switch(pull_up=False, active_high=False, debounce_ms=0)
    pin = factory.pin(PIN)
    assert pin.pull == "down" and switch.is_active, "a NO reed read low: open"
    changes = Changes(switch)
    pin.drive_high()
    assert await changes.next() is False


async def test_close_is_idempotent_and_a_closed_switch_does_not_start(factory: Any) -> None:
    switch = GpioSwitch("tamper", SwitchSpec(pin=PIN), pin_factory=factory)
    await switch.close()
    await switch.close()
    with pytest.raises(DeviceUnavailableError):
        await switch.start()


def test_the_spec_refuses_an_empty_pin_and_absurd_debounce() -> None:
    with pytest.raises(HalError):
        SwitchSpec(pin="")
    with pytest.raises(HalError):
        SwitchSpec(pin=PIN, debounce_ms=-1)


async def test_io_devices_build_both_and_null_ones_when_absent() -> None:
    io = build_sim_io()  # every sim device, the switches pulled down (closed, untampered)
    try:
        assert isinstance(io.door_contact, GpioSwitch) and io.door_contact.spec.pin == "GPIO21"
        assert isinstance(io.tamper, GpioSwitch) and io.tamper.spec.pin == SIM_PINS["tamper"]
        await io.start()
        assert (io.state()["door_open"], io.state()["tampered"]) == (False, False)
        io.pin_factory.pin(SIM_PINS["tamper"]).drive_high()
        tampered = asyncio.Event()
        io.tamper.on_change = lambda active: tampered.set()
        await asyncio.wait_for(tampered.wait(), TIMEOUT)
        assert io.state()["tampered"] is True
    finally:
        await io.close()
    bare = build_io(IoSpec())
    assert isinstance(bare.door_contact, NullSwitch) and not bare.door_contact.wired
    assert (bare.state()["door_open"], bare.state()["tampered"]) == (None, None)
    await bare.close()


async def test_a_pin_used_twice_is_refused_naming_the_switch() -> None:
    spec = sim_io_spec()
    clash = dataclasses.replace(spec, tamper=SwitchSpec(pin=SIM_PINS["doorbell"]))
    with pytest.raises(HalError, match="tamper"):
        build_io(clash)
