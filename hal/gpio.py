"""gpiozero plumbing shared by the GPIO back-ends: pin factories, errors, loop hand-over.

A pin factory is chosen by name and imported only when chosen, so this module imports
on a laptop without gpiozero's drivers: "lgpio" (every Pi, the only choice on a Pi 5),
"rpigpio" (RPi.GPIO, Pi 4 and older), "default" (lgpio, else RPi.GPIO) and "mock"
(gpiozero's own MockFactory; each call returns a new one, so two simulated boards in one
process have separate pins). Every device is built with ``pin_factory=`` explicitly:
gpiozero's global ``Device.pin_factory`` is never set.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from hal.errors import HalError
from hal.gpio_specs import PIN_FACTORY_NAMES

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

_FACTORY_CLASSES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "mock": ("gpiozero.pins.mock", "MockFactory"),
}
_DEFAULT_ORDER = ("lgpio", "rpigpio")


def make_pin_factory(name: str) -> Any:
    """A new gpiozero pin factory called ``name`` (see the module docstring).

    HalError for unknown names and for a driver that does not load here (library
    missing, not a Raspberry Pi, no access to /dev/gpiochip*).
    """
    if name not in PIN_FACTORY_NAMES:
        known = ", ".join(PIN_FACTORY_NAMES)
        raise HalError(f"unknown GPIO pin factory {name!r} (known: {known})")
    if name != "default":
        return _load_factory(name)
    failures: list[str] = []
    for candidate in _DEFAULT_ORDER:
        try:
            return _load_factory(candidate)
        except HalError as err:
            failures.append(str(err))
    raise HalError("no GPIO pin factory works here: " + "; ".join(failures))


def _load_factory(name: str) -> Any:
    module_name, class_name = _FACTORY_CLASSES[name]
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)()
    except Exception as err:
        raise HalError(f"GPIO pin factory {name!r} is not available: {_reason(err)}") from err


def close_pin_factory(factory: Any) -> None:
    """Release what ``factory`` holds (chip handles); HalError if the driver fails."""
    try:
        factory.close()
    except Exception as err:
        raise HalError(f"closing the GPIO pin factory failed: {_reason(err)}") from err


def open_gpio(what: str, pin: str, build: Callable[[], _T]) -> _T:
    """Run ``build`` (a gpiozero constructor) and translate its errors.

    ``what`` names the device for the message ("doorbell button", "door relay"); the
    HalError names the pin and why it could not be used.
    """
    try:
        return build()
    except Exception as err:
        raise gpio_error(what, pin, err) from err


def switch_off_and_close(what: str, pin: str, device: Any) -> None:
    """Drive a gpiozero output device inactive, then release its pin (HalError on failure)."""
    try:
        try:
            device.off()
        finally:
            device.close()
    except Exception as err:
        raise gpio_error(what, pin, err) from err


def gpio_error(what: str, pin: str, err: Exception) -> HalError:
    """A HalError saying which device on which pin failed, and why."""
    return HalError(f"{what} on pin {pin!r}: {_why(err)}")


def _why(err: Exception) -> str:
    try:
        from gpiozero import exc
    except ImportError:
        return _reason(err)
    if isinstance(err, exc.GPIOPinInUse):
        return f"already in use by another device ({err})"
    if isinstance(err, exc.PinInvalidPin):
        return f"not a pin of this board ({err}; use e.g. 'GPIO17' or 'BOARD11')"
    if isinstance(err, exc.PinFixedPull):
        return f"the pin has a fixed pull resistor ({err}); wire it for that pull"
    return _reason(err)


def _reason(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def call_in_loop(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any
) -> None:
    """Hand ``callback(*args)`` from a driver thread to ``loop``.

    Once the loop is closed (the process is shutting down) there is nobody left to
    tell, so the event is dropped with a debug message.
    """
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        _log.debug("event loop closed; dropped %s%r", getattr(callback, "__name__", callback), args)


def fire(what: str, callback: Callable[..., None] | None, *args: Any) -> None:
    """Run a user callback in the loop thread; one that raises is logged, never propagated."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:  # noqa: BLE001 - a service bug must not stop the driver's events
        _log.exception("%s callback failed", what)
