"""The camera's H.264 for the RTSP stream, from the same shared camera that feeds calls.

A camera whose hardware encodes H.264 (picamera2 on a Pi 4) hands its own access units to
the stream through the camera's :class:`~services.media.encoded.EncodedSource`, exactly as
calls get them: no decode, no re-encode, and a keyframe asked of the camera's encoder when
a viewer joins. Any other camera (the simulated board, a V4L2 camera with raw output) is
read through its :class:`~services.media.tracks.SharedSource`, like a call's track, and
encoded here with PyAV's libx264 at a modest rate and size (``RawEncoding``), in a worker
thread. Either way the stream and the calls share one camera, and the camera is read only
while somebody watches.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import av

from services.media.encoded import NoEncodedOutputError
from services.media.errors import MediaError
from services.media.tracks import CameraSource

MICROSECONDS = 1_000_000


@dataclass(frozen=True)
class AccessUnit:
    """One H.264 access unit in Annex B (SPS/PPS in front of a keyframe)."""

    data: bytes
    keyframe: bool
    pts_us: int
    """Capture time in microseconds on the camera's clock (-1: unknown)."""


class H264Source(Protocol):
    """What the RTSP service reads: access units, keyframes on request."""

    async def next_unit(self) -> AccessUnit:
        """The next access unit; the first one after :meth:`restart` is a keyframe."""
        ...

    def request_keyframe(self) -> None:
        """A viewer needs a keyframe soon."""
        ...

    def restart(self) -> None:
        """A new stream begins: start again at a keyframe."""
        ...

    @property
    def passthrough(self) -> bool:
        """Whether the camera's own packets go out as they are (no encoding here)."""
        ...


@dataclass(frozen=True)
class RawEncoding:
    """How a camera without H.264 output is encoded for the stream."""

    max_fps: int = 15
    max_width: int = 640
    bitrate_bps: int = 1_000_000
    keyframe_interval_s: float = 2.0


class FrameEncoder:
    """libx264 through PyAV: raw frames to Annex-B access units (blocking, one thread)."""

    def __init__(self, encoding: RawEncoding) -> None:
        self._encoding = encoding
        self._codec: Any = None
        self._size: tuple[int, int] | None = None
        self._origin: int | None = None
        self._last_pts = -1

    def _open(self, width: int, height: int) -> Any:
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.time_base = Fraction(1, MICROSECONDS)
        codec.framerate = Fraction(self._encoding.max_fps, 1)
        codec.bit_rate = self._encoding.bitrate_bps
        codec.gop_size = max(1, round(self._encoding.keyframe_interval_s * self._encoding.max_fps))
        codec.options = {"tune": "zerolatency", "preset": "ultrafast", "profile": "baseline"}
        return codec

    def _size_for(self, frame: av.VideoFrame) -> tuple[int, int]:
        width, height = frame.width, frame.height
        if width > self._encoding.max_width:
            height = round(height * self._encoding.max_width / width / 2) * 2
            width = self._encoding.max_width
        return width, height

    def encode(self, frame: av.VideoFrame, keyframe: bool, pts_us: int) -> list[AccessUnit]:
        """Encode one frame (a keyframe if asked, or if the size changed)."""
        size = self._size_for(frame)
        if size != self._size:
            self._codec, self._size, self._origin = self._open(*size), size, None
            self._last_pts = -1
            keyframe = True
        if (frame.width, frame.height) != size or frame.format.name != "yuv420p":
            frame = frame.reformat(width=size[0], height=size[1], format="yuv420p")
        else:
            frame = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")
        if self._origin is None:
            self._origin = pts_us
        frame.pts = self._last_pts = max(pts_us - self._origin, self._last_pts + 1)
        frame.time_base = Fraction(1, MICROSECONDS)
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        return [
            AccessUnit(bytes(packet), bool(packet.is_keyframe), self._origin + int(packet.pts or 0))
            for packet in self._codec.encode(frame)
        ]


def _pts_us(item: av.Packet[Any] | av.VideoFrame) -> int:
    if item.pts is None or item.time_base is None:
        return -1
    return int(item.pts * item.time_base * MICROSECONDS)


class CameraH264(H264Source):
    """The H.264 of the endpoint's camera: its own packets when it has them, else encoded here."""

    def __init__(self, camera: CameraSource, encoding: RawEncoding | None = None) -> None:
        self._camera = camera
        self._encoding = encoding or RawEncoding()
        self._packet_seq = 0
        self._frame_seq = 0
        self._encoder: FrameEncoder | None = None
        self._key_wanted = True
        self._last_frame_at = 0.0
        self._pending: list[AccessUnit] = []
        self.units = 0

    @property
    def passthrough(self) -> bool:
        """Whether the camera's own H.264 goes out (no encoding here)."""
        return self._camera.encoded.available

    def restart(self) -> None:
        """Start again at a keyframe (a new stream, or one that lost units)."""
        self._packet_seq = 0
        self._pending.clear()
        self.request_keyframe()

    def request_keyframe(self) -> None:
        """Ask the camera's encoder (or ours) for a keyframe."""
        self._key_wanted = True
        if self.passthrough:
            self._camera.encoded.request_keyframe()

    async def next_unit(self) -> AccessUnit:
        """The next access unit of the camera."""
        self.units += 1
        if self.passthrough:
            try:
                return await self._next_packet()
            except NoEncodedOutputError:  # the camera was switched to one without H.264
                self._packet_seq = 0
                self._key_wanted = True
        return await self._next_encoded()

    async def _next_packet(self) -> AccessUnit:
        self._packet_seq, packet = await self._camera.encoded.next_packet(self._packet_seq)
        self._key_wanted = False
        return AccessUnit(bytes(packet), bool(packet.is_keyframe), _pts_us(packet))

    async def _next_encoded(self) -> AccessUnit:
        while not self._pending:
            wait = self._last_frame_at + 1 / self._encoding.max_fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # the stream's own rate, below the camera's
            self._frame_seq, frame = await self._camera.shared.next_frame(self._frame_seq)
            self._last_frame_at = time.monotonic()
            if not isinstance(frame, av.VideoFrame):
                raise MediaError("the camera source handed out audio")
            if self._encoder is None:
                self._encoder = FrameEncoder(self._encoding)
            keyframe, self._key_wanted = self._key_wanted, False
            pts_us = time.monotonic_ns() // 1000  # when read: the stream's own rate and clock
            self._pending = await asyncio.to_thread(self._encoder.encode, frame, keyframe, pts_us)
        return self._pending.pop(0)
