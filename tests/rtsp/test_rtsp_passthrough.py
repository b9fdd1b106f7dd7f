"""On a Pi the stream carries the camera's own H.264: the picamera2 back-end's packets, unchanged.

The camera is ``hal.picamera.PiCamera`` on the one fake of picamera2 (tests/fake_picamera2.py,
real H.264 from libx264 as the VideoCore would make it). A second reader of the same shared
camera records the packets the camera handed out, as a call's track would; the stream that
ffmpeg copies out of RTSP (no decode) must consist of exactly those slices.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

from fake_picamera2 import FakePicamera2Library
from rtsp_helpers import ffmpeg, need_tools, running, stream_url

from hal.media_types import VideoFormat
from hal.picamera import PiCamera, PiCameraMode
from services.media.tracks import CameraSource
from services.tasks import cancel_and_wait

_START = re.compile(b"\x00\x00\x01")
SLICES = (1, 5)  # NAL unit types of coded slices: non-IDR, IDR


def slices(annex_b: bytes) -> list[bytes]:
    """The coded slice NAL units of an Annex-B stream (SPS/PPS/SEI left out)."""
    units = [unit.rstrip(b"\x00") for unit in _START.split(annex_b)]
    return [unit for unit in units if unit and unit[0] & 0x1F in SLICES]


async def test_the_stream_carries_the_cameras_own_packets_unchanged() -> None:
    need_tools()
    fake = FakePicamera2Library()
    source = CameraSource(
        PiCamera("pi", mode=PiCameraMode.H264, library=fake), VideoFormat(640, 480, 30)
    )
    camera_slices: set[bytes] = set()

    async def call_track() -> None:  # reads the camera's packets as a call would
        seq = 0
        while True:
            seq, packet = await source.encoded.next_packet(seq)
            camera_slices.update(slices(bytes(packet)))

    async with running(source) as (service, h264):
        reader = asyncio.create_task(call_track())
        try:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "copy.h264"
                client = await ffmpeg(
                    stream_url(service), "-frames:v", "30", "-c", "copy", "-f", "h264", str(out)
                )
                assert await client.finish() == 0, client.stderr
                streamed = slices(await asyncio.to_thread(out.read_bytes))
        finally:
            await cancel_and_wait([reader])
        assert h264.passthrough
        assert len(streamed) >= 30
        assert not [s for s in streamed if s not in camera_slices], "a slice not from the camera"
        assert streamed[0][0] & 0x1F == 5  # the stream starts at a keyframe (IDR)
        assert fake.encoders()[0].keyframes_requested >= 1  # asked for when the viewer came


def test_slices_are_the_coded_slices_of_an_annex_b_stream() -> None:
    stream = b"\x00\x00\x00\x01\x67AB\x00\x00\x01\x68C\x00\x00\x01\x65DEF\x00\x00\x01\x41G"
    assert slices(stream) == [b"\x65DEF", b"\x41G"]
