"""USB (UVC) cameras through V4L2, read with PyAV (libavdevice's v4l2 demuxer).

``input_format`` is what the camera sends: ``mjpeg`` or a raw format (``yuyv422``,
``nv12``...) are decoded to yuv420p frames; ``h264`` (an H.264-capable UVC camera) goes
out as it is through ``read_encoded`` (passthrough) and is decoded only while someone
reads frames (a VP8 peer). A thread of the camera's own (``callbox-v4l2-<name>``) demuxes
continuously, so a reader always gets the newest frame, never one that waited in the
driver's buffers; it hands packets (and, while frames are wanted, decoded frames) to the
event loop with ``call_soon_threadsafe``.

The container opener is injectable: tests open a file through the same demux path
(``realtime=True`` then paces it at its own frame rate, as a device would deliver it).
UVC offers no keyframe request through V4L2: ``request_keyframe`` does nothing and a
peer waits for the camera's next keyframe. H.264 in AVCC form (an .mp4 file) is turned
into Annex B; SPS/PPS are put in front of a keyframe that lacks them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import av
from av.bitstream import BitStreamFilterContext

from hal.camera import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, Camera
from hal.errors import DeviceUnavailableError
from hal.media_types import VideoFormat
from hal.picamera import MAX_PACKET_AGE_S, QUEUE_LIMIT, STALL_TIMEOUT_S, EncodedQueue

_log = logging.getLogger(__name__)

ContainerOpener = Callable[[str, str, dict[str, str]], Any]
"""``opener(file, demuxer, options)`` -> an input container (``av.open`` for a device)."""

MICROSECONDS = Fraction(1, 1_000_000)
FRAMES_WANTED_S = 1.0  # frames are decoded while ``read`` was called this recently
_NAL_IDR, _NAL_SPS, _NAL_PPS = 5, 7, 8


def open_v4l2(file: str, demuxer: str, options: dict[str, str]) -> Any:
    """Open a V4L2 device with libavdevice (the real opener)."""
    return av.open(file, format=demuxer, options=options)


def nal_units(data: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex-B buffer, without their start codes."""
    start = data.find(b"\x00\x00\x01")
    while start != -1:
        begin = start + 3
        end = data.find(b"\x00\x00\x01", begin)
        unit = data[begin:] if end == -1 else data[begin:end]
        yield unit[:-1] if end != -1 and unit.endswith(b"\x00") else unit
        start = end


class ParameterSets:
    """Keeps the latest SPS/PPS and puts them in front of a keyframe that lacks them."""

    def __init__(self) -> None:
        self._sps = b""
        self._pps = b""

    def complete(self, data: bytes) -> tuple[bytes, bool]:
        """``data`` with SPS/PPS in front if it is an IDR without them, and whether it is one."""
        types = set()
        for unit in nal_units(data):
            if unit:
                kind = unit[0] & 0x1F
                types.add(kind)
                if kind == _NAL_SPS:
                    self._sps = unit
                elif kind == _NAL_PPS:
                    self._pps = unit
        keyframe = _NAL_IDR in types
        if keyframe and _NAL_SPS not in types and self._sps and self._pps:
            data = b"\x00\x00\x00\x01" + self._sps + b"\x00\x00\x00\x01" + self._pps + data
        return data, keyframe


