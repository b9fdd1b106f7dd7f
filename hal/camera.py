"""Cameras: the ``Camera`` interface and the simulated ``TestPatternCamera``.

The test pattern carries a machine-readable stamp in the top-left corner of
the luma plane: two rows of 32 square blocks (white = 1, black = 0), the first
holding the frame counter and the second the low 32 bits of the capture time
in microseconds (``time.monotonic_ns() // 1000``), both big-endian. Blocks are
16x16 luma pixels, which survive VP8/H.264 compression at 640x480, so a
receiver can measure frame loss and glass-to-glass latency with
``decode_stamp``.
"""

from __future__ import annotations

import abc
import asyncio
import math
import time
from fractions import Fraction
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from hal.errors import DeviceUnavailableError, HalError
from hal.media_types import RealtimePacer, VideoFormat

VIDEO_CLOCK_RATE = 90000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)
STAMP_BITS = 32
STAMP_ROWS = 2
STAMP_BLOCK = 16
_WORD_MASK = 0xFFFFFFFF
_LUMA_FORMATS = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}
)

Luma = npt.NDArray[np.uint8]


class Camera(abc.ABC):
    """A video source handing out ``av.VideoFrame`` objects paced in real time."""

    name: str

    @abc.abstractmethod
    async def open(self, fmt: VideoFormat) -> None:
        """Start capturing in ``fmt``; raises DeviceUnavailableError if busy or absent."""

    @abc.abstractmethod
    async def read(self) -> av.VideoFrame:
        """Return the next frame once it is due (the first one at once).

        Frames carry ``pts`` in a 1/90000 ``time_base``. Raises
        DeviceUnavailableError if the camera is not open or closes meanwhile.
        """

    @abc.abstractmethod
    def set_format(self, fmt: VideoFormat) -> None:
        """Change size and rate; takes effect on the next frame, also mid-call."""

    @property
    @abc.abstractmethod
    def format(self) -> VideoFormat:
        """The format the next frame will have."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop capturing; calling it again does nothing."""

    # Encoded output: cameras whose hardware encodes H.264 (picamera2 on a Pi 4, an
    # H.264 UVC camera) override these four; the defaults describe a raw-only camera.

    @property
    def supports_h264(self) -> bool:
        """Whether ``read_encoded`` hands out H.264 now (False: raw frames only)."""
        return False

    async def read_encoded(self) -> av.Packet[Any]:
        """Return the next H.264 access unit once the camera's encoder delivers it.

        Annex B byte stream (start codes), SPS and PPS in front of every keyframe,
        ``is_keyframe`` set on those, ``pts``/``time_base`` the capture time. The
        stream decodes from its first packet on: after any gap (a reader that fell
        behind, an encoder restart) the next packet is a keyframe. Raises
        DeviceUnavailableError on a camera without encoded output.
        """
        raise DeviceUnavailableError(f"camera {self.name!r} has no H.264 output")

    def request_keyframe(self) -> None:  # noqa: B027 - a no-op where there is no encoder
        """Ask the encoder for a keyframe as soon as possible (a peer lost a picture).

        Does nothing on a camera without an encoder.
        """

    def set_bitrate(self, bps: int) -> None:  # noqa: B027 - a no-op where there is no encoder
        """Aim the camera's encoder at ``bps`` bits per second from now on.

        Does nothing on a camera without an encoder.
        """


