"""The commands that change the operating system: first boot and factory reset.

Both write every system file through a `RootFs` (the running system or an image tree), so
the same code runs on a unit and at image build.
"""

from device.firstboot._factory_reset import factory_reset, reset_plan
from device.firstboot._firstboot import (
    BOOT_FILE,
    CONFIG_FILE,
    STATE_DIR,
    FirstBoot,
    FirstBootPaths,
    first_boot_error,
)
from device.firstboot._rootfs import RootFs, RootFsError
from device.firstboot._system import FirstBootError

__all__ = [
    "BOOT_FILE",
    "CONFIG_FILE",
    "STATE_DIR",
    "FirstBoot",
    "FirstBootError",
    "FirstBootPaths",
    "RootFs",
    "RootFsError",
    "factory_reset",
    "first_boot_error",
    "reset_plan",
]