class V4l2Camera(Camera):
    """A V4L2 camera through PyAV; see the module docstring."""

    def __init__(
        self,
        name: str,
        device: str = "/dev/video0",
        *,
        input_format: str | None = "mjpeg",
        opener: ContainerOpener = open_v4l2,
        realtime: bool = False,
    ) -> None:
        """A closed camera on ``device``; ``input_format`` as the v4l2 demuxer names it."""
        self.name = name
        self.device = device
        self._input_format = input_format
        self._opener = opener
        self._realtime = realtime
        self._format = VideoFormat()
        self._codec_name: str | None = None
        self._thread: threading.Thread | None = None
        self._closing = asyncio.Lock()  # a second close() waits for the one under way
        self._stopping = threading.Event()
        self._queue: EncodedQueue | None = None
        self._frame: av.VideoFrame | None = None
        self._frame_seq = 0
        self._frame_returned = 0
        self._frame_ready = asyncio.Event()
        self._frames_wanted_at = 0.0
        self._ended: str | None = None
        self._epoch = 0.0
        self._pending_format: VideoFormat | None = None  # for the reader thread

    @property
    def format(self) -> VideoFormat:
        """The format asked of the device (it may deliver another size)."""
        return self._format

    @property
    def supports_h264(self) -> bool:
        """Whether the camera sends H.264 (known for sure once open)."""
        return (self._codec_name or self._input_format) == "h264"

    @property
    def is_open(self) -> bool:
        """Whether the camera is capturing."""
        return self._thread is not None

    def _options(self, fmt: VideoFormat) -> dict[str, str]:
        options = {"video_size": f"{fmt.width}x{fmt.height}", "framerate": str(fmt.fps)}
        if self._input_format:
            options["input_format"] = self._input_format
        return options

    async def open(self, fmt: VideoFormat) -> None:
        """Open the device in ``fmt`` and start demuxing it."""
        if self._thread is not None:
            raise DeviceUnavailableError(f"camera {self.name!r} is already open")
        loop = asyncio.get_running_loop()
        options = self._options(fmt)
        try:
            container = await loop.run_in_executor(None, self._opener, self.device, "v4l2", options)
        except (OSError, av.FFmpegError) as err:
            raise DeviceUnavailableError(f"camera {self.name!r} ({self.device}): {err}") from err
        if not container.streams.video:
            container.close()
            raise DeviceUnavailableError(f"camera {self.name!r} ({self.device}): no video stream")
        stream = container.streams.video[0]
        self._codec_name = stream.codec_context.name
        self._format, self._ended, self._epoch = fmt, None, time.monotonic()
        self._frame, self._frame_seq, self._frame_returned = None, 0, 0
        self._pending_format = None
        self._queue = EncodedQueue(QUEUE_LIMIT, MAX_PACKET_AGE_S, self.request_keyframe)
        self._stopping.clear()
        reader = _Reader(self, self._queue, container, stream, loop)
        self._thread = threading.Thread(target=reader.run, name=f"callbox-v4l2-{self.name}")
        self._thread.start()
        _log.info("camera %r open: %s %s (%s)", self.name, self.device, fmt, self._codec_name)

    def set_format(self, fmt: VideoFormat) -> None:
        """Change size and rate: the reader thread reopens the device in ``fmt`` at once."""
        if fmt != self._format:
            self._format = fmt
            self._pending_format = fmt if self._thread is not None else None

    # called on the loop by the reader thread ------------------------------------------

    def _on_packet(
        self, queue: EncodedQueue, packet: av.Packet[Any] | None, frame: av.VideoFrame | None
    ) -> None:
        if queue is not self._queue:
            return  # a late call of a reader closed since
        if packet is not None:
            queue.put(packet)
        if frame is not None:
            self._frame = frame
            self._frame_seq += 1
            self._frame_ready.set()

    def _on_end(self, queue: EncodedQueue, reason: str) -> None:
        if queue is not self._queue:
            return
        self._ended = reason
        queue.close(keep=True)  # what was read before the end can still be read
        self._frame_ready.set()

    # reading ------------------------------------------------------------------------------

    def frames_wanted(self) -> bool:
        """Whether ``read`` was called recently (the reader thread decodes only then)."""
        return time.monotonic() - self._frames_wanted_at < FRAMES_WANTED_S

    def _require_running(self) -> None:
        if self._thread is None:
            raise DeviceUnavailableError(f"camera {self.name!r} is not open")
        if self._ended is not None:
            raise DeviceUnavailableError(f"camera {self.name!r} ({self.device}): {self._ended}")

    async def read(self) -> av.VideoFrame:
        """The newest decoded frame not handed out yet, as yuv420p with a 1/90000 ``pts``."""
        self._frames_wanted_at = time.monotonic()
        try:
            async with asyncio.timeout(STALL_TIMEOUT_S):
                while True:
                    if self._thread is None:
                        raise DeviceUnavailableError(f"camera {self.name!r} is not open")
                    if self._frame is not None and self._frame_seq > self._frame_returned:
                        break
                    self._require_running()
                    self._frame_ready.clear()
                    await self._frame_ready.wait()
        except TimeoutError as err:
            raise DeviceUnavailableError(f"camera {self.name!r} delivers no frames") from err
        assert self._frame is not None
        self._frame_returned = self._frame_seq
        frame = self._frame
        frame.pts = round((time.monotonic() - self._epoch) * VIDEO_CLOCK_RATE)
        frame.time_base = VIDEO_TIME_BASE
        return frame

    async def read_encoded(self) -> av.Packet[Any]:
        """The camera's next H.264 access unit (Annex B, decodable from the first one)."""
        if not self.supports_h264:
            return await super().read_encoded()
        queue = self._queue
        if queue is None:
            raise DeviceUnavailableError(f"camera {self.name!r} is not open")
        try:
            return await queue.get(STALL_TIMEOUT_S)
        except TimeoutError as err:
            raise DeviceUnavailableError(f"camera {self.name!r}: no H.264 from the device") from err
        except DeviceUnavailableError:
            self._require_running()  # says why the stream ended
            raise

    async def close(self) -> None:
        """Stop the reader thread and release the device.

        Idempotent; a call made while a close is under way waits for it.
        """
        async with self._closing:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._stopping.set()
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
            if self._queue is not None:
                self._queue.close()
            self._queue = self._frame = None
        self._frame_ready.set()
        _log.info("camera %r closed", self.name)


