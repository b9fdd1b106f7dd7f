"""A USB (HID) keypad read through evdev (python-evdev), without blocking the event loop.

The device (``/dev/input/by-id/...-event-kbd``, a stable name per keypad) is opened in a
thread, optionally grabbed (``EVIOCGRAB``: the console and other readers see no keys), and
read in the loop with ``loop.add_reader`` on its file descriptor (evdev opens it
non-blocking). Only key-down events count (value 1: not the key-up, 0, nor the kernel's
auto-repeat, 2); ``EVDEV_KEYS`` maps key codes to keypad keys, other keys are ignored.

A keypad that vanishes (unplugged: the read fails with ENODEV) is logged as an error; it
reports nothing until the device comes back: it is reopened by path after 1 s, then at
growing intervals up to 30 s (the same happens when it is missing at start). ``close()``
stops that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from hal.errors import DeviceUnavailableError
from hal.gpio_specs import EvdevKeypadSpec
from hal.keypad import Keypad

__all__ = ["EVDEV_KEYS", "EvdevKeypad", "open_input_device"]

_log = logging.getLogger(__name__)

EVDEV_KEYS: Mapping[str, str] = MappingProxyType(
    {
        **{f"KEY_{digit}": str(digit) for digit in range(10)},
        **{f"KEY_KP{digit}": str(digit) for digit in range(10)},
        "KEY_KPASTERISK": "*",
        "KEY_ESC": "*",
        "KEY_BACKSPACE": "*",
        "KEY_ENTER": "#",
        "KEY_KPENTER": "#",
    }
)
"""evdev key name -> keypad key (docs/hardware.md, "USB keypad")."""

KEY_DOWN = 1
REOPEN_FIRST_S = 1.0
REOPEN_MAX_S = 30.0


def open_input_device(path: str) -> Any:
    """Open ``path`` with python-evdev (blocking: call it in a thread); OSError if it cannot."""
    import evdev

    return evdev.InputDevice(path)


class EvdevKeypad(Keypad):
    """A keypad on ``/dev/input`` (see the module docstring).

    ``open_device`` opens a path and returns an object with python-evdev's ``InputDevice``
    interface (``fd``, ``read()``, ``grab()``, ``close()``); tests pass a fake of it.
    """

    def __init__(
        self,
        spec: EvdevKeypadSpec,
        *,
        name: str = "keypad",
        open_device: Callable[[str], Any] = open_input_device,
        reopen_first_s: float = REOPEN_FIRST_S,
        reopen_max_s: float = REOPEN_MAX_S,
    ) -> None:
        """A keypad on ``spec.device``, opened by ``start()``."""
        super().__init__(name)
        self.spec = spec
        self._open_device = open_device
        self._reopen_first_s = reopen_first_s
        self._reopen_max_s = reopen_max_s
        self._codes: dict[int, str] | None = None
        self._device: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reopen: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def is_open(self) -> bool:
        """True while the device is open and read."""
        return self._device is not None

    @property
    def is_connected(self) -> bool:
        """True while the device is open and read (False: unplugged or not found yet)."""
        return self.is_open

    async def start(self) -> None:
        """Open the device and read it; a missing one is logged and retried in the background."""
        if self._closed:
            raise DeviceUnavailableError(f"{self.name} is closed")
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._codes = _key_codes()
        try:
            await self._attach()
        except OSError as err:
            _log.error("%s: cannot open %s (%s); retrying", self.name, self.spec.device, err)
            self._start_reopen()

    async def close(self) -> None:
        """Stop reading, stop reopening, ungrab and close the device; idempotent."""
        if self._closed:
            return
        self._closed = True
        task, self._reopen = self._reopen, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        device = self._detach()
        if device is not None:
            await asyncio.to_thread(_close_device, self.name, device)

    def handle_event(self, event: Any) -> None:
        """One evdev ``InputEvent`` (loop thread): a key-down of a keypad key is reported."""
        import evdev

        if event.type != evdev.ecodes.EV_KEY or event.value != KEY_DOWN:
            return
        key = (self._codes or _key_codes()).get(event.code)
        if key is None:
            _log.debug("%s: ignored key code %d", self.name, event.code)
            return
        self.key_pressed(key)

    async def _attach(self) -> None:
        device = await asyncio.to_thread(self._open, self.spec.device)
        if self._closed:
            await asyncio.to_thread(_close_device, self.name, device)
            return
        assert self._loop is not None
        self._device = device
        self._loop.add_reader(device.fd, self._readable)
        _log.info(
            "%s: reading %s%s", self.name, self.spec.device, " (grabbed)" if self.spec.grab else ""
        )

    def _open(self, path: str) -> Any:
        device = self._open_device(path)
        if self.spec.grab:
            try:
                device.grab()
            except OSError:
                device.close()
                raise
        return device

    def _detach(self) -> Any:
        device, self._device = self._device, None
        if device is not None and self._loop is not None:
            self._loop.remove_reader(device.fd)
        return device

    def _readable(self) -> None:
        device = self._device
        if device is None:
            return
        try:
            events = list(device.read())
        except BlockingIOError:
            return
        except OSError as err:
            self._vanished(err)
            return
        for event in events:
            self.handle_event(event)

    def _vanished(self, err: OSError) -> None:
        _log.error(
            "%s: %s is gone (%s): no keys until it is back; reopening it",
            self.name,
            self.spec.device,
            err,
        )
        device = self._detach()
        if device is not None:
            _close_device(self.name, device)  # the fd of a vanished device: close() cannot block
        self._start_reopen()

    def _start_reopen(self) -> None:
        if self._closed or (self._reopen is not None and not self._reopen.done()):
            return
        assert self._loop is not None
        self._reopen = self._loop.create_task(self._reopen_loop(), name=f"{self.name} reopen")

    async def _reopen_loop(self) -> None:
        delay = self._reopen_first_s
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await self._attach()
            except OSError as err:
                _log.debug("%s: %s still missing (%s)", self.name, self.spec.device, err)
                delay = min(delay * 2, self._reopen_max_s)
                continue
            if self._device is not None:
                _log.info("%s: %s is back", self.name, self.spec.device)
            return


def _close_device(name: str, device: Any) -> None:
    try:
        device.close()
    except OSError as err:
        _log.warning("%s: closing the input device failed: %s", name, err)


def _key_codes() -> dict[int, str]:
    """The key code of each ``EVDEV_KEYS`` name -> its keypad key."""
    import evdev

    return {getattr(evdev.ecodes, name): key for name, key in EVDEV_KEYS.items()}
