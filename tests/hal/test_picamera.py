"""The picamera2 back-end against the one fake of picamera2 (tests/fake_picamera2.py).

picamera2 and libcamera need a Raspberry Pi camera, so the Picamera2 object, its
H264Encoder and Output base class are faked, and only those: the fake implements the calls
hal/picamera.py makes and emits a real Annex-B H.264 stream (PyAV's libx264), so every
packet the back-end hands out is checked by a real decoder here.
"""

from __future__ import annotations

import asyncio
import itertools
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest
from fake_picamera2 import U_LEVEL, V_LEVEL, FakePicamera2Library
from support import wait_for

import hal.picamera
from hal.camera import decode_stamp
from hal.errors import DeviceUnavailableError, HalError
from hal.media_types import VideoFormat
from hal.picamera import ENCODER_TIME_BASE, PiCamera, PiCameraMode, check_mode
from hal.v4l2_camera import nal_units

FORMAT = VideoFormat(640, 480, 30)
SPS, PPS, IDR = 7, 8, 5


def nal_types(packet: av.Packet[Any]) -> list[int]:
    return [unit[0] & 0x1F for unit in nal_units(bytes(packet)) if unit]


async def open_camera(
    fake: FakePicamera2Library,
    mode: PiCameraMode = PiCameraMode.H264,
    fmt: VideoFormat = FORMAT,
    **options: Any,
) -> PiCamera:
    camera = PiCamera("pi", mode=mode, library=fake, **options)
    await camera.open(fmt)
    return camera


async def read_packets(camera: PiCamera, count: int) -> list[av.Packet[Any]]:
    return [await camera.read_encoded() for _ in range(count)]


def decode(packets: list[av.Packet[Any]]) -> list[int]:
    decoder = av.CodecContext.create("h264", "r")
    return [decode_stamp(f)[0] for p in packets for f in decoder.decode(p)]


async def test_configuration_comes_from_the_video_format_and_bitrate() -> None:
    fake = FakePicamera2Library()
    camera = await open_camera(fake, bitrate_bps=800_000)
    try:
        config = fake.camera.config
        assert config is not None
        assert config["main"] == {"size": (640, 480), "format": "YUV420"}
        assert config["controls"] == {"FrameDurationLimits": (33333, 33333)}
        (encoder,) = fake.camera.encoders
        assert (encoder.bitrate, encoder.repeat, encoder.iperiod) == (800_000, True, 30)
        assert encoder.profile == "baseline"
        assert camera.supports_h264
    finally:
        await camera.close()
    assert fake.camera.closed and encoder.stopped


async def test_h264_mode_hands_out_annex_b_that_decodes_from_the_first_packet() -> None:
    fake = FakePicamera2Library()
    camera = await open_camera(fake)
    try:
        packets = await read_packets(camera, 75)  # 2.5 s at 30 fps
    finally:
        await camera.close()
    assert packets[0].is_keyframe, "a reader starts at a keyframe"
    keyframes = [i for i, p in enumerate(packets) if p.is_keyframe]
    assert all(b - a <= FORMAT.fps for a, b in itertools.pairwise(keyframes))
    assert len(packets) - keyframes[-1] <= FORMAT.fps, "GOP <= 1 s"
    for index in keyframes:
        types = nal_types(packets[index])
        assert types[:2] == [SPS, PPS] and IDR in types, "SPS/PPS inline before every IDR"
    assert all(bytes(p).startswith(b"\x00\x00\x00\x01") for p in packets), "Annex B"
    assert {p.time_base for p in packets} == {ENCODER_TIME_BASE}
    steps = np.diff([p.pts for p in packets if p.pts is not None]) / 1000
    assert steps.min() > 25 and steps.max() < 45, "pts step one frame (33 ms) at a time"
    counters = decode(packets)
    assert len(counters) == len(packets)
    assert counters == list(range(counters[0], counters[0] + len(packets))), "no frame lost"


async def test_request_keyframe_reaches_the_encoder_and_the_next_frame_is_one() -> None:
    fake = FakePicamera2Library()
    camera = await open_camera(fake)
    try:
        await read_packets(camera, 5)
        (encoder,) = fake.camera.encoders
        requested = encoder.keyframes_requested
        camera.request_keyframe()
        camera.request_keyframe()  # a second peer's PLI while the keyframe is on its way
        assert encoder.keyframes_requested == requested + 1
        after = await read_packets(camera, 4)
        camera.request_keyframe()  # answered: a new request goes through
        assert encoder.keyframes_requested == requested + 2
    finally:
        await camera.close()
    assert any(p.is_keyframe for p in after[:3]), "a keyframe within a frame or two"


async def test_after_an_idle_time_a_reader_resumes_on_a_fresh_keyframe() -> None:
    fake = FakePicamera2Library()
    camera = await open_camera(fake)
    try:
        await read_packets(camera, 3)
        await asyncio.sleep(0.8)  # nobody reads: between two calls
        (encoder,) = fake.camera.encoders
        requested = encoder.keyframes_requested
        packets = await read_packets(camera, 10)
    finally:
        await camera.close()
    assert packets[0].is_keyframe, "the stale backlog is dropped, the stream restarts at a key"
    assert encoder.keyframes_requested == requested + 1
    assert decode(packets) == sorted(decode(packets))


