"""Call-progress tones played on a speaker: ringback, busy and the ringtone.

Patterns follow ETSI TR 101 041 (425 Hz; ringback 1 s on / 4 s off, busy 0.5 s on /
0.5 s off). The player paces itself in real time, since a real ALSA speaker takes
frames at the sound card's rate while a recording speaker takes them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np

from hal.audio import Speaker
from hal.errors import HalError
from hal.media_types import AudioFormat, RealtimePacer

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TonePattern:
    """A cadence: a frequency and alternating on/off durations in seconds."""

    name: str
    frequency_hz: float
    cadence_s: tuple[float, ...]


RINGBACK = TonePattern("ringback", 425.0, (1.0, 4.0))
BUSY = TonePattern("busy", 425.0, (0.5, 0.5))
RINGTONE = TonePattern("ringtone", 880.0, (0.4, 0.2, 0.4, 2.0))


def tone_frames(
    pattern: TonePattern, fmt: AudioFormat, amplitude: float = 0.25
) -> Iterator[av.AudioFrame]:
    """One full cycle of ``pattern`` as s16 mono frames of ``fmt``, made one at a time.

    Lazily, so starting a tone costs one frame's work: a ringback cycle is 250 frames,
    and making them all at once would hold up the call being set up at that moment.
    """
    n = fmt.samples_per_frame
    silence = np.zeros(n)
    phase = 0
    for index, duration in enumerate(pattern.cadence_s):
        on = index % 2 == 0
        for _ in range(round(duration * 1000 / fmt.frame_ms)):
            if on:
                t = (np.arange(n) + phase) / fmt.sample_rate
                wave = np.sin(2 * np.pi * pattern.frequency_hz * t) * amplitude
            else:
                wave = silence
            phase += n
            samples = (wave * 32767).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate = fmt.sample_rate
            frame.time_base = fractions.Fraction(1, fmt.sample_rate)
            yield frame


class TonePlayer:
    """Plays one tone pattern at a time on a speaker, looping, until stopped."""

    def __init__(self, speaker: Speaker, fmt: AudioFormat | None = None) -> None:
        self.speaker = speaker
        self.format = fmt or AudioFormat()
        self.playing: TonePattern | None = None
        self._task: asyncio.Task[None] | None = None

    async def play(self, pattern: TonePattern, loops: int = 0) -> None:
        """Start ``pattern`` (``loops`` cycles, 0 = until stopped), replacing any other tone."""
        await self.stop()
        self.playing = pattern
        self._task = asyncio.create_task(self._run(pattern, loops), name=f"tone-{pattern.name}")

    async def _run(self, pattern: TonePattern, loops: int) -> None:
        pacer = RealtimePacer(max_lag=0.2)
        interval = self.format.frame_ms / 1000
        cycle = 0
        try:
            while loops == 0 or cycle < loops:
                for frame in tone_frames(pattern, self.format):
                    await pacer.tick(interval)
                    await self.speaker.play(frame)
                cycle += 1
        except HalError as err:
            _log.error(
                "tone %s stopped: speaker %s failed: %s", pattern.name, self.speaker.name, err
            )
        finally:
            self.playing = None

    async def stop(self) -> None:
        """Stop the tone now; safe when none plays."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.playing = None
