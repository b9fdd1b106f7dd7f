"""The V4L2 back-end on PyAV's demux path: files made here stand in for the device.

The opener is the one thing swapped: it opens a file instead of /dev/videoN, and the rest
(demux thread, Annex-B conversion, SPS/PPS, decoding, passthrough packets) is the code a
USB camera runs through. Opening a device that does not exist goes through the real
libavdevice v4l2 demuxer.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from hal.camera import decode_stamp, encode_stamp
from hal.errors import DeviceUnavailableError
from hal.media_types import VideoFormat
from hal.v4l2_camera import ParameterSets, V4l2Camera, nal_units

FORMAT = VideoFormat(640, 480, 30)
FRAMES = 45


def stamped_frame(index: int) -> av.VideoFrame:
    """A yuv420p frame whose stamp carries ``index``."""
    width, height = FORMAT.width, FORMAT.height
    picture = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    picture[:height] = ((np.arange(width) + 7 * index) % 200 + 30).astype(np.uint8)[None, :]
    encode_stamp(picture[:height], index, 0)
    frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
    frame.pts, frame.time_base = index, Fraction(1, FORMAT.fps)
    return frame


def write_video(path: Path, codec: str, container_format: str | None = None) -> Path:
    """``FRAMES`` stamped frames encoded with ``codec`` into ``path``."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=FORMAT.fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = FORMAT.width, FORMAT.height
        if codec == "libx264":
            stream.pix_fmt = "yuv420p"
            stream.codec_context.gop_size = 15
            stream.codec_context.options = {"tune": "zerolatency", "preset": "veryfast"}
        else:
            stream.pix_fmt = "yuvj420p"
        for index in range(FRAMES):
            frame = stamped_frame(index)
            if codec == "mjpeg":
                frame = frame.reformat(format="yuvj420p")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