async def test_bitrate_change_restarts_the_encoder_with_a_continuous_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hal.picamera, "RESTART_INTERVAL_S", 0.0)
    fake = FakePicamera2Library()
    camera = await open_camera(fake, bitrate_bps=1_000_000)
    try:
        before = await read_packets(camera, 5)
        camera.set_bitrate(950_000)  # within the hysteresis: no restart
        before += await read_packets(camera, 3)
        assert len(fake.camera.encoders) == 1
        camera.set_bitrate(500_000)
        after = await read_packets(camera, 40)
    finally:
        await camera.close()
    first, second = fake.camera.encoders
    assert first.stopped and second.bitrate == 500_000 and camera.bitrate == 500_000
    pts = [p.pts or 0 for p in before + after]
    assert pts == sorted(pts), "timestamps stay continuous across the restart"
    counters = decode(before + after)
    assert counters == sorted(counters) and len(counters) >= 45


async def test_set_format_reconfigures_camera_and_encoder() -> None:
    fake = FakePicamera2Library()
    camera = await open_camera(fake)
    try:
        await read_packets(camera, 2)
        old = fake.camera.encoders[-1]
        await wait_for(lambda: old.frames_out >= 5, "frames of the old format to queue")
        camera.set_format(VideoFormat(320, 240, 15))
        frame = await camera.read()
        packets = await read_packets(camera, 20)
    finally:
        await camera.close()
    assert (frame.width, frame.height) == (320, 240)
    assert fake.camera.config is not None
    assert fake.camera.config["main"]["size"] == (320, 240)
    assert fake.camera.encoders[-1].iperiod == 15
    decoder = av.CodecContext.create("h264", "r")
    # the old format's frames still queued are dropped: the reader resumes at the new keyframe
    sizes = {(f.width, f.height) for p in packets for f in decoder.decode(p)}
    assert sizes == {(320, 240)}


async def test_raw_mode_reads_yuv420p_frames_and_has_no_encoder() -> None:
    fake = FakePicamera2Library()
    camera = await open_camera(fake, mode=PiCameraMode.RAW)
    try:
        assert not camera.supports_h264
        frames = [await camera.read() for _ in range(5)]
        camera.request_keyframe()  # harmless without an encoder
        with pytest.raises(DeviceUnavailableError, match=r"no H\.264"):
            await camera.read_encoded()
    finally:
        await camera.close()
    assert fake.camera.encoders == []
    counters = [decode_stamp(f)[0] for f in frames]
    assert counters == sorted(counters) and len(set(counters)) == 5, "a fresh frame each read"
    assert {(f.format.name, f.width, f.height) for f in frames} == {("yuv420p", 640, 480)}
    assert frames[0].time_base == Fraction(1, 90000)


async def test_without_a_hardware_encoder_h264_mode_falls_back_to_raw_frames(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakePicamera2Library(hardware_encoder=False)  # a Pi 5
    camera = await open_camera(fake)
    try:
        assert camera.mode is PiCameraMode.RAW and not camera.supports_h264
        frame = await camera.read()
    finally:
        await camera.close()
    assert (frame.width, frame.height) == (640, 480)
    assert any("raw frames only" in r.getMessage() for r in caplog.records)


async def test_a_padded_stride_is_cropped_plane_by_plane() -> None:
    fake = FakePicamera2Library(stride_align=64)  # 600 px rows padded to 640 bytes
    camera = await open_camera(fake, mode=PiCameraMode.RAW, fmt=VideoFormat(600, 480, 30))
    try:
        frame = await camera.read()
    finally:
        await camera.close()
    assert (frame.width, frame.height) == (600, 480)
    chroma = frame.to_ndarray()[480:].reshape(2, -1)  # the U plane, then the V plane
    assert set(np.unique(chroma[0])) == {U_LEVEL} and set(np.unique(chroma[1])) == {V_LEVEL}
    assert decode_stamp(frame)[0] >= 0


async def test_close_is_idempotent_and_ends_a_waiting_reader() -> None:
    fake = FakePicamera2Library()
    camera = await open_camera(fake)
    await read_packets(camera, 1)
    waiting = asyncio.create_task(camera.read_encoded())
    await camera.close()
    await camera.close()
    with pytest.raises(DeviceUnavailableError):
        await waiting
    with pytest.raises(DeviceUnavailableError, match="not open"):
        await camera.read()


async def test_a_stalled_encoder_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hal.picamera, "STALL_TIMEOUT_S", 0.3)
    fake = FakePicamera2Library()
    camera = await open_camera(fake)
    try:
        await read_packets(camera, 1)
        fake.camera.stop_encoder(fake.camera.encoders[0])  # the encoder dies under us
        with pytest.raises(DeviceUnavailableError, match="encoder stalled"):
            await read_packets(camera, 30)
    finally:
        await camera.close()


async def test_without_picamera2_opening_is_a_clear_error() -> None:
    camera = PiCamera("pi")  # the real loader: picamera2 is not installed here
    with pytest.raises(DeviceUnavailableError, match="picamera2"):
        await camera.open(FORMAT)
    assert not camera.is_open


def test_mode_names_are_checked() -> None:
    assert check_mode("raw") is PiCameraMode.RAW
    with pytest.raises(HalError, match="'mjpeg' is not one of h264, raw"):
        check_mode("mjpeg")
