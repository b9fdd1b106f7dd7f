"""Outgoing tracks fed by HAL devices: one device shared by every session, gated per session.

A door station rings several indoor units at once, so one camera and one microphone
feed several peer connections. :class:`SharedSource` hands each frame to every
subscriber without a background task: the first subscriber that needs a new frame
reads the device, the others wait for that frame. Nothing reads a device while no
session wants frames.

A callee answers the SDP while it rings (early media) but must send nothing until
the person answers; muting stops sending too. :class:`OutgoingTrack`'s gate blocks
``recv()`` so aiortc's sender loop simply waits: no frame is read, encoded or sent.
Timestamps are re-stamped per track so they stay monotonic across source switches.

A camera whose hardware encodes H.264 also feeds :class:`EncodedSource`: when a session
negotiates H.264, its track hands aiortc the camera's packets (``av.Packet``), which aiortc
only packetises: no decode, no re-encode. Every track starts at a keyframe and then gets
every packet in order; a track that falls behind resumes at the next keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import av
from aiortc.mediastreams import MediaStreamTrack

from hal.audio import Microphone
from hal.camera import Camera
from hal.errors import HalError
from hal.media_types import AudioFormat, VideoFormat
from services.media.encoded import EncodedSource, NoEncodedOutputError

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

CAMERA_RETRY_S = 2.0
"""How often a failed camera is tried again."""

VIDEO_CLOCK = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
Frame = av.VideoFrame | av.AudioFrame


class SharedSource:
    """Fans one device's frames out to several readers; reads only when someone waits.

    A frame older than ``max_age_s`` is never handed out: after an idle time (between
    calls) the next reader gets a fresh frame, not the last one of the previous call.
    """

    def __init__(
        self,
        read: Callable[[], Awaitable[Frame]],
        max_age_s: float = 0.1,
        *,
        encoded: EncodedSource | None = None,
    ) -> None:
        """``encoded``: the same device's H.264 packets, when it may have some."""
        self._read = read
        self.encoded = encoded
        self._max_age_s = max_age_s
        self._frame: Frame | None = None
        self._frame_at = 0.0
        self._seq = 0
        self._reading = False
        self._changed = asyncio.Condition()

    def _fresh(self, after: int) -> bool:
        return self._seq > after and time.monotonic() - self._frame_at <= self._max_age_s

    async def next_frame(self, after: int) -> tuple[int, Frame]:
        """The first fresh frame newer than sequence number ``after``, and its number."""
        async with self._changed:
            while not self._fresh(after) and self._reading:
                await self._changed.wait()
            if self._fresh(after):
                assert self._frame is not None
                return self._seq, self._frame
            self._reading = True
        frame: Frame | None = None
        try:
            frame = await self._read()
            return self._seq + 1, frame
        finally:
            async with self._changed:
                self._reading = False
                if frame is not None:
                    self._seq += 1
                    self._frame = frame
                    self._frame_at = time.monotonic()
                self._changed.notify_all()


class _DeviceGuard:
    """Reads run side by side (frames and packets); a switch or close waits for them."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._readers = 0
        self._exclusive = False

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        """Hold the device for one read."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._exclusive)
            self._readers += 1
        try:
            yield
        finally:
            async with self._changed:
                self._readers -= 1
                self._changed.notify_all()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the device alone: no read in flight, none starting."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._exclusive)
            self._exclusive = True
            await self._changed.wait_for(lambda: self._readers == 0)
        try:
            yield
        finally:
            async with self._changed:
                self._exclusive = False
                self._changed.notify_all()


