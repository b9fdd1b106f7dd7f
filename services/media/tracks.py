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
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Awaitable, Callable

import av
from aiortc.mediastreams import MediaStreamTrack

from hal.audio import Microphone
from hal.camera import Camera
from hal.media_types import AudioFormat, VideoFormat

VIDEO_CLOCK = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
Frame = av.VideoFrame | av.AudioFrame


class SharedSource:
    """Fans one device's frames out to several readers; reads only when someone waits.

    A frame older than ``max_age_s`` is never handed out: after an idle time (between
    calls) the next reader gets a fresh frame, not the last one of the previous call.
    """

    def __init__(self, read: Callable[[], Awaitable[Frame]], max_age_s: float = 0.1) -> None:
        self._read = read
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


class CameraSource:
    """The endpoint's camera: switchable and re-formattable while calls use it."""

    def __init__(self, camera: Camera, fmt: VideoFormat) -> None:
        self._camera = camera
        self._format = fmt
        self._opened = False
        self._device = asyncio.Lock()  # a switch waits for the read in flight
        self.shared = SharedSource(self._read)

    @property
    def camera(self) -> Camera:
        """The camera frames come from now."""
        return self._camera

    @property
    def format(self) -> VideoFormat:
        """The capture format asked of the camera."""
        return self._format

    async def _read(self) -> av.VideoFrame:
        async with self._device:
            if not self._opened:
                await self._camera.open(self._format)
                self._opened = True
            return await self._camera.read()

    async def switch(self, camera: Camera) -> None:
        """Take frames from ``camera`` from the next frame on; the old one is closed."""
        async with self._device:
            old, self._camera = self._camera, camera
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
        async with self._device:
            if self._opened:
                self._opened = False
                await self._camera.close()


class MicrophoneSource:
    """The endpoint's microphone."""

    def __init__(self, microphone: Microphone, fmt: AudioFormat) -> None:
        self._microphone = microphone
        self._format = fmt
        self._opened = False
        self.shared = SharedSource(self._read)

    async def _read(self) -> av.AudioFrame:
        if not self._opened:
            await self._microphone.open(self._format)
            self._opened = True
        return await self._microphone.read()

    async def close(self) -> None:
        """Release the microphone; safe to call twice."""
        if self._opened:
            self._opened = False
            await self._microphone.close()


class OutgoingTrack(MediaStreamTrack):
    """One session's view of a shared source, sending only while its gate is open."""

    def __init__(self, kind: str, source: SharedSource) -> None:
        super().__init__()
        self.kind = kind
        self._source = source
        self._gate = asyncio.Event()
        self._seq = 0
        self._epoch: float | None = None
        self._samples = 0
        self._on_first_recv: Callable[[], None] | None = None
        self._last: Frame | None = None
        self.frames_sent = 0

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

    async def recv(self) -> Frame:
        """The next frame of the source, once the gate is open, with this track's timestamps."""
        await self._gate.wait()
        if self._on_first_recv is not None:
            hook, self._on_first_recv = self._on_first_recv, None
            hook()
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

    def _stamp_video(self, frame: av.VideoFrame) -> av.VideoFrame:
        now = time.monotonic()
        if self._epoch is None:
            self._epoch = now
        out = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
        out.pts = int((now - self._epoch) * VIDEO_CLOCK)
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
