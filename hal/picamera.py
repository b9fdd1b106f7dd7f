"""The Raspberry Pi camera through picamera2: hardware H.264 for passthrough, or raw frames.

Two modes, chosen by the board:

- ``h264`` (Pi 4, 3, Zero 2: the VideoCore encoder): ``read_encoded`` hands out the
  encoder's Annex-B access units (SPS/PPS repeated in front of every keyframe, a keyframe
  at least once a second, more on ``request_keyframe``), and ``read`` raw frames for a
  peer that negotiates VP8.
- ``raw`` (the Pi 5 has no H.264 encoder): ``read`` only; aiortc encodes. A camera
  opened in ``h264`` mode whose encoder cannot start falls back to ``raw``, and says so.

picamera2 is imported when the camera opens, never at import time, so this module imports
on any machine. ``library`` swaps picamera2 for a fake in tests; everything else is the
code a Pi runs. picamera2 delivers encoded frames on its encoder thread: they reach the
event loop through ``call_soon_threadsafe``. Calls into picamera2 that block (configure,
start, stop, capture_array) run in an executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import importlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeVar

import av
import numpy as np
import numpy.typing as npt

from hal.camera import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, Camera
from hal.errors import DeviceUnavailableError, HalError
from hal.media_types import VideoFormat

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

ENCODER_TIME_BASE = Fraction(1, 1_000_000)  # picamera2 timestamps are microseconds
MIN_BITRATE_BPS = 64_000
BITRATE_HYSTERESIS = 0.1  # a change smaller than 10 % does not restart the encoder
RESTART_INTERVAL_S = 2.0  # at most one bitrate restart (one extra keyframe) per 2 s
QUEUE_LIMIT = 60  # encoded frames held for a slow reader (2 s at 30 fps), then a resync
MAX_PACKET_AGE_S = 0.5  # an older encoded frame is stale: resync on a fresh keyframe
STALL_TIMEOUT_S = 2.0  # no frame for this long: the camera or its encoder failed
KEYFRAME_RETRY_S = 0.3  # a keyframe asked for and not seen by then may be asked again


class PiCameraMode(enum.Enum):
    """What the camera hands out: hardware H.264 and raw frames, or raw frames only."""

    H264 = "h264"
    RAW = "raw"


@dataclass(frozen=True)
class Picamera2Library:
    """The three names of picamera2 this back-end uses; tests pass fakes of them."""

    camera: Callable[[int], Any]  # picamera2.Picamera2(camera_num)
    h264_encoder: Callable[..., Any]  # picamera2.encoders.H264Encoder
    output_base: type[Any]  # picamera2.outputs.Output


def load_picamera2() -> Picamera2Library:
    """Import picamera2 (Raspberry Pi OS: ``apt install python3-picamera2``)."""
    try:
        picamera2 = importlib.import_module("picamera2")
        encoders = importlib.import_module("picamera2.encoders")
        outputs = importlib.import_module("picamera2.outputs")
    except ImportError as err:
        raise DeviceUnavailableError(f"picamera2 cannot be imported: {err}") from err
    return Picamera2Library(picamera2.Picamera2, encoders.H264Encoder, outputs.Output)


def _make_output(base: type[Any], deliver: Callable[[bytes, bool, int | None], None]) -> Any:
    """An instance of a subclass of picamera2's ``Output`` that hands frames to ``deliver``."""

    def outputframe(
        self: Any,
        frame: Any,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        if frame is not None and not audio:
            deliver(frame if isinstance(frame, bytes) else bytes(frame), bool(keyframe), timestamp)

    return type("CallboxOutput", (base,), {"outputframe": outputframe})()


def yuv420_frame(array: npt.NDArray[np.uint8], width: int, height: int) -> av.VideoFrame:
    """A yuv420p frame from picamera2's YUV420 array ((height * 3 / 2) x stride bytes)."""
    stride = array.shape[1]
    if stride == width:
        return av.VideoFrame.from_ndarray(array, format="yuv420p")
    flat = array.reshape(-1)
    luma_end, chroma = height * stride, (height // 2) * (stride // 2)
    y = flat[:luma_end].reshape(height, stride)[:, :width]
    u = flat[luma_end : luma_end + chroma].reshape(height // 2, stride // 2)[:, : width // 2]
    v = flat[luma_end + chroma : luma_end + 2 * chroma].reshape(height // 2, stride // 2)
    planes = [y.reshape(-1), u.reshape(-1), v[:, : width // 2].reshape(-1)]
    packed = np.concatenate(planes).reshape(height * 3 // 2, width)
    return av.VideoFrame.from_ndarray(packed, format="yuv420p")


class EncodedQueue:
    """Encoded frames from the encoder thread, read on the loop; after a gap, from a keyframe.

    A reader that falls ``limit`` frames behind, or finds a frame older than ``max_age_s``
    (after an idle time between calls), loses the backlog and resumes at the next keyframe,
    which is requested then: what it hands out always decodes.
    """

    def __init__(self, limit: int, max_age_s: float, request_keyframe: Callable[[], None]) -> None:
        self._items: deque[tuple[float, av.Packet[Any]]] = deque()
        self._limit = limit
        self._max_age_s = max_age_s
        self._request_keyframe = request_keyframe
        self._arrived = asyncio.Event()
        self._resync = True
        self._requested = False
        self.closed = False

    def put(self, packet: av.Packet[Any]) -> None:
        """Queue one encoded frame (on the loop)."""
        if len(self._items) >= self._limit:
            self._gap()
        if self._resync and not packet.is_keyframe:
            return
        self._resync = self._requested = False
        self._items.append((time.monotonic(), packet))
        self._arrived.set()

    def _gap(self) -> None:
        self._items.clear()
        self._resync = True

    def resync(self) -> None:
        """Drop what is queued and resume at the next keyframe (the stream is about to change)."""
        self._gap()

    async def get(self, timeout: float) -> av.Packet[Any]:
        """The next encoded frame.

        TimeoutError if none comes within ``timeout`` s, DeviceUnavailableError once the queue is
        closed and empty.
        """
        async with asyncio.timeout(timeout):
            while True:
                if self._items and time.monotonic() - self._items[0][0] > self._max_age_s:
                    self._gap()
                if self._items:
                    return self._items.popleft()[1]
                if self.closed:
                    raise DeviceUnavailableError("the camera closed")
                if self._resync and not self._requested:
                    self._requested = True
                    self._request_keyframe()
                self._arrived.clear()
                await self._arrived.wait()

    def close(self, *, keep: bool = False) -> None:
        """No more frames will come: wake every reader (``keep``: let them drain the rest)."""
        self.closed = True
        if not keep:
            self._items.clear()
        self._arrived.set()


class PiCamera(Camera):
    """A Raspberry Pi camera (libcamera) through picamera2; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        camera_num: int = 0,
        mode: PiCameraMode = PiCameraMode.H264,
        bitrate_bps: int = 1_000_000,
        profile: str = "baseline",
        library: Callable[[], Picamera2Library] = load_picamera2,
    ) -> None:
        """A closed camera; ``profile`` is the H.264 profile asked of the encoder."""
        self.name = name
        self.mode = mode
        self._camera_num = camera_num
        self._bitrate = max(MIN_BITRATE_BPS, bitrate_bps)
        self._profile = profile
        self._library = library
        self._format = VideoFormat()
        self._lib: Picamera2Library | None = None
        self._picam: Any = None
        self._encoder: Any = None
        self._encoder_bitrate = 0
        self._restarted_at = 0.0
        self._queue: EncodedQueue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._control = asyncio.Lock()  # open, reconfigure, capture and close take turns
        self._reconfigure = False
        self._epoch = 0.0
        self._anchor: float | None = None  # monotonic time of the encoder's timestamp 0
        self._last_pts: int | None = None  # of the last packet handed out (this opening)
        self._keyframe_asked_at = 0.0

    @property
    def format(self) -> VideoFormat:
        """The format the next frame will have."""
        return self._format

    @property
    def supports_h264(self) -> bool:
        """True in ``h264`` mode: the hardware encoder's packets are available."""
        return self.mode is PiCameraMode.H264

    @property
    def bitrate(self) -> int:
        """The bitrate asked of the encoder, in bits per second."""
        return self._bitrate

    @property
    def is_open(self) -> bool:
        """Whether the camera is capturing."""
        return self._picam is not None

    async def _blocking(self, what: str, call: Callable[[], _T]) -> _T:
        """Run a blocking picamera2 call off the loop; its failure becomes a HalError."""
        try:
            return await asyncio.get_running_loop().run_in_executor(None, call)
        except Exception as err:
            raise DeviceUnavailableError(f"camera {self.name!r}: {what} failed: {err}") from err

    async def open(self, fmt: VideoFormat) -> None:
        """Configure the sensor for ``fmt`` and start it (and the encoder in ``h264`` mode)."""
        async with self._control:
            if self._picam is not None:
                raise DeviceUnavailableError(f"camera {self.name!r} is already open")
            self._loop = asyncio.get_running_loop()
            self._format = fmt
            self._lib = self._library()
            self._picam = await self._blocking("open", lambda: self._start_camera(fmt))
            self._epoch = time.monotonic()
            self._last_pts = None
            if self.mode is PiCameraMode.H264:
                await self._start_h264()
            _log.info("camera %r open: %s, mode %s", self.name, fmt, self.mode.value)

    async def _start_h264(self) -> None:
        """Start the hardware encoder; without one (a Pi 5) carry on with raw frames."""
        self._queue = EncodedQueue(QUEUE_LIMIT, MAX_PACKET_AGE_S, self.request_keyframe)
        try:
            await self._blocking("starting the H.264 encoder", self._start_encoder)
        except DeviceUnavailableError as err:
            _log.warning("camera %r: %s; raw frames only, encoded in software", self.name, err)
            self.mode, self._queue, self._encoder = PiCameraMode.RAW, None, None

    def _start_camera(self, fmt: VideoFormat) -> Any:
        assert self._lib is not None
        picam = self._lib.camera(self._camera_num)
        try:
            self._configure(picam, fmt)
            picam.start()
        except BaseException:
            picam.close()
            raise
        return picam

    @staticmethod
    def _configure(picam: Any, fmt: VideoFormat) -> None:
        frame_us = round(1_000_000 / fmt.fps)
        config = picam.create_video_configuration(
            main={"size": (fmt.width, fmt.height), "format": "YUV420"},
            controls={"FrameDurationLimits": (frame_us, frame_us)},
            queue=False,  # capture_array waits for a fresh frame instead of a queued one
        )
        picam.configure(config)

    def _start_encoder(self) -> None:
        assert self._lib is not None
        encoder = self._lib.h264_encoder(
            bitrate=self._bitrate, repeat=True, iperiod=self._format.fps, profile=self._profile
        )
        self._anchor = None
        self._picam.start_encoder(encoder, _make_output(self._lib.output_base, self._deliver))
        self._encoder, self._encoder_bitrate = encoder, self._bitrate
        self._restarted_at = time.monotonic()

    def _stop_encoder(self) -> None:
        encoder, self._encoder = self._encoder, None
        if encoder is not None:
            self._picam.stop_encoder(encoder)

    def _deliver(self, data: bytes, keyframe: bool, timestamp_us: int | None) -> None:
        """On the encoder thread: hand one encoded frame to the loop.

        picamera2 counts timestamps from each encoder's first frame; anchored to the
        camera's epoch they stay continuous across an encoder restart.
        """
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or loop.is_closed():
            return
        packet = av.Packet(data)
        packet.is_keyframe = keyframe
        if timestamp_us is not None:
            packet.pts = packet.dts = self._pts(timestamp_us)
            packet.time_base = ENCODER_TIME_BASE
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody reads any more
            loop.call_soon_threadsafe(self._arrived, queue, packet)

    def _pts(self, timestamp_us: int) -> int:
        """The packet's time on the camera's clock (µs since it opened), never going back.

        A restarted encoder is anchored by when its first frame arrived: one that arrived
        later than the frames before it (a busy CPU) would put it behind the last packet
        sent, so the anchor moves to keep one frame interval after it.
        """
        if self._anchor is None:
            self._anchor = time.monotonic() - timestamp_us / 1_000_000
        pts = round((self._anchor - self._epoch) * 1_000_000) + timestamp_us
        if self._last_pts is not None and pts <= self._last_pts:
            shift = self._last_pts + round(1_000_000 / self._format.fps) - pts
            self._anchor += shift / 1_000_000
            pts += shift
        self._last_pts = pts
        return pts

    def _arrived(self, queue: EncodedQueue, packet: av.Packet[Any]) -> None:
        if packet.is_keyframe:
            self._keyframe_asked_at = 0.0  # answered: the next request goes through
        queue.put(packet)

    def set_format(self, fmt: VideoFormat) -> None:
        """Change size and rate: the camera and encoder restart before the next frame."""
        if fmt != self._format:
            self._format = fmt
            self._reconfigure = self._picam is not None

    def set_bitrate(self, bps: int) -> None:
        """Aim the encoder at ``bps``; it restarts (one keyframe) at most every 2 s for it."""
        self._bitrate = max(MIN_BITRATE_BPS, bps)

    def request_keyframe(self) -> None:
        """Make the encoder's next frame a keyframe (picamera2's ``force_key_frame``).

        Requests while one is on its way (several peers, a burst of PLIs) make no extra one.
        """
        now = time.monotonic()
        if self._encoder is None or now - self._keyframe_asked_at < KEYFRAME_RETRY_S:
            return
        self._keyframe_asked_at = now
        self._encoder.force_key_frame()

    def _bitrate_restart_due(self) -> bool:
        if self._encoder is None or not self._encoder_bitrate:
            return False
        change = abs(self._bitrate - self._encoder_bitrate) / self._encoder_bitrate
        wait_over = time.monotonic() - self._restarted_at >= RESTART_INTERVAL_S
        return change > BITRATE_HYSTERESIS and wait_over

    async def _apply_changes(self) -> None:
        """Apply a pending format or bitrate change (on a reader's turn, off the loop)."""
        if self._reconfigure:
            self._reconfigure = False
            fmt = self._format
            if self._queue is not None:
                # frames of the old format still queued would reach a reader that has not
                # seen their keyframe; the new encoder starts with one
                self._queue.resync()
            await self._blocking("changing the format", lambda: self._restart_camera(fmt))
            _log.info("camera %r now %s", self.name, fmt)
        elif self._bitrate_restart_due():
            old, new = self._encoder_bitrate, self._bitrate
            await self._blocking("changing the bitrate", self._restart_encoder)
            _log.info("camera %r: encoder bitrate %d -> %d bps", self.name, old, new)

    def _restart_encoder(self) -> None:
        self._stop_encoder()
        self._start_encoder()

    def _restart_camera(self, fmt: VideoFormat) -> None:
        running = self._encoder is not None
        self._stop_encoder()
        self._picam.stop()
        self._configure(self._picam, fmt)
        self._picam.start()
        if running:
            self._start_encoder()

    def _require_open(self) -> Any:
        if self._picam is None:
            raise DeviceUnavailableError(f"camera {self.name!r} is not open")
        return self._picam

    async def read(self) -> av.VideoFrame:
        """The next raw frame from the sensor, as yuv420p with a 1/90000 ``pts``."""
        async with self._control:
            picam = self._require_open()
            await self._apply_changes()
            fmt = self._format
            capture = self._blocking("capture", lambda: picam.capture_array("main"))
            try:
                array = await asyncio.wait_for(capture, STALL_TIMEOUT_S)
            except TimeoutError as err:
                raise DeviceUnavailableError(f"camera {self.name!r} delivers no frames") from err
        frame = yuv420_frame(array, fmt.width, fmt.height)
        frame.pts = round((time.monotonic() - self._epoch) * VIDEO_CLOCK_RATE)
        frame.time_base = VIDEO_TIME_BASE
        return frame

    async def read_encoded(self) -> av.Packet[Any]:
        """The next access unit of the hardware encoder (see ``Camera.read_encoded``)."""
        if self.mode is not PiCameraMode.H264:
            return await super().read_encoded()
        self._require_open()
        if self._reconfigure or self._bitrate_restart_due():
            async with self._control:
                self._require_open()
                await self._apply_changes()
        queue = self._queue
        if queue is None:
            raise DeviceUnavailableError(f"camera {self.name!r} is not open")
        try:
            return await queue.get(STALL_TIMEOUT_S)
        except TimeoutError as err:
            raise DeviceUnavailableError(f"camera {self.name!r}: the encoder stalled") from err

    async def close(self) -> None:
        """Stop the encoder and the camera and release it; idempotent."""
        async with self._control:
            if self._queue is not None:
                self._queue.close()
            if self._picam is None:
                return
            try:
                await self._blocking("closing", self._shut_down)
            finally:
                self._picam = self._queue = self._encoder = None
                _log.info("camera %r closed", self.name)

    def _shut_down(self) -> None:
        """Stop the encoder and the camera and release it, each step even if one fails."""
        steps = (("stopping the encoder", self._stop_encoder), ("stopping", self._picam.stop))
        for what, step in (*steps, ("releasing", self._picam.close)):
            try:
                step()
            except Exception as err:  # noqa: BLE001 - the camera must be released regardless
                _log.warning("camera %r: %s failed: %s", self.name, what, err)


def check_mode(value: str) -> PiCameraMode:
    """The mode called ``value`` ("h264" or "raw"); HalError naming the choices otherwise."""
    try:
        return PiCameraMode(value)
    except ValueError:
        choices = ", ".join(m.value for m in PiCameraMode)
        raise HalError(f"picamera mode {value!r} is not one of {choices}") from None