class CameraSource:
    """The endpoint's camera: switchable and re-formattable while calls use it.

    It is the :class:`EncodedDevice` of its ``encoded`` source: H.264 packets when the
    current camera has a hardware encoder, keyframe requests and bitrate passed on to it.
    """

    def __init__(self, camera: Camera, fmt: VideoFormat) -> None:
        self._camera = camera
        self._format = fmt
        self._opened = False
        self.failure: str | None = None
        self.on_failure: Callable[[Exception], None] | None = None
        self.on_recovered: Callable[[], None] | None = None
        self._bitrate: int | None = None
        self._guard = _DeviceGuard()  # a switch waits for the reads in flight
        self.encoded = EncodedSource(self)
        self.shared = SharedSource(self._read, encoded=self.encoded)

    @property
    def camera(self) -> Camera:
        """The camera frames come from now."""
        return self._camera

    @property
    def format(self) -> VideoFormat:
        """The capture format asked of the camera."""
        return self._format

    @property
    def supports_h264(self) -> bool:
        """Whether the current camera hands out H.264 packets."""
        return self._camera.supports_h264

    async def _open(self) -> None:
        if not self._opened:
            async with self._guard.exclusive():
                if not self._opened:
                    await self._camera.open(self._format)
                    self._opened = True

    async def _read(self) -> av.VideoFrame:
        return await self._reliably(self._read_frame)

    async def _read_frame(self) -> av.VideoFrame:
        await self._open()
        async with self._guard.reading():
            return await self._camera.read()

    async def read_encoded(self) -> av.Packet[Any]:
        """The current camera's next H.264 access unit (opening the camera first)."""
        return await self._reliably(self._read_packet)

    async def _read_packet(self) -> av.Packet[Any]:
        await self._open()
        async with self._guard.reading():
            if not self._camera.supports_h264:
                raise NoEncodedOutputError(f"camera {self._camera.name!r} has no H.264 output")
            return await self._camera.read_encoded()

    async def _reliably(self, read: Callable[[], Awaitable[_T]]) -> _T:
        """``read()``, through camera failures.

        A failed camera (unplugged, encoder error) is closed and retried every ``CAMERA_RETRY_S``;
        the reader waits meanwhile, so the calls keep their video track and go on with audio.
        """
        while True:
            try:
                item = await read()
            except (HalError, OSError, av.FFmpegError) as err:
                await self._failed(err)
                await asyncio.sleep(CAMERA_RETRY_S)  # the retry interval
                continue
            if self.failure is not None:
                _log.info("camera %s works again", self._camera.name)
                self.failure = None
                if self.on_recovered is not None:
                    self.on_recovered()
            return item

    async def _failed(self, err: Exception) -> None:
        if self.failure is None:
            self.failure = str(err) or type(err).__name__
            _log.error(
                "camera %s failed: %s; video paused, retried every %.0f s",
                self._camera.name,
                self.failure,
                CAMERA_RETRY_S,
            )
            if self.on_failure is not None:
                self.on_failure(err)
        async with self._guard.exclusive():
            if self._opened:
                self._opened = False
                try:
                    await self._camera.close()
                except (HalError, OSError) as close_err:
                    _log.warning("camera %s did not close: %s", self._camera.name, close_err)

    def request_keyframe(self) -> None:
        """Ask the current camera's encoder for a keyframe."""
        if self._opened:
            self._camera.request_keyframe()

    def set_bitrate(self, bps: int) -> None:
        """Aim the camera's encoder at ``bps`` (kept for a camera switched to later)."""
        self._bitrate = bps
        self._camera.set_bitrate(bps)

    async def switch(self, camera: Camera) -> None:
        """Take frames from ``camera`` from the next frame on; the old one is closed."""
        async with self._guard.exclusive():
            old, self._camera = self._camera, camera
            if self._bitrate is not None:
                camera.set_bitrate(self._bitrate)
            if self._opened and old is not camera:
                await camera.open(self._format)
                await old.close()

    def set_format(self, fmt: VideoFormat) -> None:
        """Change width, height and frame rate from the next frame on."""
        self._format = fmt
        if self._opened:
            self._camera.set_format(fmt)

    async def close(self) -> None:
        """Release the camera; safe to call twice."""
        async with self._guard.exclusive():
            if self._opened:
                self._opened = False
                await self._camera.close()


class MicrophoneSource:
    """The endpoint's microphone."""

    def __init__(self, microphone: Microphone, fmt: AudioFormat) -> None:
        self._microphone = microphone
        self._format = fmt
        self._opened = False
        self._closing = asyncio.Lock()  # a second close() waits for the one under way
        self.shared = SharedSource(self._read)

    async def _read(self) -> av.AudioFrame:
        if not self._opened:
            await self._microphone.open(self._format)
            self._opened = True
        return await self._microphone.read()

    async def close(self) -> None:
        """Release the microphone.

        Safe to call twice; a call made while a close is under way waits for it.
        """
        async with self._closing:
            if self._opened:
                self._opened = False
                await self._microphone.close()


