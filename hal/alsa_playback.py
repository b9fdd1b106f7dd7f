"""The ALSA speaker's playback thread: a capped queue in front of a small device buffer.

Latency is the queue plus the device buffer, and both are bounded:

- :class:`SampleFifo` drops its oldest samples beyond its cap, so a producer faster
  than the device (a burst from the jitter buffer, a sound card running slow) never
  builds up delay;
- the thread keeps the device fed one period at a time; when the queue runs dry it
  waits until the device is down to half a period, then writes silence (a gap, counted);
  after ``IDLE_S`` without audio it stops the PCM until audio comes again, and restarts
  with a cushion of ``buffer - period`` frames of silence;
- an xrun is recovered (pyalsaaudio prepares the PCM; the block is written again) and
  counted;
- :class:`DriftCompensator` keeps the smoothed fill level within a band by dropping or
  repeating one sample per period, so a clock offset between the peer's capture and this
  playback shows up as a few inaudible samples, not as a growing delay or as repeated
  gaps.

When the PCM opens, a short probe of silence tells whether it has a clock: a real device
blocks once its buffer is full, a ``null``-backed one does not and is then paced by a
:class:`~hal.alsa_pcm.VirtualPcm` (see ``hal.alsa_pcm``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hal.alsa_pcm import EPIPE, ClockCheck, PcmSettings, Samples, VirtualPcm
from hal.errors import HalError

_log = logging.getLogger(__name__)

IDLE_S = 1.0  # the PCM stops after this long without audio
DRIFT_SMOOTHING = 1 / 32  # EMA weight of one period's fill level (~0.3 s at 10 ms)
MAX_XRUN_RETRIES = 3


@dataclass(frozen=True)
class PlaybackStats:
    """Counters of a speaker since it was opened, in frames (samples per channel)."""

    written: int = 0  # handed to the device, silence included
    xruns: int = 0  # underruns recovered
    dropped: int = 0  # dropped from the queue because it was over its cap
    silence: int = 0  # silence written for want of audio (start cushions included)
    gaps: int = 0  # times audio ran out mid-stream and then resumed
    drift_dropped: int = 0  # samples removed to bring the fill level down
    drift_inserted: int = 0  # samples repeated to bring it up
    queued: int = 0  # in the queue now
    delay: int = 0  # in the queue and the device buffer, measured before each period
    wall_clock: bool = False  # the PCM has no clock of its own: paced by the wall clock


class SampleFifo:
    """A thread-safe queue of int16 frames, shape (n, channels), holding at most ``cap``.

    ``put`` (event loop) never blocks: beyond the cap the oldest frames are dropped.
    ``take`` (playback thread) waits for data up to a deadline.
    """

    def __init__(self, cap: int, channels: int) -> None:
        """An empty queue for ``channels``-channel frames, capped at ``cap`` frames."""
        self.cap = cap
        self.channels = channels
        self.dropped = 0
        self._chunks: list[Samples] = []
        self._level = 0
        self._in_flight = False
        self._closed = False
        self._changed = threading.Condition()

    @property
    def level(self) -> int:
        """Frames queued now."""
        return self._level

    def put(self, samples: Samples) -> None:
        """Queue ``samples``; frames beyond the cap go, oldest first (counted)."""
        if samples.shape[0] == 0:
            return
        with self._changed:
            if self._closed:
                return
            self._chunks.append(samples)
            self._level += samples.shape[0]
            excess = self._level - self.cap
            if excess > 0:
                self._pop(excess)
                self.dropped += excess
            self._changed.notify_all()

    def take(self, frames: int, timeout: float) -> Samples | None:
        """Up to ``frames`` frames once that many are queued or ``timeout`` s have passed.

        Fewer (possibly none) at the deadline; None once closed. What is taken still
        counts for ``wait_empty`` until ``settle()``.
        """
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._level >= frames, timeout)
            if self._closed:
                return None
            self._in_flight = True
            return self._pop(min(frames, self._level))

    def settle(self) -> None:
        """What ``take`` returned has been written to the device."""
        with self._changed:
            self._in_flight = False
            self._changed.notify_all()

    def wait_for_data(self) -> bool:
        """Block until something is queued (True) or the queue is closed (False)."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._level > 0)
            return not self._closed

    def wait_empty(self, timeout: float | None) -> bool:
        """Block until everything was written or the queue closed; False on timeout."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._closed or (self._level == 0 and not self._in_flight), timeout
            )

    def close(self) -> None:
        """Discard what is queued and wake every waiter for good."""
        with self._changed:
            self._closed = True
            self._chunks.clear()
            self._level = 0
            self._changed.notify_all()

    def _pop(self, frames: int) -> Samples:
        taken: list[Samples] = []
        need = frames
        while need:
            head = self._chunks[0]
            if head.shape[0] <= need:
                taken.append(self._chunks.pop(0))
                need -= head.shape[0]
            else:
                taken.append(head[:need])
                self._chunks[0] = head[need:]
                need = 0
        self._level -= frames
        if not taken:
            return np.zeros((0, self.channels), dtype=np.int16)
        return taken[0] if len(taken) == 1 else np.concatenate(taken)


class DriftCompensator:
    """Keeps the playback fill level (queued + in the device) within ``low``..``high``.

    The level is smoothed over ~30 periods, so the saw-tooth of 20 ms frames arriving
    does not trigger it. While the smoothed level is above the band one sample per
    period is dropped, below it one is repeated: the period is resampled by one sample,
    which is inaudible, unlike a dropped or an inserted period. A 100 ppm offset needs
    one such correction every ~200 periods at 48 kHz; up to one per period is possible.
    """

    def __init__(self, low: int, high: int) -> None:
        """A band of ``low``..``high`` frames."""
        self.low = low
        self.high = high
        self.dropped = 0
        self.inserted = 0
        self._smoothed: float | None = None

    def reset(self) -> None:
        """Forget the level history (the stream restarted)."""
        self._smoothed = None

    def observe(self, level: int) -> int:
        """Record one period's level: +1 to drop a sample, -1 to repeat one, 0 to do neither."""
        if self._smoothed is None:
            self._smoothed = float(level)
        else:
            self._smoothed += (level - self._smoothed) * DRIFT_SMOOTHING
        if self._smoothed > self.high:
            return 1
        if self._smoothed < self.low:
            return -1
        return 0

    def fit(self, chunk: Samples, frames: int) -> Samples:
        """``chunk`` resampled to ``frames`` frames (one more or one fewer), counted."""
        have = chunk.shape[0]
        if have == frames or have < 2:
            return chunk
        if have > frames:
            self.dropped += have - frames
        else:
            self.inserted += frames - have
        positions = np.linspace(0.0, have - 1.0, frames)
        source = np.arange(have, dtype=np.float64)
        columns = [np.interp(positions, source, chunk[:, ch]) for ch in range(chunk.shape[1])]
        return np.rint(np.stack(columns, axis=1)).astype(np.int16)