def stamp_block_size(width: int) -> int:
    """Side of a stamp block in luma pixels for a frame ``width`` pixels wide.

    16 when 32 blocks of 16 fit; otherwise ``width // 32`` rounded down to an
    even number, at least 2. Encoder and decoder both use this rule.
    """
    if width >= STAMP_BITS * STAMP_BLOCK:
        return STAMP_BLOCK
    return max(2, width // STAMP_BITS // 2 * 2)


def stamp_fits(width: int, height: int) -> bool:
    """Whether a ``width`` x ``height`` frame is large enough to carry the stamp."""
    block = stamp_block_size(width)
    return width >= STAMP_BITS * block and height >= STAMP_ROWS * block


def _stamp_block(width: int, height: int) -> int:
    if not stamp_fits(width, height):
        raise HalError(f"a {width}x{height} frame is too small to carry a frame stamp")
    return stamp_block_size(width)


def encode_stamp(luma: Luma, counter: int, capture_us: int) -> None:
    """Draw ``counter`` and ``capture_us`` (each taken mod 2**32) into ``luma`` in place.

    ``luma`` is the 2-D uint8 luma plane (height x width); raises HalError if
    it is not one or is too small to hold the stamp.
    """
    if luma.ndim != 2 or luma.dtype != np.uint8:
        raise HalError(f"a stamp needs a 2-D uint8 luma plane, got {luma.dtype} {luma.shape}")
    height, width = luma.shape
    block = _stamp_block(width, height)
    shifts = np.arange(STAMP_BITS - 1, -1, -1, dtype=np.uint64)
    for row, value in enumerate((counter, capture_us)):
        bits = (np.uint64(value & _WORD_MASK) >> shifts) & np.uint64(1)
        levels = np.repeat((bits * np.uint64(255)).astype(np.uint8), block)
        luma[row * block : (row + 1) * block, : STAMP_BITS * block] = levels


def _luma_plane(frame: av.VideoFrame) -> Luma:
    if frame.format.name not in _LUMA_FORMATS:
        frame = frame.reformat(format="gray")
    plane = frame.planes[0]
    raw = np.frombuffer(memoryview(plane), dtype=np.uint8)
    rows = raw[: plane.line_size * plane.height].reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def decode_stamp(frame: av.VideoFrame) -> tuple[int, int]:
    """Read ``(counter, capture_us)`` back from a stamped frame, even after lossy coding.

    Each bit is the mean of its block's central area thresholded at 128.
    Raises HalError if the frame is too small to carry a stamp.
    """
    luma = _luma_plane(frame)
    height, width = luma.shape
    block = _stamp_block(width, height)
    lo, hi = block // 4, block - block // 4
    weights = np.left_shift(1, np.arange(STAMP_BITS - 1, -1, -1, dtype=np.int64))
    values: list[int] = []
    for row in range(STAMP_ROWS):
        band = luma[row * block + lo : row * block + hi, : STAMP_BITS * block]
        cells = band.reshape(hi - lo, STAMP_BITS, block)[:, :, lo:hi]
        bits = cells.mean(axis=(0, 2)) >= 128
        values.append(int(np.sum(weights[bits])))
    return values[0], values[1]


def _clip_u8(values: npt.NDArray[np.float64]) -> Luma:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


class _Pattern:
    """Precomputed test pattern of one format; renders a frame with copies only."""

    def __init__(self, fmt: VideoFormat, seed: int) -> None:
        width, height = fmt.width, fmt.height
        self.fmt = fmt
        area = width * height
        self._buffer = np.empty(area * 3 // 2, dtype=np.uint8)
        self._luma = self._buffer[:area].reshape(height, width)
        self._background = self._make_background(width, height)
        self._scroll = (1 + seed % 3) * (1 if seed % 2 == 0 else -1)
        self._bar_width = max(2, width // 20)
        self._bar_speed = max(1, width // (60 + 20 * (seed % 4)))
        self._fill_chroma(width, height, seed)
        self._stamped = stamp_fits(width, height)

    @staticmethod
    def _make_background(width: int, height: int) -> Luma:
        x = np.arange(2 * width, dtype=np.float64)
        row = _clip_u8(40.0 + 140.0 * np.abs((2.0 * x / width) % 2.0 - 1.0))
        column = _clip_u8(40.0 * np.arange(height, dtype=np.float64) / height)
        return np.add(row[None, :], column[:, None], dtype=np.uint8)

    def _fill_chroma(self, width: int, height: int, seed: int) -> None:
        area, quarter = width * height, width * height // 4
        u = self._buffer[area : area + quarter].reshape(height // 2, width // 2)
        v = self._buffer[area + quarter :].reshape(height // 2, width // 2)
        angle = seed * 2.399963  # golden angle: neighbouring seeds get distant hues
        u_column = _clip_u8(128.0 + 70.0 * math.cos(angle) + 40.0 * np.linspace(-1, 1, height // 2))
        v_row = _clip_u8(128.0 + 70.0 * math.sin(angle) + 40.0 * np.linspace(-1, 1, width // 2))
        u[:] = u_column[:, None]
        v[:] = v_row[None, :]
        if stamp_fits(width, height):
            block = stamp_block_size(width)
            u[:block, : STAMP_BITS * block // 2] = 128
            v[:block, : STAMP_BITS * block // 2] = 128

    def render(self, index: int, counter: int, capture_us: int) -> av.VideoFrame:
        """Draw frame ``index`` of the animation with its stamp."""
        width, height = self.fmt.width, self.fmt.height
        offset = (index * self._scroll) % width
        self._luma[:] = self._background[:, offset : offset + width]
        bar = (index * self._bar_speed) % width
        self._luma[:, bar : bar + self._bar_width] = 235
        if self._stamped:
            encode_stamp(self._luma, counter, capture_us)
        return av.VideoFrame.from_ndarray(
            self._buffer.reshape(height * 3 // 2, width), format="yuv420p"
        )


class TestPatternCamera(Camera):
    """Simulated camera: a moving pattern stamped with frame counter and capture time.

    ``seed`` picks the hue and motion, so two cameras are told apart at a
    glance. Frames too small for the stamp (narrower than 64 px) carry none.
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, name: str, *, seed: int = 0, max_lag: float = 0.1) -> None:
        """Create a closed camera; ``max_lag`` s behind, a slow reader loses frames."""
        self.name = name
        self.seed = seed
        self.frames_captured = 0
        self._format = VideoFormat()
        self._pattern: _Pattern | None = None
        self._pacer = RealtimePacer(max_lag)
        self._lock = asyncio.Lock()
        self._is_open = False

    @property
    def format(self) -> VideoFormat:
        """The format the next frame will have."""
        return self._format

    @property
    def is_open(self) -> bool:
        """Whether the camera is capturing."""
        return self._is_open

    async def open(self, fmt: VideoFormat) -> None:
        """Start capturing in ``fmt``; the first read returns at once."""
        if self._is_open:
            raise DeviceUnavailableError(f"camera {self.name!r} is already open")
        self._format = fmt
        self._pattern = _Pattern(fmt, self.seed)
        self._pacer.reset()
        self._is_open = True

    def set_format(self, fmt: VideoFormat) -> None:
        """Change size and rate from the next frame on."""
        self._format = fmt

    async def read(self) -> av.VideoFrame:
        """Return the next frame once it is due (the first one at once)."""
        async with self._lock:
            self._require_open()
            stream_time = await self._pacer.tick(self._format.frame_interval)
            self._require_open()
            return self._capture(stream_time)

    async def close(self) -> None:
        """Stop capturing and free the pattern; idempotent."""
        self._is_open = False
        self._pattern = None

    def _require_open(self) -> None:
        if not self._is_open:
            raise DeviceUnavailableError(f"camera {self.name!r} is not open")

    def _capture(self, stream_time: float) -> av.VideoFrame:
        if self._pattern is None or self._pattern.fmt != self._format:
            self._pattern = _Pattern(self._format, self.seed)
        capture_us = time.monotonic_ns() // 1000
        index = self.frames_captured
        frame = self._pattern.render(index, index & _WORD_MASK, capture_us & _WORD_MASK)
        frame.pts = round(stream_time * VIDEO_CLOCK_RATE)
        frame.time_base = VIDEO_TIME_BASE
        self.frames_captured += 1
        return frame
