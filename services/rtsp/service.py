"""The door camera as an RTSP stream for NVRs: the daemon's side of the RTSP child process.

GStreamer's RTSP server runs in a child process (:mod:`services.rtsp._child`) under Debian's
Python, which can import ``gi``; the daemon starts it, hands it the settings on its stdin
(the password never appears in a command line), feeds it the camera's H.264 while its
shared media wants it, asks the camera for a keyframe when a viewer starts playing, logs
what it writes on stderr, and starts it again when it dies (a crash there never takes the
daemon down). Between the camera and the child sits a bounded queue: when the child is
slow, what is queued is dropped and the stream resumes at the next keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from hal.errors import CallboxError
from services.media.errors import MediaError
from services.rtsp import _child
from services.rtsp.source import AccessUnit, H264Source
from services.tasks import cancel_and_wait

_log = logging.getLogger(__name__)

SYSTEM_PYTHON = "/usr/bin/python3"
"""Debian's Python, which has PyGObject and GStreamer's typelibs (python3-gi, gir1.2-*)."""
CHILD = Path(_child.__file__)
QUEUE_LIMIT = 30
"""Access units held for a slow child (1 s at 30 fps); beyond: drop to the next keyframe."""
STOP_TIMEOUT_S = 3.0
RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
STABLE_S = 30.0
"""A child that ran this long was healthy: the next restart waits the minimum again."""
FEED_RETRY_S = 1.0
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING}


class RtspStartError(MediaError):
    """The RTSP child did not come up (it exited, or said nothing in time)."""


@dataclass(frozen=True, kw_only=True)
class RtspSettings:
    """Where the stream listens and who may watch it (``[rtsp]``)."""

    address: str = "0.0.0.0"
    port: int = 8554
    """0: any free port (tests); the bound port is :attr:`RtspService.port`."""
    path: str = "/door"
    username: str
    password: str = field(repr=False)
    max_clients: int = 2
    python: str = SYSTEM_PYTHON
    registry: Path | None = None
    """Where GStreamer caches its plugin registry (the daemon's state directory: under
    systemd's ProtectSystem=strict and ProtectHome, ``~/.cache`` is not writable)."""

    def child_settings(self) -> dict[str, Any]:
        """The settings line the child reads first."""
        return {
            "address": self.address,
            "port": self.port,
            "path": self.path,
            "username": self.username,
            "password": self.password,
            "max_clients": self.max_clients,
        }


class UnitQueue:
    """Access units on their way to the child, at most ``limit``; after a drop, from a keyframe."""

    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self._items: deque[AccessUnit] = deque()
        self._limit = limit
        self._arrived = asyncio.Event()
        self._resync = True
        self.dropped = 0

    def put(self, unit: AccessUnit) -> bool:
        """Queue ``unit``; False when it was dropped (the queue is waiting for a keyframe)."""
        if len(self._items) >= self._limit:
            self.dropped += len(self._items)
            self._items.clear()
            self._resync = True
        if self._resync and not unit.keyframe:
            self.dropped += 1
            return False
        self._resync = False
        self._items.append(unit)
        self._arrived.set()
        return True

    def clear(self) -> None:
        """Forget what is queued; the next unit queued must be a keyframe."""
        self._items.clear()
        self._resync = True

    @property
    def resyncing(self) -> bool:
        """Whether the queue waits for a keyframe."""
        return self._resync

    async def get(self) -> AccessUnit:
        """The oldest queued unit, once there is one."""
        while not self._items:
            self._arrived.clear()
            await self._arrived.wait()
        return self._items.popleft()


class RtspService:
    """Runs the RTSP child for one camera; ``start()``/``close()``, restarted when it dies."""

    def __init__(self, settings: RtspSettings, source: H264Source) -> None:
        self.settings = settings
        self._source = source
        self._queue = UnitQueue()
        self._task: asyncio.Task[None] | None = None
        self._feeder: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._ready = asyncio.Event()
        self._closing = False
        self.port: int | None = None
        self.clients = 0
        self.units_sent = 0
        self.restarts = 0
        self.child_pid: int | None = None
        self.failure: str | None = None

    async def start(self) -> None:
        """Start the child in the background (a failure is logged and retried, never raised)."""
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name="rtsp")

    async def wait_ready(self, timeout: float) -> int:
        """The port the stream listens on, once the child listens; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()
        assert self.port is not None
        return self.port

    def url(self, host: str = "127.0.0.1") -> str:
        """The stream's URL without credentials (the bound port once listening)."""
        return f"rtsp://{host}:{self.port or self.settings.port}{self.settings.path}"

    async def close(self) -> None:
        """Stop feeding and stop the child; idempotent."""
        self._closing = True
        tasks = [t for t in (self._task, self._feeder, *self._stopping) if t is not None]
        self._task = self._feeder = None
        await cancel_and_wait(tasks)

    def status(self) -> dict[str, Any]:
        """What ``callbox status`` shows of the stream."""
        return {
            "url": self.url(self.settings.address),
            "listening": self._ready.is_set(),
            "clients": self.clients,
            "feeding": self._feeder is not None,
            "passthrough": self._source.passthrough,
            "units_sent": self.units_sent,
            "units_dropped": self._queue.dropped,
            "restarts": self.restarts,
            "failure": self.failure,
        }

    # the child -------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = RESTART_MIN_S
        while not self._closing:
            started = time.monotonic()
            try:
                await self._run_child()
            except (OSError, ValueError, RtspStartError) as err:
                self.failure = str(err)
                _log.error("RTSP stream: %s", err)
            if self._closing:
                return
            delay = RESTART_MIN_S if time.monotonic() - started > STABLE_S else delay
            _log.warning("RTSP stream: the server stopped; starting it again in %.0f s", delay)
            await asyncio.sleep(delay)  # the restart back-off
            delay = min(delay * 2, RESTART_MAX_S)
            self.restarts += 1

    async def _run_child(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            self.settings.python,
            str(CHILD),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._child_env(),
        )
        self.child_pid = proc.pid
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        tasks = [
            asyncio.create_task(self._log_stderr(proc.stderr), name="rtsp-stderr"),
            asyncio.create_task(self._write(proc.stdin), name="rtsp-write"),
        ]
        try:
            proc.stdin.write(json.dumps(self.settings.child_settings()).encode() + b"\n")
            await proc.stdin.drain()
            await self._read_events(proc.stdout)
            code = await proc.wait()
            if code:
                raise RtspStartError(f"the RTSP server exited with status {code}")
        finally:
            self._ready.clear()
            self._stop_feeding()
            await cancel_and_wait(tasks)
            await self._stop(proc)
            self.child_pid = None

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.settings.registry is not None:
            env["GST_REGISTRY_1_0"] = str(self.settings.registry)
        return env

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        """End of stdin asks the child to stop; SIGTERM, then SIGKILL if it does not."""
        if proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        for signal in (None, proc.terminate, proc.kill):
            if signal is not None:
                with contextlib.suppress(ProcessLookupError):
                    signal()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await proc.wait()
                return

    async def _log_stderr(self, stream: asyncio.StreamReader) -> None:
        while raw := await _line(stream, "log"):
            line = raw.decode("utf-8", "replace").rstrip()
            level, _, text = line.partition(" ")
            if level in _LEVELS:
                _log.log(_LEVELS[level], "RTSP server: %s", text)
            elif line:
                _log.error("RTSP server: %s", line)

    async def _read_events(self, stream: asyncio.StreamReader) -> None:
        while raw := await _line(stream, "event"):
            try:
                event = json.loads(raw)
                self._on_event(str(event["event"]), event)
            except (ValueError, KeyError, TypeError) as err:
                _log.warning("RTSP server: unreadable event %r: %s", raw[:80], err)

    def _on_event(self, name: str, event: dict[str, Any]) -> None:
        if name == "ready":
            self.port = int(event["port"])
            self.failure = None
            self._ready.set()
            _log.info("RTSP stream on %s", self.url(self.settings.address))
        elif name == "feed":
            self._start_feeding() if event.get("on") else self._stop_feeding()
        elif name == "keyframe":
            self._source.request_keyframe()
        elif name == "clients":
            self.clients = int(event["count"])

    # feeding ---------------------------------------------------------------------------------

    def _start_feeding(self) -> None:
        if self._feeder is None or self._feeder.done():
            self._queue.clear()
            self._source.restart()
            self._feeder = asyncio.create_task(self._feed(), name="rtsp-feed")

    def _stop_feeding(self) -> None:
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            feeder.cancel()  # it holds nothing; close() waits for it
            self._stopping.add(feeder)
            feeder.add_done_callback(self._stopping.discard)
        self._queue.clear()

    async def _feed(self) -> None:
        """Camera -> queue, while the child's media wants access units.

        An encoding failure is logged and the stream starts again at a keyframe a second
        later (a failing camera is retried inside the camera source itself).
        """
        while True:
            try:
                unit = await self._source.next_unit()
            except (CallboxError, av.FFmpegError) as err:
                _log.error("RTSP stream: no picture: %s; trying again", err)
                await asyncio.sleep(FEED_RETRY_S)  # the retry interval
                self._queue.clear()
                self._source.restart()
                continue
            if not self._queue.put(unit):
                self._source.request_keyframe()

    async def _write(self, stdin: asyncio.StreamWriter) -> None:
        """Queue -> the child's stdin; a slow child fills the queue, which then drops."""
        try:
            while True:
                unit = await self._queue.get()
                flags = _child.FLAG_KEYFRAME if unit.keyframe else 0
                stdin.write(_child.HEADER.pack(flags, unit.pts_us, len(unit.data)) + unit.data)
                await stdin.drain()
                self.units_sent += 1
        except ConnectionError as err:  # the child died: its exit is handled where it is awaited
            _log.debug("RTSP server: its input closed: %s", err)


async def _line(stream: asyncio.StreamReader, what: str) -> bytes:
    """The next line of the child's ``stream`` (b"" at its end); an overlong one is skipped."""
    while True:
        try:
            return await stream.readline()
        except ValueError:  # longer than the reader's limit: asyncio dropped it
            _log.warning("RTSP server: an overlong %s line was skipped", what)