class PlaybackLoop:
    """The body of a speaker's thread: feeds ``pcm`` from ``fifo`` until ``stop``."""

    def __init__(
        self,
        pcm: Any,
        settings: PcmSettings,
        fifo: SampleFifo,
        stop: threading.Event,
        tap: Callable[[Samples], None],
    ) -> None:
        """A loop for an open PCM; ``tap`` sees every block written."""
        self._pcm = pcm
        self._settings = settings
        self._fifo = fifo
        self._stop = stop
        self._tap = tap
        self._drift = DriftCompensator(
            settings.buffer - settings.period, settings.buffer + fifo.cap // 2
        )
        self._virtual: VirtualPcm | None = None
        self._pcm_xruns = 0
        self._starving = False
        self.written = self.silence = self.gaps = self.delay = 0

    def stats(self) -> PlaybackStats:
        """A snapshot of the counters (read from the event loop)."""
        virtual_xruns = self._virtual.xruns if self._virtual is not None else 0
        return PlaybackStats(
            written=self.written,
            xruns=self._pcm_xruns + virtual_xruns,
            dropped=self._fifo.dropped,
            silence=self.silence,
            gaps=self.gaps,
            drift_dropped=self._drift.dropped,
            drift_inserted=self._drift.inserted,
            queued=self._fifo.level,
            delay=self.delay,
            wall_clock=self._virtual is not None,
        )

    def run(self) -> None:
        """Probe the clock, then play each stream of audio until the queue closes."""
        self._virtual = self._probe()
        if self._virtual is not None:
            _log.info("playback PCM has no clock of its own: paced by the wall clock")
        while self._fifo.wait_for_data() and not self._stop.is_set():
            self._drift.reset()
            cushion = self._settings.buffer - self._settings.period
            if not self._write(self._silence(cushion)):
                return
            self.silence += cushion
            if not self._play_until_idle():
                return
            self._idle()

    def _probe(self) -> VirtualPcm | None:
        """Write silence until the PCM proves it has a clock (a write blocked) or not."""
        settings, written = self._settings, 0
        start = time.monotonic()
        check = ClockCheck(settings.rate, settings.buffer, transferred=0, now=start)
        window = (check.limit + settings.period) / settings.rate
        while not self._stop.is_set():
            self._write_pcm(self._silence(settings.period))
            written += settings.period
            now = time.monotonic()
            if check.ahead(written, now) is not None:
                return VirtualPcm(settings.rate, settings.buffer, playback=True, level=0, now=now)
            if now - start > window:
                break
        self._pcm.drop()  # discard the probe: the first audio must not wait behind it
        return None

    def _play_until_idle(self) -> bool:
        """Feed the device until the queue stays empty for IDLE_S (True) or closing (False)."""
        period, rate = self._settings.period, self._settings.rate
        idle_after = max(self._settings.buffer, int(IDLE_S * rate))
        silent = 0
        while True:
            fill = self._fill()
            self.delay = fill + self._fifo.level
            want = period + self._drift.observe(self.delay)
            chunk = self._fifo.take(want, max(0.0, (fill - period / 2) / rate))
            if chunk is None:
                return False
            got = chunk.shape[0]
            if got < min(want, period):  # the queue ran dry: make up the period with silence
                if got == 0 and silent >= idle_after:
                    return True
                silent += period - got
                self.silence += period - got
                self._starving = True
                chunk = np.concatenate([chunk, self._silence(period - got)])
            else:
                silent = 0
                self._resumed()
                chunk = self._drift.fit(chunk, period)
            if not self._write(chunk):
                return False
            self._fifo.settle()

    def _resumed(self) -> None:
        if self._starving:
            self.gaps += 1
            self._starving = False

    def _fill(self) -> int:
        """Frames in the device buffer now."""
        if self._virtual is not None:
            return int(self._virtual.level(time.monotonic()))
        avail = int(self._pcm.avail())
        return 0 if avail < 0 else max(0, self._settings.buffer - avail)

    def _write(self, chunk: Samples) -> bool:
        """Write ``chunk`` once the device has room; False if stopping meanwhile."""
        frames = chunk.shape[0]
        virtual = self._virtual
        if virtual is not None and self._stop.wait(virtual.wait(frames, time.monotonic())):
            return False
        self._write_pcm(chunk)
        if virtual is not None:
            virtual.transfer(frames, time.monotonic())
        self.written += frames
        self._tap(chunk)
        return True

    def _write_pcm(self, chunk: Samples) -> None:
        data = chunk.tobytes()
        frame_bytes = 2 * self._settings.channels
        retries = 0
        while data:
            count = int(self._pcm.write(data))
            if count == -EPIPE and retries < MAX_XRUN_RETRIES:
                self._pcm_xruns += 1  # pyalsaaudio prepared the PCM again: write again
                retries += 1
                continue
            if count <= 0:
                raise HalError(f"write returned {count}")
            data = data[count * frame_bytes :]

    def _idle(self) -> None:
        """Stop the PCM after the audio ran out; the next write prepares it again."""
        self._starving = False
        if self._virtual is not None:
            self._virtual.stop(time.monotonic())
        else:
            self._pcm.drop()

    def _silence(self, frames: int) -> Samples:
        return np.zeros((frames, self._settings.channels), dtype=np.int16)
