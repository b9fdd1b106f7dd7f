"""ALSA microphone and speaker back-ends (pyalsaaudio), and the mixer for volume and gain.

Each open device owns one thread (``callbox-alsa-capture-<name>``,
``callbox-alsa-play-<name>``) that opens the PCM, does every blocking read or write and
closes it (``hal.alsa_pcm.PcmThread``); the event loop only touches bounded queues.
Latency stays bounded for the whole call:

- capture: a few frames at most wait for the reader; a reader that fell behind gets
  fresh audio (older frames are dropped and counted), never a growing backlog;
- playback: a capped queue in front of a 2–4 period device buffer, xruns recovered,
  clock drift compensated (``hal.alsa_playback``), so the delay after 30 minutes is the
  delay after 30 seconds.

A PCM without a clock (``null``, the ``file`` plugin on ``null``) is paced by the wall
clock instead, which is how the tests drive these back-ends through real alsa-lib.
pyalsaaudio is imported when a device opens, never at import time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from hal.alsa_pcm import (
    EPIPE,
    WALL_CLOCK_MARGIN_S,
    AlsaPcmSpec,
    ClockCheck,
    PcmSettings,
    PcmThread,
    Samples,
    VirtualPcm,
    alsa_library,
    reason,
)
from hal.alsa_playback import PlaybackLoop, PlaybackStats, SampleFifo
from hal.audio import Microphone, Speaker
from hal.errors import DeviceUnavailableError, HalError
from hal.media_types import AudioFormat

__all__ = [
    "AlsaMicrophone",
    "AlsaMixer",
    "AlsaPcmSpec",
    "AlsaSpeaker",
    "CaptureStats",
    "PlaybackStats",
    "alsa_devices",
]

_log = logging.getLogger(__name__)

MAX_CAPTURE_AGE_FRAMES = 3  # read() skips frames older than this many frame intervals
RenderTap = Callable[[Samples], None]


@dataclass(frozen=True)
class CaptureStats:
    """Counters of a microphone since it was opened."""

    captured: int = 0  # frames (samples per channel) read from the device
    xruns: int = 0  # overruns recovered
    dropped_frames: int = 0  # AudioFrames dropped because the reader was behind
    wall_clock: bool = False  # the PCM has no clock of its own: paced by the wall clock


class _Mixable(PcmThread):
    def __init__(self, name: str, spec: AlsaPcmSpec, kind: str) -> None:
        super().__init__(name, spec, kind)
        self._mixer = (
            None
            if spec.mixer_control is None
            else AlsaMixer(spec.mixer_control, device=spec.mixer_ctl, capture=kind != "speaker")
        )

    def _require_mixer(self) -> AlsaMixer:
        if self._mixer is None:
            raise HalError(f"{self.what} has no mixer control configured")
        return self._mixer


class AlsaMicrophone(_Mixable, Microphone):
    """An ALSA capture PCM handing out s16 frames of the open format, like ToneMicrophone.

    A device running at another rate (``spec.rate``, e.g. 16 kHz) is resampled to the
    format's rate in the capture thread. ``pts`` counts samples since open.
    """

    def __init__(self, name: str, spec: AlsaPcmSpec | None = None) -> None:
        """A closed microphone on ``spec`` (default: the ``default`` PCM)."""
        super().__init__(name, spec or AlsaPcmSpec(), "microphone")
        self._frames: deque[tuple[float, av.AudioFrame]] = deque()
        self._arrived = asyncio.Event()
        self._cap = MAX_CAPTURE_AGE_FRAMES
        self._captured = self._xruns = self._dropped = 0
        self._wall_clock = False

    def stats(self) -> CaptureStats:
        """A snapshot of the counters."""
        return CaptureStats(self._captured, self._xruns, self._dropped, self._wall_clock)

    async def open(self, fmt: AudioFormat) -> None:
        """Open the PCM and start capturing; DeviceUnavailableError if missing or busy."""
        self.require_closed()
        self._frames.clear()
        self._captured = self._xruns = self._dropped = 0
        self._wall_clock = False
        # Room for what a clockless PCM delivers before it is found out, and a margin.
        burst_ms = self.spec.period_ms * self.spec.periods + WALL_CLOCK_MARGIN_S * 1000
        self._cap = math.ceil(burst_ms / fmt.frame_ms) + 2
        await self.start(fmt, f"callbox-alsa-capture-{self.name}")

    async def read(self) -> av.AudioFrame:
        """The next frame; frames older than a few frame intervals are skipped (counted)."""
        self.require_open()
        while not self._frames:
            self._arrived.clear()
            await self._arrived.wait()
            self.require_open()
        max_age = MAX_CAPTURE_AGE_FRAMES * self.format.frame_interval
        now = time.monotonic()
        while len(self._frames) > 1 and now - self._frames[0][0] > max_age:
            self._frames.popleft()
            self._dropped += 1
        return self._frames.popleft()[1]

    async def close(self) -> None:
        """Stop capturing and release the PCM; idempotent, waits for the thread."""
        await self.join()
        self._frames.clear()
        self._arrived.set()  # a read() waiting now raises "not open"

    async def gain(self) -> int:
        """The mixer's capture level in percent (HalError if no control is configured)."""
        return await self._require_mixer().volume()

    async def set_gain(self, percent: int) -> None:
        """Set the mixer's capture level in percent, 0..100."""
        await self._require_mixer().set_volume(percent)

    def on_failure(self) -> None:
        """Wake a waiting reader, which raises the failure."""
        self._arrived.set()

    def _deliver(self, frame: av.AudioFrame) -> None:
        if not self.is_open:
            return
        self._frames.append((time.monotonic(), frame))
        while len(self._frames) > self._cap:
            self._frames.popleft()
            self._dropped += 1
        self._arrived.set()

    def run(self, pcm: Any, settings: PcmSettings) -> None:
        """Read periods until stopped, cut them into frames and hand those to the loop."""
        framer = _Framer(self.format, settings.rate)
        check = ClockCheck(settings.rate, settings.buffer, transferred=0, now=time.monotonic())
        virtual: VirtualPcm | None = None
        pcm_xruns = 0
        while not self.stop.is_set():
            if virtual is not None and self.stop.wait(
                virtual.wait(settings.period, time.monotonic())
            ):
                break
            count, data = pcm.read()
            if count == -EPIPE:  # an overrun; pyalsaaudio prepared the PCM again
                pcm_xruns += 1
                self._xruns = pcm_xruns
                continue
            if count <= 0:
                continue
            self._captured += count
            now = time.monotonic()
            if virtual is not None:
                virtual.transfer(count, now)
                self._xruns = pcm_xruns + virtual.xruns
            elif (ahead := check.ahead(self._captured, now)) is not None:
                _log.info("%s has no clock of its own: paced by the wall clock", self.what)
                self._wall_clock = True
                virtual = VirtualPcm(
                    settings.rate, settings.buffer, playback=False, level=-ahead, now=now
                )
            samples = np.frombuffer(data, dtype="<i2").reshape(-1, settings.channels)
            for frame in framer.push(samples):
                self.in_loop(self._deliver, frame)