class FileOpener:
    """Opens ``path`` whatever device is asked for; remembers what was asked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.asked: list[tuple[str, str, dict[str, str]]] = []

    def __call__(self, file: str, demuxer: str, options: dict[str, str]) -> Any:
        self.asked.append((file, demuxer, options))
        return av.open(str(self.path))


async def read_all_packets(camera: V4l2Camera) -> list[av.Packet[Any]]:
    packets = []
    with pytest.raises(DeviceUnavailableError, match="stream ended"):
        while True:
            packets.append(await camera.read_encoded())
    return packets


def nal_types(packet: av.Packet[Any]) -> list[int]:
    return [unit[0] & 0x1F for unit in nal_units(bytes(packet)) if unit]


def decoded_counters(packets: list[av.Packet[Any]]) -> list[int]:
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))
    return [decode_stamp(f)[0] for f in frames]


@pytest.mark.parametrize(("name", "container_format"), [("clip.h264", "h264"), ("clip.mp4", None)])
async def test_h264_camera_hands_out_annex_b_packets_that_decode(
    tmp_path: Path, name: str, container_format: str | None
) -> None:
    opener = FileOpener(write_video(tmp_path / name, "libx264", container_format))
    camera = V4l2Camera("usb", "/dev/video2", input_format="h264", opener=opener)
    assert camera.supports_h264
    await camera.open(FORMAT)
    try:
        packets = await read_all_packets(camera)
    finally:
        await camera.close()
    assert opener.asked == [
        (
            "/dev/video2",
            "v4l2",
            {"video_size": "640x480", "framerate": "30", "input_format": "h264"},
        )
    ]
    assert len(packets) == FRAMES
    assert all(bytes(p).startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")) for p in packets)
    keyframes = [i for i, p in enumerate(packets) if p.is_keyframe]
    assert keyframes == [0, 15, 30], keyframes
    for index in keyframes:
        assert {7, 8, 5} <= set(nal_types(packets[index])), "SPS and PPS before every IDR"
    assert [p.pts for p in packets] == sorted(p.pts for p in packets if p.pts is not None)
    assert decoded_counters(packets) == list(range(FRAMES))


async def test_h264_camera_also_decodes_frames_for_a_peer_that_needs_them(
    tmp_path: Path,
) -> None:
    opener = FileOpener(write_video(tmp_path / "clip.h264", "libx264", "h264"))
    camera = V4l2Camera("usb", input_format="h264", opener=opener, realtime=True)
    await camera.open(FORMAT)
    try:
        frames = [await camera.read() for _ in range(20)]
    finally:
        await camera.close()
    counters = [decode_stamp(f)[0] for f in frames]
    assert counters == sorted(counters) and len(set(counters)) == 20
    assert counters[0] <= 15, "frames start at the first keyframe the reader could use"
    assert {f.format.name for f in frames} == {"yuv420p"}
    assert {(f.width, f.height) for f in frames} == {(640, 480)}


async def test_mjpeg_camera_decodes_to_yuv420p_frames(tmp_path: Path) -> None:
    opener = FileOpener(write_video(tmp_path / "clip.avi", "mjpeg"))
    camera = V4l2Camera("usb", input_format="mjpeg", opener=opener, realtime=True)
    await camera.open(FORMAT)
    try:
        assert not camera.supports_h264
        frames = [await camera.read() for _ in range(25)]
        with pytest.raises(DeviceUnavailableError, match=r"no H\.264"):
            await camera.read_encoded()
    finally:
        await camera.close()
    counters = [decode_stamp(f)[0] for f in frames]
    assert counters == sorted(counters) and len(set(counters)) == 25
    assert counters[-1] - counters[0] <= 26, "a paced reader loses no more than a frame"
    assert {f.format.name for f in frames} == {"yuv420p"}
    pts = [f.pts or 0 for f in frames]
    assert pts == sorted(pts) and frames[0].time_base == Fraction(1, 90000)


async def test_a_format_change_reopens_the_device_and_frames_go_on(tmp_path: Path) -> None:
    opener = FileOpener(write_video(tmp_path / "clip.avi", "mjpeg"))
    camera = V4l2Camera("usb", "/dev/video4", opener=opener, realtime=True)
    await camera.open(FORMAT)
    try:
        await camera.read()
        camera.set_format(VideoFormat(320, 240, 15))
        frames = [await camera.read() for _ in range(5)]
    finally:
        await camera.close()
    assert [options for _, _, options in opener.asked] == [
        {"video_size": "640x480", "framerate": "30", "input_format": "mjpeg"},
        {"video_size": "320x240", "framerate": "15", "input_format": "mjpeg"},
    ]
    assert camera.format == VideoFormat(320, 240, 15)
    assert len(frames) == 5, "the reader never saw the device go away"


async def test_a_missing_device_is_a_clear_error_through_libavdevice() -> None:
    camera = V4l2Camera("usb", "/dev/video-callbox-missing")
    with pytest.raises(DeviceUnavailableError, match="video-callbox-missing"):
        await camera.open(FORMAT)
    assert not camera.is_open
    await camera.close()


async def test_close_is_idempotent_and_ends_reads(tmp_path: Path) -> None:
    opener = FileOpener(write_video(tmp_path / "clip.avi", "mjpeg"))
    camera = V4l2Camera("usb", opener=opener, realtime=True)
    await camera.open(FORMAT)
    await camera.read()
    await camera.close()
    await camera.close()
    with pytest.raises(DeviceUnavailableError, match="not open"):
        await asyncio.wait_for(camera.read(), 1)


def test_parameter_sets_go_in_front_of_an_idr_that_lacks_them() -> None:
    sets = ParameterSets()
    sps, pps = b"\x67\x42\x00\x1f", b"\x68\xce\x3c\x80"
    first, key = sets.complete(
        b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps + b"\x00\x00\x01\x65\x88"
    )
    assert key and first.count(b"\x67") == 1
    inter, key = sets.complete(b"\x00\x00\x00\x01\x41\x9a")
    assert not key and inter == b"\x00\x00\x00\x01\x41\x9a"
    idr, key = sets.complete(b"\x00\x00\x00\x01\x65\x88\x84")
    assert key
    assert list(nal_units(idr)) == [sps, pps, b"\x65\x88\x84"]
