"""The daemon's safe state: ``callbox run --wait-on-bad-config`` with a configuration it cannot use.

The configuration is missing, refused, or a first boot refused the installer's file.

Instead of exiting and being restarted every 2 s, the daemon touches no hardware but the
screen (systemd's ``ExecStopPost=callbox safe-state`` has released the relay and switched the
backlight on), tells systemd it is ready with a status line naming the problem, answers
``callbox status`` with the reasons and waits. A unit with a screen shows a full-screen
notice: the reasons and what to do (`device.daemon._safe_screen` chooses the display and words it).
A display that cannot be opened is logged; the safe state goes on without it. A reload
(``callbox config set``, ``systemctl reload``) that finds a valid file ends it with exit 0
(the display is closed first), and systemd starts the daemon again with that file; one that
is still refused shows its reasons instead.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from device.config import ConfigError, load_config
from device.daemon._control import ControlError, ControlServer
from device.daemon._safe_screen import SafeScreen, safe_screen
from device.daemon._sdnotify import SystemdNotifier
from device.firstboot import first_boot_error
from hal.display import Display, Frame
from hal.errors import HalError
from services.tasks import cancel_and_wait
from services.ui import Notice, render_notice

__all__ = ["NOTICE_TITLE", "SafeDaemon", "run_safe_daemon"]

_log = logging.getLogger(__name__)

NOTICE_TITLE = "Configuration problem — calls are off"


class SafeDaemon:
    """Serves ``status`` and ``reload`` on the control socket until stopped."""

    def __init__(
        self,
        config_path: Path,
        control_path: Path,
        problem: str,
        notifier: SystemdNotifier | None = None,
        *,
        display: Display | None = None,
        display_name: str = "",
        hint: Sequence[str] = (),
    ) -> None:
        """`problem`: why the configuration cannot be used (``file: key: reason`` lines).

        `display` (not started; None: no screen) shows the notice, with the `hint` lines
        saying what to do; `display_name` names it in the log. The safe state closes it.
        """
        self.config_path = config_path
        self.problem = problem
        self.notifier = notifier or SystemdNotifier()
        self.stopping = asyncio.Event()
        self.restart = False
        self.control = ControlServer(control_path, {"status": self._status, "reload": self._reload})
        self.display = display
        self.display_name = display_name or (type(display).__name__ if display else "")
        self.hint = tuple(hint)
        self._display_open = False
        self._screen_tasks: list[asyncio.Task[None]] = []
        """The drawing of the notice, oldest first; each waits for the one before."""
        self._rechecks: list[asyncio.Task[None]] = []
        """The checks of the file that SIGHUP started."""

    async def run(self) -> bool:
        """Serve until SIGTERM/SIGINT or a valid file; True when a valid file ended it."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        watchdog: asyncio.Task[None] | None = None
        try:
            await self.control.start()
            _log.error("safe state, no calls until the configuration is fixed:\n%s", self.problem)
            self.notifier.ready(self.status_line())
            watchdog = asyncio.create_task(self.notifier.run_watchdog(lambda: True))
            self._show_notice()
            await self.stopping.wait()
        finally:
            self.notifier.stopping()
            if watchdog is not None:
                watchdog.cancel()
            await cancel_and_wait(self._rechecks)
            await self._close_display()
            await self.control.close()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        return self.restart

    def status_line(self) -> str:
        """The status line for systemd: ``safe state:`` and the first reason.

        First boot's refusal comes first (on a new unit whose installer's file was refused, "the
        file does not exist" would say least of what is wrong).
        """
        refused = first_boot_error()
        reasons = refused.splitlines()[1:2] if refused else []
        if reasons:
            return f"safe state: first boot refused {reasons[0]}"
        first = self.problem.splitlines()[0] if self.problem else "no configuration"
        return f"safe state: {first}"

    def notice(self) -> Notice:
        """What the screen shows: the title, what first boot refused, the problem and the hint.

        The problem is one reason a line, as `callbox status` prints them.
        """
        refused = first_boot_error()
        lines = [*(refused.splitlines() if refused else ()), *self.problem.splitlines()]
        return Notice(NOTICE_TITLE, tuple(lines or ["no configuration"]), self.hint)

    def _show_notice(self) -> None:
        """(Re)draw the notice in the background: the control socket never waits for it."""
        if self.display is None or self.stopping.is_set():
            return
        self._screen_tasks = [task for task in self._screen_tasks if not task.done()]
        previous = self._screen_tasks[-1] if self._screen_tasks else None
        self._screen_tasks.append(asyncio.create_task(self._draw(previous), name="safe-notice"))

    async def _draw(self, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # one at a time: the newest reasons are drawn last
        display = self.display
        assert display is not None
        try:
            if not self._display_open:
                await display.start()
                self._display_open = True
                await display.set_blank(False)
            await display.show(await asyncio.to_thread(self._render, display.size))
        except HalError as err:
            _log.error("safe state: cannot show the reasons on %s: %s", self.display_name, err)
        except Exception:  # noqa: BLE001 - the screen must never end the safe state
            _log.exception("safe state: cannot show the reasons on %s", self.display_name)

    def _render(self, size: tuple[int, int]) -> Frame:
        """The notice as a frame (in a worker thread: it reads a file and draws text)."""
        notice = self.notice()
        return render_notice(size, notice.title, notice.lines, notice.hint)

    async def _close_display(self) -> None:
        tasks, self._screen_tasks = self._screen_tasks, []
        await cancel_and_wait(tasks)
        if self.display is not None:
            self.display.close()

    def _sighup(self) -> None:
        """SIGHUP: check the file again, off the loop (the task is kept until it is done)."""
        self._rechecks = [task for task in self._rechecks if not task.done()]
        self._rechecks.append(asyncio.create_task(self._recheck(), name="safe-recheck"))

    async def _recheck(self) -> None:
        try:
            await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as err:
            _log.error("reload: still refused:\n%s", err)
            self._still_refused(err)
            return
        self._valid()

    def _still_refused(self, err: ConfigError) -> None:
        """A reload found other reasons: `callbox status` and the screen show those now."""
        self.problem = str(err)
        self.notifier.status(self.status_line())
        self._show_notice()

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
            self._still_refused(err)
            raise ControlError(f"still in the safe state:\n{err}") from err
        self._valid()
        return {"changed": ["all: the daemon restarts with the file"], "pending_restart": []}


async def run_safe_daemon(config_path: Path, control_path: Path, problem: str) -> bool:
    """Run the safe state (see the module) with the screen `device.daemon._safe_screen` chooses.

    True when a valid file ended it.
    """
    try:
        screen = await asyncio.to_thread(safe_screen, config_path)
    except Exception:  # noqa: BLE001 - no screen rather than no safe state
        _log.exception("safe state: cannot choose a screen for the reasons")
        screen = SafeScreen(None, "", ())
    daemon = SafeDaemon(
        config_path, control_path, problem,
        display=screen.display, display_name=screen.name, hint=screen.hint,
    )  # fmt: skip
    return await daemon.run()