class _Framer:
    """Cuts captured samples into AudioFrames of the format, resampling if the rates differ."""

    def __init__(self, fmt: AudioFormat, device_rate: int) -> None:
        self._format = fmt
        self._device_rate = device_rate
        self._resampler = (
            av.AudioResampler("s16", fmt.layout, fmt.sample_rate)
            if device_rate != fmt.sample_rate
            else None
        )
        self._pending = np.zeros((0, fmt.channels), dtype=np.int16)
        self._pts = 0

    def push(self, samples: Samples) -> list[av.AudioFrame]:
        """The frames ``samples`` (device rate, shape (n, channels)) completed."""
        self._pending = np.concatenate([self._pending, *self._convert(samples)])
        size = self._format.samples_per_frame
        frames: list[av.AudioFrame] = []
        while self._pending.shape[0] >= size:
            frames.append(self._frame(self._pending[:size]))
            self._pending = self._pending[size:]
        return frames

    def _convert(self, samples: Samples) -> list[Samples]:
        if self._resampler is None:
            return [samples]
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1), format="s16", layout=self._format.layout
        )
        frame.sample_rate = self._device_rate
        return [_samples(out, self._format.channels) for out in self._resampler.resample(frame)]

    def _frame(self, samples: Samples) -> av.AudioFrame:
        fmt = self._format
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples).reshape(1, -1), format="s16", layout=fmt.layout
        )
        frame.sample_rate = fmt.sample_rate
        frame.pts = self._pts
        frame.time_base = Fraction(1, fmt.sample_rate)
        self._pts += fmt.samples_per_frame
        return frame


