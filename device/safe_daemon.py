"""The daemon's safe state: ``callbox run --wait-on-bad-config`` with a configuration that
cannot be used (missing, refused, or a first boot that refused the installer's file).

Instead of exiting and being restarted every 2 s, the daemon touches no hardware (systemd's
``ExecStopPost=callbox safe-state`` has released the relay), tells systemd it is ready with
a status line naming the problem, answers ``callbox status`` with the reasons and waits. A
reload (``callbox config set``, ``systemctl reload``) that finds a valid file ends it with
exit 0, and systemd starts the daemon again with that file.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from device.config import ConfigError, load_config
from device.control import ControlError, ControlServer
from device.firstboot import first_boot_error
from device.sdnotify import SystemdNotifier

__all__ = ["run_safe_daemon"]

_log = logging.getLogger(__name__)


class SafeDaemon:
    """Serves ``status`` and ``reload`` on the control socket until stopped."""

    def __init__(
        self,
        config_path: Path,
        control_path: Path,
        problem: str,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        """`problem`: why the configuration cannot be used (``file: key: reason`` lines)."""
        self.config_path = config_path
        self.problem = problem
        self.notifier = notifier or SystemdNotifier()
        self.stopping = asyncio.Event()
        self.restart = False
        self.control = ControlServer(control_path, {"status": self._status, "reload": self._reload})

    async def run(self) -> bool:
        """Serve until SIGTERM/SIGINT or a valid file; True when a valid file ended it."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        watchdog: asyncio.Task[None] | None = None
        try:
            await self.control.start()
            first = self.problem.splitlines()[0] if self.problem else "no configuration"
            _log.error("safe state, no calls until the configuration is fixed:\n%s", self.problem)
            self.notifier.ready(f"safe state: {first}")
            watchdog = asyncio.create_task(self.notifier.run_watchdog(lambda: True))
            await self.stopping.wait()
        finally:
            self.notifier.stopping()
            if watchdog is not None:
                watchdog.cancel()
            await self.control.close()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        return self.restart

    def _sighup(self) -> None:
        try:
            load_config(self.config_path)
        except ConfigError as err:
            _log.error("reload: still refused:\n%s", err)
            return
        self._valid()

    def _valid(self) -> None:
        _log.info("%s is valid now: restarting with it", self.config_path)
        self.restart = True
        self.stopping.set()

    async def _status(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "state": "safe",
            "running": False,
            "config": str(self.config_path),
            "problem": self.problem,
            "first_boot_error": first_boot_error(),
        }

    async def _reload(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as err:
            raise ControlError(f"still in the safe state:\n{err}") from err
        self._valid()
        return {"changed": ["all: the daemon restarts with the file"], "pending_restart": []}


async def run_safe_daemon(config_path: Path, control_path: Path, problem: str) -> bool:
    """Run the safe state (see the module); True when a valid file ended it."""
    return await SafeDaemon(config_path, control_path, problem).run()
