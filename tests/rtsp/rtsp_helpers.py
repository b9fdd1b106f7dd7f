"""A real RTSP service on loopback and Debian's ffmpeg/ffprobe as its clients."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from support import need

from hal.camera import TestPatternCamera
from hal.media_types import VideoFormat
from services.media.tracks import CameraSource
from services.rtsp import CameraH264, RtspService, RtspSettings
from services.rtsp.service import SYSTEM_PYTHON

USER, PASSWORD = "nvr", "s3cret pass"
TIMEOUT = 20.0
_PROBE = (
    "import gi; gi.require_version('GstRtspServer', '1.0'); gi.require_version('Gst', '1.0');"
    "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
    "assert all(Gst.ElementFactory.find(n) for n in ('appsrc', 'h264parse', 'rtph264pay'))"
)


@functools.cache
def _gstreamer_rtsp() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    result = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, check=False)
    return result.returncode == 0


def need_tools() -> None:
    """Fail (make test) or skip without ffmpeg, ffprobe or GStreamer's RTSP server."""
    need(shutil.which("ffmpeg") is not None, "ffmpeg (Debian package ffmpeg)")
    need(shutil.which("ffprobe") is not None, "ffprobe (Debian package ffmpeg)")
    need(
        _gstreamer_rtsp(),
        "GStreamer's RTSP server for /usr/bin/python3 (gir1.2-gst-rtsp-server-1.0)",
    )


def stream_url(service: RtspService, user: str | None = USER, password: str = PASSWORD) -> str:
    """The stream's URL on loopback, with credentials unless ``user`` is None."""
    assert service.port is not None
    login = f"{user}:{password}@" if user is not None else ""
    return f"rtsp://{login}127.0.0.1:{service.port}{service.settings.path}"


def settings(max_clients: int = 2) -> RtspSettings:
    """A stream on a free loopback port."""
    return RtspSettings(
        address="127.0.0.1", port=0, username=USER, password=PASSWORD, max_clients=max_clients
    )


@asynccontextmanager
async def running(
    source: CameraSource, max_clients: int = 2
) -> AsyncIterator[tuple[RtspService, CameraH264]]:
    """An RTSP service on ``source``, listening; closed (and the camera too) afterwards."""
    h264 = CameraH264(source)
    service = RtspService(settings(max_clients), h264)
    try:
        await service.start()
        await service.wait_ready(TIMEOUT)
        yield service, h264
    finally:
        await service.close()
        await source.close()


def sim_camera() -> CameraSource:
    """The sim board's test-pattern camera, as calls share it."""
    return CameraSource(TestPatternCamera("main"), VideoFormat(640, 480, 30))


@dataclass
class Client:
    """One ffmpeg/ffprobe run: its process, and what it said once it ended."""

    proc: asyncio.subprocess.Process
    stderr: str = ""

    async def finish(self, timeout: float = TIMEOUT) -> int:
        """Wait for the client to end; its exit status (stderr kept)."""
        async with asyncio.timeout(timeout):
            _, err = await self.proc.communicate()
        self.stderr = err.decode("utf-8", "replace")
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def stop(self) -> None:
        """Kill the client mid-stream (a viewer that goes away)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.communicate()  # reads its pipes to the end: their transport closes


async def ffmpeg(url: str, *args: str, loglevel: str = "error") -> Client:
    """Run ffmpeg reading ``url`` over RTSP/TCP with ``args`` (output options)."""
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", loglevel, "-rtsp_transport", "tcp",
        "-i", url, *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return Client(proc)


async def read_frames(url: str, frames: int) -> Client:
    """Run ffmpeg decoding ``frames`` video frames of ``url`` (to nothing)."""
    return await ffmpeg(url, "-frames:v", str(frames), "-f", "null", "-")


async def ffprobe(url: str) -> Client:
    """Run ffprobe asking for the stream's description."""
    proc = await asyncio.create_subprocess_exec(
        "ffprobe", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return Client(proc)
