"""The door camera's RTSP stream: GStreamer's real server, Debian's ffmpeg/ffprobe as NVRs.

Each test runs the RTSP child (Debian's /usr/bin/python3 with GStreamer's RTSP server) on
a free loopback port, fed by the sim board's test-pattern camera encoded with libx264 (or,
in test_rtsp_passthrough.py, by the picamera2 back-end's own H.264).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from rtsp_helpers import (
    PASSWORD,
    USER,
    ffmpeg,
    ffprobe,
    need_tools,
    read_frames,
    running,
    settings,
    sim_camera,
    stream_url,
)
from support import wait_for

from services.rtsp import CameraH264, RtspService


@pytest.fixture(autouse=True)
def _tools() -> None:
    need_tools()


async def test_ffmpeg_reads_frames_with_the_right_credentials() -> None:
    async with running(sim_camera()) as (service, h264):
        client = await ffmpeg(stream_url(service), "-frames:v", "10", "-f", "null", "-")
        assert await client.finish() == 0, client.stderr
        client = await ffmpeg(
            stream_url(service), "-frames:v", "10", "-f", "null", "-", loglevel="warning"
        )
        assert await client.finish() == 0, client.stderr
        # every picture whole from the first: a keyframe of two slices (x264's threads) is
        # not cut in two by the parameter sets
        assert "corrupt decoded frame" not in client.stderr, client.stderr
        assert not h264.passthrough  # the sim camera has no H.264: encoded for the stream
        assert service.units_sent >= 10


@pytest.mark.parametrize(
    ("user", "password"),
    [(None, ""), (USER, "wrong"), ("intruder", PASSWORD)],
    ids=["no-credentials", "wrong-password", "unknown-user"],
)
async def test_a_client_without_the_right_credentials_is_refused(
    user: str | None, password: str
) -> None:
    async with running(sim_camera()) as (service, _):
        client = await ffprobe(stream_url(service, user, password))
        assert await client.finish() != 0
        assert "401 Unauthorized" in client.stderr, client.stderr
        assert service.units_sent == 0  # nothing was streamed to it


async def test_the_stream_survives_a_client_leaving_mid_stream() -> None:
    async with running(sim_camera()) as (service, _):
        leaving = await read_frames(stream_url(service), 100_000)
        staying = await read_frames(stream_url(service), 60)  # 4 s at the stream's 15 fps
        await wait_for(lambda: service.clients == 2, "two clients playing")
        await leaving.stop()
        await wait_for(lambda: service.clients == 1, "the killed client gone")
        assert await staying.finish() == 0, staying.stderr
        late = await read_frames(stream_url(service), 10)
        assert await late.finish() == 0, late.stderr


async def test_max_clients_are_served_and_the_next_one_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running(sim_camera(), max_clients=1) as (service, _):
        watching = await read_frames(stream_url(service), 100_000)
        await wait_for(lambda: service.clients == 1, "one client playing")
        refused = await read_frames(stream_url(service), 10)
        assert await refused.finish() != 0
        assert "503 Service Unavailable" in refused.stderr, refused.stderr
        assert "rtsp.max_clients = 1" in caplog.text
        sent = service.units_sent
        await wait_for(lambda: service.units_sent > sent + 10, "the watching client still fed")
        await watching.stop()
        await wait_for(lambda: service.clients == 0, "the slot free again")
        admitted = await read_frames(stream_url(service), 10)
        assert await admitted.finish() == 0, admitted.stderr


async def test_a_crashed_server_is_started_again_and_serves() -> None:
    async with running(sim_camera()) as (service, _):
        pid = service.child_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: service.restarts == 1, "the server started again")
        await service.wait_ready(20)
        assert service.child_pid not in (None, pid)
        client = await read_frames(stream_url(service), 10)
        assert await client.finish() == 0, client.stderr


async def test_the_camera_is_read_only_while_somebody_watches() -> None:
    async with running(sim_camera()) as (service, _):
        assert not service.status()["feeding"]
        client = await read_frames(stream_url(service), 10)
        await wait_for(lambda: service.status()["feeding"], "the stream fed while watched")
        assert await client.finish() == 0, client.stderr
        await wait_for(lambda: not service.status()["feeding"], "feeding stopped, nobody left")


async def test_the_password_is_not_on_the_childs_command_line() -> None:
    async with running(sim_camera()) as (service, _):
        assert service.child_pid is not None
        cmdline = await asyncio.to_thread(Path(f"/proc/{service.child_pid}/cmdline").read_bytes)
        assert PASSWORD.encode() not in cmdline and USER.encode() not in cmdline


async def test_a_server_that_cannot_start_is_logged_and_retried_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the project's venv cannot import gi: the child exits at once, as on a unit without
    # GStreamer's packages
    source = sim_camera()
    service = RtspService(replace(settings(), python=sys.executable), CameraH264(source))
    try:
        await service.start()
        await wait_for(lambda: service.failure is not None, "the failure noticed")
        assert "exited with status 3" in (service.failure or "")
        await wait_for(lambda: "gir1.2-gst-rtsp-server-1.0" in caplog.text, "the fix logged")
        assert not service.status()["listening"]
    finally:
        await service.close()
        await source.close()


async def test_the_streams_timestamps_move_forward_at_the_streams_rate() -> None:
    async with running(sim_camera()) as (service, _):
        probe = await asyncio.create_subprocess_exec(
            "ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries", "packet=pts",
            "-of", "csv=p=0", "-read_intervals", "%+#40", stream_url(service),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(20):
            out, err = await probe.communicate()
        assert probe.returncode == 0, err
    fields = [line.split(",")[0] for line in out.decode().split()]
    pts = [int(field) for field in fields if field.isdigit()]  # N/A: before the clock runs
    assert len(pts) >= 30
    assert pts == sorted(pts), pts  # never backwards
    steps = sorted(b - a for a, b in itertools.pairwise(pts) if b > a)
    median_ms = steps[len(steps) // 2] / 90  # 90 kHz RTP clock
    assert 40 < median_ms < 250, steps  # 15 fps: 67 ms; not bursts at the camera's 33 ms
