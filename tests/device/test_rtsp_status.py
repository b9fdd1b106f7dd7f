"""`callbox run` with ``[rtsp]`` on: the stream listens, `callbox status` says so, ffmpeg watches.

The door is a real daemon process on the sim board and a real mosquitto; its RTSP password
comes from a password file, as operations.md's guide sets it up.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from daemon_helpers import DaemonSite, callbox, start_daemon_site
from support import need

from services.signaling.broker import free_port


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[DaemonSite]:
    site = await start_daemon_site(tmp_path)
    yield site
    await site.close()


def add_rtsp(site: DaemonSite, port: int) -> None:
    secret = site.directory / "rtsp.password"
    secret.write_text("door-nvr-secret\n")
    secret.chmod(0o600)
    with site.config_path.open("a") as config:
        config.write(
            f'\n[rtsp]\nenabled = true\naddress = "127.0.0.1"\nport = {port}\n'
            f'username = "nvr"\npassword_file = "{secret}"\n'
        )


async def status_saying(site: DaemonSite, words: str, timeout: float = 20.0) -> str:
    """`callbox status` once it says ``words`` (the RTSP child starts after READY=1)."""
    deadline = time.monotonic() + timeout
    for _ in itertools.count():
        text = (await callbox("status", "--control", site.control_path)).stdout
        if words in text or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)  # no event to wait on from outside the daemon: the CLI, polled
    return text


async def test_the_daemon_serves_the_stream_and_status_shows_it(site: DaemonSite) -> None:
    need(shutil.which("ffmpeg") is not None, "ffmpeg (Debian package ffmpeg)")
    port = free_port()
    await asyncio.to_thread(add_rtsp, site, port)
    await site.start_daemon()
    url = f"rtsp://127.0.0.1:{port}/door"
    text = await status_saying(site, ", listening,")  # not "NOT listening (starting)"
    assert f"rtsp: {url}, listening, clients 0" in text, text
    viewer = await asyncio.create_subprocess_exec(
        "ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp",
        "-i", url.replace("rtsp://", "rtsp://nvr:door-nvr-secret@"),
        "-frames:v", "10", "-f", "null", "-",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(20):
        _, err = await viewer.communicate()
    assert viewer.returncode == 0, err.decode()