class _Reader:
    """The demux loop of one open V4L2 camera (runs on the camera's thread)."""

    def __init__(
        self,
        camera: V4l2Camera,
        queue: EncodedQueue,
        container: Any,
        stream: Any,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._camera = camera
        self._queue = queue
        self._loop = loop
        self._use(container, stream)

    def _use(self, container: Any, stream: Any) -> None:
        """Read ``stream`` of ``container`` from now on (a fresh demux, decoder, pacing)."""
        self._container = container
        self._stream = stream
        self._h264 = stream.codec_context.name == "h264"
        extradata = stream.codec_context.extradata or b""
        avcc = self._h264 and extradata[:1] == b"\x01"
        self._bsf = BitStreamFilterContext("h264_mp4toannexb", stream) if avcc else None
        self._parameter_sets = ParameterSets()
        self._decoder: Any = None
        self._start: tuple[float, float] | None = None  # (monotonic, stream seconds) of packet 0
        self._count = 0

    def run(self) -> None:
        """Demux until closed or the stream ends, reopening the device on a format change."""
        reason = "the stream ended"
        try:
            while self._demux_until_format_change():
                self._reopen()
        except (OSError, av.FFmpegError) as err:
            reason = f"capture failed: {err}"
            _log.warning("camera %r (%s): %s", self._camera.name, self._camera.device, reason)
        finally:
            if self._container is not None:
                self._container.close()
            self._call(self._camera._on_end, self._queue, reason)

    def _demux_until_format_change(self) -> bool:
        """Hand packets over until closed or the stream ends (False) or a format change (True)."""
        for packet in self._container.demux(self._stream):
            if self._camera._stopping.is_set():
                return False
            if self._camera._pending_format is not None:
                return True
            if packet.size:
                self._pace(packet)
                for annexb in self._annexb(packet):
                    self._hand_over(annexb)
        return False

    def _reopen(self) -> None:
        camera = self._camera
        fmt, camera._pending_format = camera._pending_format, None
        assert fmt is not None
        self._container.close()
        self._container = None
        container = camera._opener(camera.device, "v4l2", camera._options(fmt))
        if not container.streams.video:
            container.close()
            raise OSError(f"no video stream after the change to {fmt}")
        self._use(container, container.streams.video[0])
        _log.info("camera %r reopened: %s", camera.name, fmt)

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody reads any more
            self._loop.call_soon_threadsafe(function, *args)

    def _pace(self, packet: av.Packet[Any]) -> None:
        """With ``realtime`` (a file), wait until the packet is due at its frame rate."""
        if not self._camera._realtime:
            return
        if packet.pts is None:  # an elementary stream: one packet per frame
            at = self._count / self._camera.format.fps
        else:
            at = float(packet.pts * packet.time_base)
        self._count += 1
        if self._start is None:
            self._start = (time.monotonic(), at)
        due = self._start[0] + at - self._start[1]
        self._camera._stopping.wait(max(0.0, due - time.monotonic()))

    def _annexb(self, packet: av.Packet[Any]) -> list[av.Packet[Any]]:
        if self._bsf is None:
            return [packet]
        return self._bsf.filter(packet)

    def _hand_over(self, packet: av.Packet[Any]) -> None:
        if self._h264:
            data, keyframe = self._parameter_sets.complete(bytes(packet))
            out = av.Packet(data)
            out.is_keyframe = keyframe
            if packet.pts is None:  # a raw elementary stream: stamp it on arrival
                out.pts = round((time.monotonic() - self._camera._epoch) * 1_000_000)
                out.time_base = MICROSECONDS
            else:
                out.pts, out.time_base = packet.pts, packet.time_base
            out.dts = out.pts
        else:
            out = packet
        frame = None
        if self._camera.frames_wanted():
            frame = self._decode(out)
        else:
            self._decoder = None  # frames wanted again: an H.264 decoder restarts at a keyframe
        self._call(self._camera._on_packet, self._queue, out if self._h264 else None, frame)

    def _decode(self, packet: av.Packet[Any]) -> av.VideoFrame | None:
        """Decode ``packet`` to yuv420p; an H.264 decoder starts at a keyframe."""
        if self._decoder is None:
            if not self._h264:
                self._decoder = self._stream.codec_context
            elif packet.is_keyframe:
                self._decoder = av.CodecContext.create("h264", "r")
            else:
                return None
        try:
            frames = self._decoder.decode(packet)
        except av.FFmpegError as err:
            _log.debug("camera %r: undecodable packet: %s", self._camera.name, err)
            return None
        if not frames:
            return None
        frame: av.VideoFrame = frames[-1]
        return frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")
