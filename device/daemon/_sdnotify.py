"""systemd's notify protocol: readiness, status, reload/stop and watchdog pings.

The protocol is one datagram of newline-separated ``KEY=VALUE`` lines sent to the AF_UNIX socket
named by ``$NOTIFY_SOCKET`` (a path, or an abstract socket when it starts with ``@``); see
sd_notify(3). No library is needed. Outside systemd there is no socket and every call is a no-op,
so the daemon runs the same from a terminal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

__all__ = ["SystemdNotifier"]

_log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends sd_notify(3) messages to the service manager of this process.

    Send errors are logged, never raised: a lost status message must not stop an intercom.
    """

    def __init__(self, socket_path: str | None = None) -> None:
        """Use `socket_path`, or ``$NOTIFY_SOCKET`` when it is None; no socket disables it."""
        path = os.environ.get("NOTIFY_SOCKET") if socket_path is None else socket_path
        self._address: str | None = _socket_address(path) if path else None

    @property
    def enabled(self) -> bool:
        """True when there is a notify socket to talk to (the process runs under systemd)."""
        return self._address is not None

    def ready(self, status: str = "") -> None:
        """Tell systemd that start-up (or a reload) is complete, with an optional status line."""
        self._send("READY=1", *self._status_lines(status))

    def stopping(self) -> None:
        """Tell systemd that the daemon is shutting down."""
        self._send("STOPPING=1")

    def reloading(self) -> None:
        """Tell systemd that a configuration reload started; call `ready` when it is done.

        Carries ``MONOTONIC_USEC`` (CLOCK_MONOTONIC), which systemd requires with ``RELOADING=1``
        for Type=notify-reload units.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def status(self, text: str) -> None:
        """Set the one-line status shown by ``systemctl status``."""
        self._send(*self._status_lines(text))

    def watchdog(self) -> None:
        """Ping the watchdog (``WatchdogSec=``): the daemon is alive and healthy."""
        self._send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings, or None when systemd expects none.

        Half of ``$WATCHDOG_USEC`` (the advice of sd_watchdog_enabled(3)) when it is set, the
        notify socket exists, and ``$WATCHDOG_PID`` is unset or names this process (a child
        that inherited the environment must not ping for its parent).
        """
        usec_text = os.environ.get("WATCHDOG_USEC")
        if not self.enabled or not usec_text:
            return None
        pid_text = os.environ.get("WATCHDOG_PID")
        if pid_text and pid_text != str(os.getpid()):
            return None
        try:
            usec = int(usec_text)
        except ValueError:
            _log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec_text)
            return None
        if usec <= 0:
            _log.warning("ignoring WATCHDOG_USEC=%r: not positive", usec_text)
            return None
        return usec / 2_000_000

    async def run_watchdog(self, healthy: Callable[[], bool]) -> None:
        """Ping the watchdog every `watchdog_interval` seconds while `healthy()` returns True.

        While `healthy()` returns False (or raises) the pings are withheld, so systemd restarts
        a daemon that stays unhealthy for ``WatchdogSec``; they resume when it recovers. Returns
        at once when there is no watchdog; otherwise runs until cancelled.
        """
        interval = self.watchdog_interval()
        if interval is None:
            return
        _log.info("watchdog: pinging systemd every %.1f s", interval)
        was_healthy = True
        while True:
            is_healthy = _check(healthy)
            if is_healthy:
                self.watchdog()
            if is_healthy != was_healthy:
                if is_healthy:
                    _log.info("watchdog: healthy again, pings resumed")
                else:
                    _log.error("watchdog: unhealthy, withholding pings (systemd will restart)")
                was_healthy = is_healthy
            await asyncio.sleep(interval)

    @staticmethod
    def _status_lines(text: str) -> tuple[str, ...]:
        """``STATUS=`` line for `text` (newlines would split it into other keys), or none."""
        return (f"STATUS={' '.join(text.splitlines())}",) if text else ()

    def _send(self, *lines: str) -> None:
        """Send one datagram of `lines`; log (not raise) a failure."""
        if self._address is None or not lines:
            return
        message = "\n".join(lines).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the event loop: a full queue means PID 1 is stuck anyway.
                sock.setblocking(False)
                sock.sendto(message, self._address)
        except OSError as err:
            _log.warning("cannot notify systemd (%s): %s", lines[0], err)


def _socket_address(path: str) -> str | None:
    r"""The address to sendto() for ``$NOTIFY_SOCKET``: a path, or ``\0name`` for ``@name``."""
    if path.startswith("@"):
        return "\0" + path[1:]
    if path.startswith("/"):
        return path
    _log.warning("ignoring NOTIFY_SOCKET=%r: neither an absolute path nor @abstract", path)
    return None


def _check(healthy: Callable[[], bool]) -> bool:
    """Call the health check; a check that raises counts as unhealthy (and is logged)."""
    try:
        return bool(healthy())
    except Exception:  # noqa: BLE001 - a broken check means unhealthy, not a dead watchdog loop
        _log.exception("watchdog: health check raised")
        return False
