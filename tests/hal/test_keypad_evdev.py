"""The USB keypad through evdev.

This machine (and most containers) has no ``/dev/uinput``, so the back-end is tested with
python-evdev's own ``InputEvent`` objects: fed to ``EvdevKeypad.handle_event``, and read through
the loop's ``add_reader`` from ``FakeInputDevice``, a documented stand-in for evdev's
``InputDevice`` (a pipe's fd that becomes readable, ``read()`` returning the queued events,
``ENODEV`` once "unplugged"). ``test_a_uinput_keyboard_types_into_the_keypad`` drives a real
uinput virtual keyboard through the kernel where ``/dev/uinput`` exists and is skipped, naming
the missing ``/dev/uinput``, elsewhere (docs/hardware.md, "USB keypad").
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import evdev
import pytest
from evdev import InputEvent, ecodes

from hal.gpio_specs import EvdevKeypadSpec
from hal.keypad_evdev import EVDEV_KEYS, EvdevKeypad

TIMEOUT = 3.0
SPEC = EvdevKeypadSpec(device="/dev/input/by-id/usb-test-event-kbd", grab=True)


def event(code: int, value: int = 1, kind: int = ecodes.EV_KEY) -> InputEvent:
    now = time.time()
    return InputEvent(int(now), int(now % 1 * 1e6), kind, code, value)


def key_events(code: int) -> list[InputEvent]:
    """What a keyboard sends for one key press: down, sync, (repeat), up, sync."""
    return [
        event(code, 1),
        event(ecodes.SYN_REPORT, 0, ecodes.EV_SYN),
        event(code, 2),
        event(code, 0),
        event(ecodes.SYN_REPORT, 0, ecodes.EV_SYN),
    ]


class FakeInputDevice:
    """Stands in for ``evdev.InputDevice``: ``fd``, ``read()``, ``grab()``, ``close()``.

    ``push(events)`` queues real ``InputEvent`` objects and makes ``fd`` readable (a byte on a
    pipe); ``unplug()`` makes the next ``read()`` fail with ENODEV, as the kernel does for a
    device that is gone.
    """

    def __init__(self) -> None:
        self._read_end, self._write_end = os.pipe()
        os.set_blocking(self._read_end, False)
        self.fd = self._read_end
        self.queued: list[InputEvent] = []
        self.grabbed = False
        self.closed = False
        self.gone = False

    def push(self, events: list[InputEvent]) -> None:
        self.queued.extend(events)
        os.write(self._write_end, b"x")

    def unplug(self) -> None:
        self.gone = True
        os.write(self._write_end, b"x")

    def read(self) -> Iterator[InputEvent]:
        if self.gone:
            raise OSError(errno.ENODEV, "No such device")
        with contextlib.suppress(BlockingIOError):
            os.read(self._read_end, 4096)
        events, self.queued = self.queued, []
        return iter(events)

    def grab(self) -> None:
        self.grabbed = True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._read_end)
            os.close(self._write_end)


class Plug:
    """The device path as the keypad opens it: plugged in (a FakeInputDevice) or not."""

    def __init__(self) -> None:
        self.device: FakeInputDevice | None = FakeInputDevice()
        self.opened: list[FakeInputDevice] = []
        self.attempts = 0

    def open(self, path: str) -> FakeInputDevice:
        self.attempts += 1
        if self.device is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        device, self.device = self.device, None
        self.opened.append(device)
        return device

    def close_all(self) -> None:
        for device in [*self.opened, *([self.device] if self.device else [])]:
            device.close()


class Keys:
    def __init__(self, keypad: EvdevKeypad) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        keypad.on_key = self.queue.put_nowait

    async def take(self, count: int) -> str:
        return "".join([await asyncio.wait_for(self.queue.get(), TIMEOUT) for _ in range(count)])


@pytest.fixture
async def plugged() -> AsyncIterator[tuple[EvdevKeypad, Plug, Keys]]:
    plug = Plug()
    keypad = EvdevKeypad(SPEC, open_device=plug.open, reopen_first_s=0.02, reopen_max_s=0.05)
    keys = Keys(keypad)
    await keypad.start()
    yield keypad, plug, keys
    await keypad.close()
    plug.close_all()


def test_the_key_map_follows_the_panel_design() -> None:
    assert EVDEV_KEYS["KEY_KP7"] == EVDEV_KEYS["KEY_7"] == "7"
    assert {EVDEV_KEYS[k] for k in ("KEY_KPASTERISK", "KEY_ESC", "KEY_BACKSPACE")} == {"*"}
    assert {EVDEV_KEYS[k] for k in ("KEY_ENTER", "KEY_KPENTER")} == {"#"}


async def test_handle_event_reports_key_downs_only() -> None:
    keypad = EvdevKeypad(SPEC, open_device=Plug().open)
    seen: list[str] = []
    keypad.on_key = seen.append
    for code in (ecodes.KEY_KP1, ecodes.KEY_2, ecodes.KEY_KPASTERISK, ecodes.KEY_KPENTER):
        for ev in key_events(code):
            keypad.handle_event(ev)
    keypad.handle_event(event(ecodes.KEY_A))  # not a keypad key
    keypad.handle_event(event(ecodes.KEY_NUMLOCK))
    keypad.handle_event(event(ecodes.REL_X, 1, ecodes.EV_REL))
    assert seen == ["1", "2", "*", "#"]


async def test_events_read_from_the_device_reach_on_key(
    plugged: tuple[EvdevKeypad, Plug, Keys],
) -> None:
    keypad, plug, keys = plugged
    device = plug.opened[0]
    assert device.grabbed and keypad.is_open
    codes = [ecodes.KEY_KP4, ecodes.KEY_KP2, ecodes.KEY_ESC, ecodes.KEY_0, ecodes.KEY_ENTER]
    device.push([ev for code in codes for ev in key_events(code)])
    assert await keys.take(5) == "42*0#"


async def test_an_unplugged_keypad_is_logged_then_reopened(
    plugged: tuple[EvdevKeypad, Plug, Keys], caplog: pytest.LogCaptureFixture
) -> None:
    keypad, plug, keys = plugged
    first = plug.opened[0]
    with caplog.at_level(logging.INFO, logger="hal.keypad_evdev"):
        first.unplug()
        async with asyncio.timeout(TIMEOUT):
            while keypad.is_open or plug.attempts < 3:  # noqa: ASYNC110 - counts, no event
                await asyncio.sleep(0.01)
        assert first.closed
        assert f"keypad: {SPEC.device} is gone" in caplog.text
        plug.device = FakeInputDevice()  # plugged in again
        async with asyncio.timeout(TIMEOUT):
            while not keypad.is_open:  # noqa: ASYNC110 - a state, no event
                await asyncio.sleep(0.01)
        assert f"keypad: {SPEC.device} is back" in caplog.text
    plug.opened[1].push(key_events(ecodes.KEY_KP9))
    assert await keys.take(1) == "9"


async def test_a_keypad_missing_at_start_is_opened_when_it_appears() -> None:
    plug = Plug()
    plug.device = None
    keypad = EvdevKeypad(SPEC, open_device=plug.open, reopen_first_s=0.02, reopen_max_s=0.05)
    keys = Keys(keypad)
    await keypad.start()
    try:
        assert not keypad.is_open
        plug.device = FakeInputDevice()
        async with asyncio.timeout(TIMEOUT):
            while not keypad.is_open:  # noqa: ASYNC110 - a state, no event
                await asyncio.sleep(0.01)
        plug.opened[0].push(key_events(ecodes.KEY_KP3))
        assert await keys.take(1) == "3"
    finally:
        await keypad.close()
        plug.close_all()


async def test_close_stops_reading_and_reopening(plugged: tuple[EvdevKeypad, Plug, Keys]) -> None:
    keypad, plug, keys = plugged
    device = plug.opened[0]
    await keypad.close()
    await keypad.close()
    assert device.closed and not keypad.is_open
    attempts = plug.attempts
    await asyncio.sleep(0.1)
    assert plug.attempts == attempts
    assert keys.queue.empty()


UINPUT = Path("/dev/uinput")


@pytest.mark.skipif(
    not os.access(UINPUT, os.R_OK | os.W_OK),
    reason="no /dev/uinput here (the kernel's uinput module is not loaded, or this container "
    "has no access to it): a virtual keyboard cannot be made; the InputEvent tests above "
    "cover the back-end",
)
async def test_a_uinput_keyboard_types_into_the_keypad() -> None:
    """A real virtual keyboard through the kernel's evdev, where /dev/uinput exists."""
    codes = [ecodes.KEY_KP1, ecodes.KEY_KP2, ecodes.KEY_KPENTER]
    ui = evdev.UInput({ecodes.EV_KEY: codes}, name="callbox-test-keypad")
    try:
        keypad = EvdevKeypad(EvdevKeypadSpec(device=str(ui.device.path), grab=True))
        keys = Keys(keypad)
        await keypad.start()
        try:
            assert keypad.is_open
            for code in codes:
                ui.write(ecodes.EV_KEY, code, 1)
                ui.write(ecodes.EV_KEY, code, 0)
                ui.syn()
            assert await keys.take(3) == "12#"
        finally:
            await keypad.close()
    finally:
        ui.close()


def test_other_devices_are_refused_by_the_spec() -> None:
    from hal.errors import HalError

    with pytest.raises(HalError, match="under /dev/input/"):
        EvdevKeypadSpec(device="/tmp/kbd")