class AlsaSpeaker(_Mixable, Speaker):
    """An ALSA playback PCM taking AudioFrames of any rate and layout, like RecordingSpeaker.

    ``on_render``, if set, is called in the playback thread with every block written to
    the device (int16, shape (n, channels), device rate; one period, or a start cushion
    of ``buffer - period`` frames): exactly what the speaker plays, silence and drift
    corrections included — the far-end reference an echo canceller needs. It must not
    block; an exception in it is logged.
    """

    has_render_tap = True

    def __init__(
        self, name: str, spec: AlsaPcmSpec | None = None, *, on_render: RenderTap | None = None
    ) -> None:
        """A closed speaker on ``spec`` (default: the ``default`` PCM)."""
        super().__init__(name, spec or AlsaPcmSpec(), "speaker")
        self.on_render = on_render
        self._fifo = SampleFifo(1, 1)
        self._playback: PlaybackLoop | None = None
        self._resampler: av.AudioResampler | None = None
        self._resampler_input: tuple[str, str, int] | None = None

    def stats(self) -> PlaybackStats:
        """A snapshot of the counters."""
        if self._playback is None:
            return PlaybackStats(dropped=self._fifo.dropped, queued=self._fifo.level)
        return self._playback.stats()

    async def open(self, fmt: AudioFormat) -> None:
        """Open the PCM and start the playback thread; DeviceUnavailableError if missing."""
        self.require_closed()
        period = self.spec.period_frames(self.spec.rate or fmt.sample_rate)
        self._fifo = SampleFifo(self.spec.queue_periods * period, fmt.channels)
        self._playback = None
        self._resampler = self._resampler_input = None
        await self.start(fmt, f"callbox-alsa-play-{self.name}")

    async def play(self, frame: av.AudioFrame) -> None:
        """Queue ``frame``, converted to the device's rate and layout; never blocks."""
        self.require_open()
        for samples in self._convert(frame):
            self._fifo.put(samples)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until everything queued has been written to the device (TimeoutError)."""
        self.require_open()
        if not await asyncio.to_thread(self._fifo.wait_empty, timeout):
            raise TimeoutError(f"{self.what}: not drained within {timeout} s")
        self.require_open()

    async def close(self) -> None:
        """Stop at once (what is queued is dropped) and release the PCM; idempotent."""
        await self.join()

    def wake(self) -> None:
        """Close the queue: the thread stops waiting for audio, and so does ``drain``."""
        self._fifo.close()

    async def volume(self) -> int:
        """The mixer volume in percent (HalError if no mixer control is configured)."""
        return await self._require_mixer().volume()

    async def set_volume(self, percent: int) -> None:
        """Set the mixer volume in percent, 0..100."""
        await self._require_mixer().set_volume(percent)

    def run(self, pcm: Any, settings: PcmSettings) -> None:
        """Feed the PCM from the queue until closed (in the thread)."""
        self._playback = PlaybackLoop(pcm, settings, self._fifo, self.stop, self._tap)
        self._playback.run()

    def _tap(self, chunk: Samples) -> None:
        if self.on_render is None:
            return
        try:
            self.on_render(chunk)
        except Exception:  # noqa: BLE001 - a tap's bug must not stop the speaker
            _log.exception("%s: on_render failed", self.what)

    def _convert(self, frame: av.AudioFrame) -> list[Samples]:
        fmt, rate = self.format, self.device_rate
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key == ("s16", fmt.layout, rate):
            return [_samples(frame, fmt.channels)]
        try:
            if self._resampler is None or key != self._resampler_input:
                self._resampler = av.AudioResampler("s16", fmt.layout, rate)
                self._resampler_input = key
            converted = self._resampler.resample(frame)
        except (ValueError, av.FFmpegError) as err:
            raise HalError(f"{self.what} cannot play a {key} frame: {err}") from err
        return [_samples(out, fmt.channels) for out in converted]


def _samples(frame: av.AudioFrame, channels: int) -> Samples:
    """A packed s16 frame's samples, shape (n, channels)."""
    return frame.to_ndarray().astype(np.int16, copy=False).reshape(-1, channels)


