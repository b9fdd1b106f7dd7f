"""Display backlight: the ``Backlight`` interface, the sysfs back-end and a null one.

Linux exposes a backlight as ``/sys/class/backlight/<device>/`` with ``bl_power``
(0 = on, non-zero = blanked; callbox writes 1), ``brightness`` and ``max_brightness``.
The official 7" DSI display appears as ``10-0045`` (``rpi_backlight``); other panels
bring their own names. The root is injectable, so tests and the sim board use a tree
of plain files (``make_sim_backlight_tree``). File I/O runs off the event loop.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from pathlib import Path

from hal.closing import CloseOnce
from hal.errors import DeviceUnavailableError, HalError
from hal.gpio_specs import BacklightSpec

_log = logging.getLogger(__name__)

POWER_ON = "0"
POWER_OFF = "1"


class Backlight(abc.ABC):
    """A screen's backlight that the intercom switches off (proximity, idle) and on."""

    @property
    @abc.abstractmethod
    def is_on(self) -> bool:
        """True while the backlight is powered."""

    @abc.abstractmethod
    async def set_power(self, on: bool) -> None:
        """Switch the backlight on or off (bl_power 0 = on, 1 = off)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Find the device and apply the configured brightness."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Leave the screen ON and let go; calling it again does nothing."""


class NullBacklight(Backlight):
    """No display, or none we may control: remembers the requested state, touches nothing."""

    def __init__(self) -> None:
        """A backlight that reports on."""
        self._on = True

    @property
    def is_on(self) -> bool:
        """The last requested state (on at first)."""
        return self._on

    async def set_power(self, on: bool) -> None:
        """Remember ``on``."""
        self._on = on

    async def start(self) -> None:
        """Nothing to find."""

    async def close(self) -> None:
        """Back to on."""
        self._on = True


def make_sim_backlight_tree(
    root: Path, name: str = "sim-backlight", max_brightness: int = 255
) -> Path:
    """Create ``<root>/<name>/`` with the files of a powered, fully bright backlight.

    Returns the device directory. The sim board and tests point a ``SysfsBacklight``
    at ``root``.
    """
    device = root / name
    device.mkdir(parents=True, exist_ok=True)
    (device / "bl_power").write_text(POWER_ON + "\n")
    (device / "max_brightness").write_text(f"{max_brightness}\n")
    (device / "brightness").write_text(f"{max_brightness}\n")
    return device


def find_backlight(root: Path, device: str | None) -> Path:
    """The directory of backlight ``device`` under ``root`` (the only one if None).

    DeviceUnavailableError naming the path looked at and the backlights that exist.
    """
    found = sorted(p.parent.name for p in root.glob("*/bl_power")) if root.is_dir() else []
    available = ", ".join(repr(name) for name in found) or "none"
    if device is not None:
        path = root / device
        if not (path / "bl_power").is_file():
            raise DeviceUnavailableError(f"no backlight {path} (available: {available})")
        return path
    if len(found) != 1:
        many = "several" if found else "no"
        raise DeviceUnavailableError(
            f"{many} backlights under {root} (available: {available}); name one in the config"
        )
    return root / found[0]


class SysfsBacklight(Backlight):
    """A backlight driven through its sysfs files."""

    def __init__(self, spec: BacklightSpec) -> None:
        """Nothing is touched until ``start()``."""
        self.spec = spec
        self._path: Path | None = None
        self._on = True
        self._close = CloseOnce()

    @property
    def path(self) -> Path | None:
        """The device directory, once started."""
        return self._path

    @property
    def is_on(self) -> bool:
        """The state last read or written."""
        return self._on

    async def start(self) -> None:
        """Find the device, apply the configured brightness, read the power state."""
        if self._close.started:
            raise DeviceUnavailableError("backlight is closed")
        if self._path is not None:
            return
        self._on = await asyncio.to_thread(self._open)

    async def set_power(self, on: bool) -> None:
        """Write bl_power (0 = on, 1 = off); HalError if the file cannot be written."""
        path = self._require_open()
        await asyncio.to_thread(_write, path / "bl_power", POWER_ON if on else POWER_OFF)
        self._on = on

    async def close(self) -> None:
        """Switch the screen back on (a blank screen with nobody to wake it is a fault).

        Idempotent; a second call waits for the first.
        """
        if not await self._close.begin():
            return
        try:
            path, self._path = self._path, None
            if path is not None and not self._on:
                await asyncio.to_thread(_write, path / "bl_power", POWER_ON)
                self._on = True
        finally:
            self._close.finish()

    def _require_open(self) -> Path:
        if self._path is None:
            state = "closed" if self._close.started else "not started"
            raise DeviceUnavailableError(f"backlight is {state}")
        return self._path

    def _open(self) -> bool:
        path = find_backlight(Path(self.spec.sysfs_root), self.spec.device)
        if self.spec.brightness is not None:
            maximum = _read_int(path / "max_brightness")
            level = min(self.spec.brightness, maximum)
            if level != self.spec.brightness:
                _log.warning(
                    "backlight %s: brightness %d above max_brightness %d; using %d",
                    path,
                    self.spec.brightness,
                    maximum,
                    level,
                )
            _write(path / "brightness", str(level))
        self._path = path
        return _read_int(path / "bl_power") == 0


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError) as err:
        raise HalError(f"cannot read {path}: {err}") from err


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value + "\n")
    except OSError as err:
        raise HalError(
            f"cannot write {path}: {err} (the service user needs write access, e.g. a udev rule)"
        ) from err
