"""The simulated camera: stamps that survive real codecs, pacing, formats."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from hal.camera import (
    TestPatternCamera,
    decode_stamp,
    encode_stamp,
    stamp_block_size,
    stamp_fits,
)
from hal.errors import DeviceUnavailableError, HalError
from hal.media_types import VideoFormat


async def _read_frames(camera: TestPatternCamera, count: int) -> list[av.VideoFrame]:
    return [await camera.read() for _ in range(count)]


def _roundtrip(encoder_name: str, decoder_name: str, frames: list[av.VideoFrame]) -> list[object]:
    """Encode ``frames`` with a real encoder at a WebRTC-like bitrate and decode them again."""
    encoder = av.CodecContext.create(encoder_name, "w")
    decoder = av.CodecContext.create(decoder_name, "r")
    assert isinstance(encoder, av.VideoCodecContext)
    assert isinstance(decoder, av.VideoCodecContext)
    encoder.width, encoder.height = frames[0].width, frames[0].height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 90000)
    encoder.framerate = Fraction(30, 1)
    encoder.bit_rate = 250_000
    packets = [packet for frame in frames for packet in encoder.encode(frame)]
    packets += encoder.encode(None)
    decoded = [out for packet in packets for out in decoder.decode(packet)]
    return [*decoded, *decoder.decode(None)]


@pytest.fixture
async def camera() -> TestPatternCamera:
    cam = TestPatternCamera("main", max_lag=5.0)  # a loaded test machine must not drop frames
    await cam.open(VideoFormat(640, 480, 30))
    return cam


@pytest.mark.parametrize(("encoder", "decoder"), [("libvpx", "vp8"), ("libx264", "h264")])
async def test_stamp_survives_lossy_coding_at_640x480(
    camera: TestPatternCamera, encoder: str, decoder: str
) -> None:
    frames = await _read_frames(camera, 12)
    sent = [decode_stamp(frame) for frame in frames]
    decoded = _roundtrip(encoder, decoder, frames)
    assert all(isinstance(frame, av.VideoFrame) for frame in decoded)
    received = [decode_stamp(frame) for frame in decoded if isinstance(frame, av.VideoFrame)]
    assert received == sent
    assert [counter for counter, _ in sent] == list(range(12))


async def test_capture_time_is_monotonic_microseconds(camera: TestPatternCamera) -> None:
    before = time.monotonic_ns() // 1000 & 0xFFFFFFFF
    frames = await _read_frames(camera, 3)
    after = time.monotonic_ns() // 1000 & 0xFFFFFFFF
    stamps = [decode_stamp(frame)[1] for frame in frames]
    if before < after:  # the low 32 bits did not wrap during the test
        assert before <= stamps[0] < stamps[1] < stamps[2] <= after
    assert 30_000 < (stamps[1] - stamps[0]) & 0xFFFFFFFF < 200_000


@pytest.mark.parametrize("width", [64, 100, 320, 510, 512, 640, 1920])
def test_stamp_roundtrip_at_every_width(width: int) -> None:
    luma = np.full((48, width), 90, dtype=np.uint8)
    encode_stamp(luma, 0xFFFFFFFF, 0x80000001)
    frame = av.VideoFrame.from_ndarray(luma, format="gray")
    assert decode_stamp(frame) == (0xFFFFFFFF, 0x80000001)
    assert decode_stamp(frame.reformat(format="yuv420p")) == (0xFFFFFFFF, 0x80000001)


def test_stamp_block_rule() -> None:
    assert stamp_block_size(640) == 16
    assert stamp_block_size(512) == 16
    assert stamp_block_size(510) == 14
    assert stamp_block_size(100) == 2
    assert stamp_block_size(16) == 2
    assert not stamp_fits(62, 480)
    assert stamp_fits(64, 4)


def test_tiny_frames_are_refused_by_the_stamp_codec() -> None:
    with pytest.raises(HalError, match="too small"):
        decode_stamp(av.VideoFrame(32, 32, "yuv420p"))
    with pytest.raises(HalError, match="too small"):
        encode_stamp(np.zeros((32, 32), dtype=np.uint8), 1, 2)


async def test_first_frame_is_immediate_then_frames_are_paced(camera: TestPatternCamera) -> None:
    start = time.monotonic()
    first = await camera.read()
    assert time.monotonic() - start < 0.1
    frames = [first, *await _read_frames(camera, 9)]
    assert time.monotonic() - start >= 0.25
    assert all(frame.time_base == Fraction(1, 90000) for frame in frames)
    pts = [frame.pts for frame in frames if frame.pts is not None]
    assert len(pts) == 10
    assert set(np.diff(pts)) <= {2999, 3000, 3001}
    assert camera.frames_captured == 10


async def test_set_format_changes_the_next_frame(camera: TestPatternCamera) -> None:
    await camera.read()
    camera.set_format(VideoFormat(320, 240, 15))
    assert camera.format == VideoFormat(320, 240, 15)
    frame = await camera.read()
    assert (frame.width, frame.height) == (320, 240)
    assert decode_stamp(frame)[0] == 1
    camera.set_format(VideoFormat(48, 32, 15))  # too small for a stamp: still a frame
    assert (await camera.read()).width == 48


async def test_frames_move_and_two_cameras_differ(camera: TestPatternCamera) -> None:
    aux = TestPatternCamera("aux", seed=1)
    await aux.open(VideoFormat(640, 480, 30))
    first, second = (await camera.read()).to_ndarray(), (await camera.read()).to_ndarray()
    other = (await aux.read()).to_ndarray()
    picture = slice(64, 480)  # luma rows below the stamp
    assert np.mean(first[picture] != second[picture]) > 0.3
    chroma = slice(480, 720)
    assert abs(float(np.mean(first[chroma])) - float(np.mean(other[chroma]))) > 20


async def test_reading_needs_an_open_camera() -> None:
    cam = TestPatternCamera("main")
    with pytest.raises(DeviceUnavailableError, match="'main' is not open"):
        await cam.read()
    await cam.open(VideoFormat())
    with pytest.raises(DeviceUnavailableError, match="already open"):
        await cam.open(VideoFormat())
    await cam.read()
    pending = asyncio.ensure_future(cam.read())
    await asyncio.sleep(0)
    await cam.close()
    await cam.close()
    with pytest.raises(DeviceUnavailableError):
        await pending
    await cam.open(VideoFormat(320, 240))
    assert (await cam.read()).width == 320


@pytest.mark.parametrize(
    ("width", "height", "fps"),
    [(641, 480, 30), (640, 8, 30), (8192, 480, 30), (640, 480, 0), (640, 480, 121)],
)
def test_bad_video_formats_are_refused(width: int, height: int, fps: int) -> None:
    with pytest.raises(HalError, match="video"):
        VideoFormat(width, height, fps)


async def test_a_slow_reader_gets_fresh_frames_not_a_burst() -> None:
    camera = TestPatternCamera("main", max_lag=0.1)
    await camera.open(VideoFormat(320, 240, 30))
    first = await camera.read()
    await asyncio.sleep(0.3)
    late = await camera.read()
    start = time.monotonic()
    following, *_ = await _read_frames(camera, 3)
    assert time.monotonic() - start > 0.06  # paced again, not a burst of stale frames
    assert first.pts is not None and late.pts is not None and following.pts is not None
    assert late.pts - first.pts >= 0.25 * 90000  # the missed frames were dropped
    assert following.pts - late.pts == pytest.approx(3000, abs=1)
    assert [decode_stamp(f)[0] for f in (first, late, following)] == [0, 1, 2]