class AlsaMixer:
    """One simple mixer control of a sound card: a speaker's volume or a microphone's gain.

    Each call opens the control, applies or reads it and closes it again, off the event
    loop, so a card that was plugged in again is found again. DeviceUnavailableError names
    the control and the card when either is missing.
    """

    def __init__(self, control: str, *, device: str = "default", capture: bool = False) -> None:
        """The control ``control`` on mixer device ``device``; ``capture`` for a gain."""
        self.control = control
        self.device = device
        self.capture = capture
        self.what = f"ALSA mixer control {control!r} on {device!r}"

    async def volume(self) -> int:
        """The control's level in percent (the mean of its channels)."""
        return await asyncio.to_thread(self._get)

    async def set_volume(self, percent: int) -> None:
        """Set every channel of the control to ``percent``, 0..100."""
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise HalError(f"{self.what}: level must be an integer 0..100, got {percent!r}")
        await asyncio.to_thread(self._set, percent)

    def _get(self) -> int:
        alsaaudio = alsa_library()
        mixer = self._open(alsaaudio)
        try:
            levels = mixer.getvolume(pcmtype=self._direction(alsaaudio))
        except alsaaudio.ALSAAudioError as err:
            raise HalError(f"{self.what}: cannot read the level: {reason(err)}") from err
        finally:
            mixer.close()
        return round(sum(levels) / len(levels)) if levels else 0

    def _set(self, percent: int) -> None:
        alsaaudio = alsa_library()
        mixer = self._open(alsaaudio)
        try:
            mixer.setvolume(percent, pcmtype=self._direction(alsaaudio))
        except alsaaudio.ALSAAudioError as err:
            raise HalError(f"{self.what}: cannot set the level: {reason(err)}") from err
        finally:
            mixer.close()

    def _direction(self, alsaaudio: Any) -> Any:
        return alsaaudio.PCM_CAPTURE if self.capture else alsaaudio.PCM_PLAYBACK

    def _open(self, alsaaudio: Any) -> Any:
        try:
            return alsaaudio.Mixer(control=self.control, device=self.device)
        except alsaaudio.ALSAAudioError as err:
            raise DeviceUnavailableError(f"{self.what} is not available: {reason(err)}") from err


def alsa_devices(
    speakers: Mapping[str, str | AlsaPcmSpec],
    microphone: str | AlsaPcmSpec | None,
) -> tuple[dict[str, Speaker], dict[str, Microphone]]:
    """The speakers and the microphone of a board on ALSA, for ``Board`` to hold.

    ``speakers`` maps logical devices (``speaker``, ``handset``, ``headset``) to PCM names
    or specs, in the board's order; ``microphone`` is the capture PCM (the microphone is
    called ``main``), None for a board without one. Nothing opens here: a missing PCM is
    reported when its device opens. HalError for an empty device name or a bad spec.
    """
    built: dict[str, Speaker] = {}
    for name, pcm in speakers.items():
        if not isinstance(name, str) or not name.strip():
            raise HalError(f"ALSA speaker names must be non-empty, got {name!r}")
        built[name] = AlsaSpeaker(name, _spec(pcm))
    microphones: dict[str, Microphone] = {}
    if microphone is not None:
        microphones["main"] = AlsaMicrophone("main", _spec(microphone))
    return built, microphones


def _spec(pcm: str | AlsaPcmSpec) -> AlsaPcmSpec:
    return pcm if isinstance(pcm, AlsaPcmSpec) else AlsaPcmSpec(pcm=pcm)
