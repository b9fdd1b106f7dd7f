"""``callbox run``: the composition root of one endpoint and the daemon around it.

`DeviceApp` builds the endpoint from a configuration and applies a new one, wiring its
Call API with `compose_calls` (the one factory the test and benchmark sites use too); the daemon
runs it under systemd (notify, watchdog, reload), serves the local control socket the CLI
talks to, checks the hardware (``callbox selftest``) and, with a configuration it cannot
use, waits in a safe state that says why on the screen. Its names are imported on first
use (services/lazy.py): the CLI's light subcommands do not load the call core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.lazy import lazy_exports

if TYPE_CHECKING:
    from device.daemon._app import DeviceApp, Endpoint
    from device.daemon._compose import compose_calls
    from device.daemon._control import (
        ControlError,
        DaemonNotRunningError,
        default_control_path,
        request,
        request_sync,
    )
    from device.daemon._daemon import run_daemon
    from device.daemon._safe_daemon import run_safe_daemon
    from device.daemon._sdnotify import SystemdNotifier
    from device.daemon._selftest import Check, run_selftest, selftest_stopped_daemon

_HOMES = {
    "DeviceApp": "_app",
    "Endpoint": "_app",
    "compose_calls": "_compose",
    "ControlError": "_control",
    "DaemonNotRunningError": "_control",
    "request": "_control",
    "request_sync": "_control",
    "default_control_path": "_control",
    "run_daemon": "_daemon",
    "run_safe_daemon": "_safe_daemon",
    "SystemdNotifier": "_sdnotify",
    "Check": "_selftest",
    "run_selftest": "_selftest",
    "selftest_stopped_daemon": "_selftest",
}
__getattr__ = lazy_exports(__name__, _HOMES)

__all__ = [
    "Check",
    "ControlError",
    "DaemonNotRunningError",
    "DeviceApp",
    "Endpoint",
    "SystemdNotifier",
    "compose_calls",
    "default_control_path",
    "request",
    "request_sync",
    "run_daemon",
    "run_safe_daemon",
    "run_selftest",
    "selftest_stopped_daemon",
]