class OutgoingTrack(MediaStreamTrack):
    """One session's view of a shared source, sending only while its gate is open.

    With :meth:`use_encoded` (H.264 negotiated), a video track hands aiortc the camera's
    H.264 packets whenever the camera has them, and raw frames otherwise.
    """

    def __init__(self, kind: str, source: SharedSource) -> None:
        super().__init__()
        self.kind = kind
        self._source = source
        self._gate = asyncio.Event()
        self._seq = 0
        self._epoch: float | None = None
        self._last_pts = -1
        self._samples = 0
        self._on_first_recv: Callable[[], None] | None = None
        self._last: Frame | None = None
        self._encoded: EncodedSource | None = None
        self._packet_seq = 0
        self._packet_clock: tuple[int, int] | None = None  # (camera pts, our pts) at 90 kHz
        self.frames_sent = 0
        self.packets_sent = 0

    @property
    def sending(self) -> bool:
        """True when frames flow to the peer."""
        return self._gate.is_set()

    def set_sending(self, enabled: bool) -> None:
        """Open or close the gate."""
        if enabled:
            self._gate.set()
        else:
            self._gate.clear()

    def on_first_recv(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` once, right before the first frame is handed to the sender."""
        self._on_first_recv = hook

    def use_encoded(self, source: EncodedSource | None) -> None:
        """Send ``source``'s H.264 packets unchanged while its camera has them (None: never)."""
        self._encoded = source

    @property
    def passthrough(self) -> bool:
        """True while the camera's encoded packets go out as they are."""
        return self._encoded is not None and self._encoded.available

    def request_keyframe(self) -> None:
        """The peer lost a picture: ask the camera's encoder for a keyframe (passthrough)."""
        if self._encoded is not None and self.passthrough:
            self._encoded.request_keyframe()

    def set_bitrate(self, bps: int) -> None:
        """The bitrate this track's peer can take: passed on to the camera's encoder."""
        if self._encoded is not None:
            self._encoded.set_bitrate(self, bps)

    def stop(self) -> None:
        """End the track; its bitrate wish no longer holds the camera down."""
        super().stop()
        if self._encoded is not None:
            self._encoded.set_bitrate(self, None)

    async def recv(self) -> Frame | av.Packet[Any]:
        """The next frame (or H.264 packet) of the source, once the gate is open."""
        await self._gate.wait()
        if self._on_first_recv is not None:
            hook, self._on_first_recv = self._on_first_recv, None
            hook()
        if self.passthrough:
            with contextlib.suppress(NoEncodedOutputError):  # switched: raw frames from now
                return await self._recv_packet()
        self._packet_seq = 0  # if packets come back (a camera switch), start at a keyframe
        if self.kind == "video" and self.frames_sent == 1 and self._last is not None:
            # aiortc's receiver releases a video frame only when a packet of the next frame
            # arrives; repeating the first frame at once shows the preview one frame
            # interval (33 ms at 30 fps) sooner. The repeat costs a tiny inter frame.
            frame = self._last
        else:
            self._seq, frame = await self._source.next_frame(self._seq)
        self._last = frame
        self.frames_sent += 1
        if isinstance(frame, av.VideoFrame):
            return self._stamp_video(frame)
        return self._stamp_audio(frame)

    async def _recv_packet(self) -> av.Packet[Any]:
        assert self._encoded is not None
        if self._packet_seq == 0:
            self._packet_clock = None
        self._packet_seq, packet = await self._encoded.next_packet(self._packet_seq)
        self.frames_sent += 1
        self.packets_sent += 1
        out = av.Packet(bytes(packet))  # each peer's copy carries its own timestamp
        out.is_keyframe = packet.is_keyframe
        out.pts = self._packet_pts(packet)
        out.time_base = VIDEO_TIME_BASE
        return out

    def _now_pts(self) -> int:
        now = time.monotonic()
        if self._epoch is None:
            self._epoch = now
        return int((now - self._epoch) * VIDEO_CLOCK)

    def _packet_pts(self, packet: av.Packet[Any]) -> int:
        """The camera's capture clock, anchored to ours.

        The encoder's frame spacing stays, a jump of the camera's clock (an encoder restart)
        re-anchors it.
        """
        now = self._now_pts()
        if packet.pts is None:
            return self._monotonic(now)
        camera = int(packet.pts * packet.time_base * VIDEO_CLOCK)
        if self._packet_clock is not None:
            pts = self._packet_clock[1] + camera - self._packet_clock[0]
            if abs(pts - now) < VIDEO_CLOCK // 5:
                return self._monotonic(pts)
        self._packet_clock = (camera, now)
        return self._monotonic(now)

    def _monotonic(self, pts: int) -> int:
        self._last_pts = max(pts, self._last_pts + 1)
        return self._last_pts

    def _stamp_video(self, frame: av.VideoFrame) -> av.VideoFrame:
        out = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
        out.pts = self._monotonic(self._now_pts())
        out.time_base = VIDEO_TIME_BASE
        return out

    def _stamp_audio(self, frame: av.AudioFrame) -> av.AudioFrame:
        out = av.AudioFrame.from_ndarray(
            frame.to_ndarray(), format=frame.format.name, layout=frame.layout.name
        )
        out.sample_rate = frame.sample_rate
        out.pts = self._samples
        out.time_base = fractions.Fraction(1, frame.sample_rate)
        self._samples += frame.samples
        return out
