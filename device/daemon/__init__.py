"""``callbox run``: the composition root of one endpoint and the daemon around it.

`DeviceApp` builds the endpoint from a configuration and applies a new one, wiring its
Call API with `compose_calls` (the one factory the test and benchmark sites use too); the daemon
runs it under systemd (notify, watchdog, reload), serves the local control socket the CLI
talks to, checks the hardware (``callbox selftest``) and, with a configuration it cannot
use, waits in a safe state that says why on the screen.
"""

from device.daemon._app import DeviceApp, Endpoint
from device.daemon._compose import compose_calls
from device.daemon._control import ControlError, DaemonNotRunningError, request, request_sync
from device.daemon._daemon import default_control_path, run_daemon
from device.daemon._safe_daemon import run_safe_daemon
from device.daemon._sdnotify import SystemdNotifier
from device.daemon._selftest import Check, run_selftest, selftest_stopped_daemon

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
