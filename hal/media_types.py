"""Media formats shared by cameras, microphones and speakers, and real-time pacing.

The formats are frozen dataclasses validated on construction, so an invalid
format can never reach a device. ``RealtimePacer`` is the clock the simulated
sources use to hand out frames at the rate a real device would.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from hal.errors import HalError

MIN_VIDEO_SIDE = 16
MAX_VIDEO_SIDE = 4096
MAX_FPS = 120
MAX_CHANNELS = 2
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
MAX_FRAME_MS = 120


def _check_side(what: str, value: int) -> None:
    if not MIN_VIDEO_SIDE <= value <= MAX_VIDEO_SIDE or value % 2:
        raise HalError(
            f"video {what} must be an even number in {MIN_VIDEO_SIDE}..{MAX_VIDEO_SIDE},"
            f" got {value!r}"
        )


@dataclass(frozen=True)
class VideoFormat:
    """Frame size and rate of a video stream (yuv420p, so both sides are even)."""

    width: int = 640
    height: int = 480
    fps: int = 30

    def __post_init__(self) -> None:
        """Refuse sizes and rates no camera or encoder of ours can handle."""
        _check_side("width", self.width)
        _check_side("height", self.height)
        if not 1 <= self.fps <= MAX_FPS:
            raise HalError(f"video fps must be in 1..{MAX_FPS}, got {self.fps!r}")

    @property
    def frame_interval(self) -> float:
        """Seconds between two frames."""
        return 1.0 / self.fps


@dataclass(frozen=True)
class AudioFormat:
    """Sample rate, channel count and frame duration of an s16 audio stream."""

    sample_rate: int = 48000
    channels: int = 1
    frame_ms: int = 20

    def __post_init__(self) -> None:
        """Refuse formats whose frames would not hold a whole number of samples."""
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise HalError(
                f"audio sample_rate must be in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE},"
                f" got {self.sample_rate!r}"
            )
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise HalError(f"audio channels must be in 1..{MAX_CHANNELS}, got {self.channels!r}")
        if not 1 <= self.frame_ms <= MAX_FRAME_MS:
            raise HalError(f"audio frame_ms must be in 1..{MAX_FRAME_MS}, got {self.frame_ms!r}")
        if self.sample_rate * self.frame_ms % 1000:
            raise HalError(
                f"audio frame of {self.frame_ms} ms at {self.sample_rate} Hz"
                " is not a whole number of samples"
            )

    @property
    def samples_per_frame(self) -> int:
        """Samples per channel in one frame."""
        return self.sample_rate * self.frame_ms // 1000

    @property
    def layout(self) -> str:
        """The FFmpeg channel layout name ("mono" or "stereo")."""
        return "mono" if self.channels == 1 else "stereo"

    @property
    def frame_interval(self) -> float:
        """Seconds between two frames."""
        return self.frame_ms / 1000.0


class RealtimePacer:
    """Hands out frame deadlines on a real-time grid, like a capture device.

    The first tick is due at once; each later one is due one interval after
    the previous deadline, so sleep jitter does not accumulate. A reader that
    falls more than ``max_lag`` seconds behind loses the missed ticks, as a
    real device drops frames, instead of receiving a burst.
    """

    def __init__(self, max_lag: float) -> None:
        """Create a pacer that drops ticks once a reader is ``max_lag`` s late."""
        self._max_lag = max_lag
        self._origin: float | None = None
        self._due = 0.0

    def reset(self) -> None:
        """Start over: the next tick is due at once and is stream time 0."""
        self._origin = None

    async def tick(self, interval: float) -> float:
        """Wait for the next deadline and return it as seconds since the first tick."""
        now = time.monotonic()
        if self._origin is None:
            self._origin = self._due = now
            return 0.0
        due = self._due + interval
        late = now - due
        if late > self._max_lag:
            due += math.floor(late / interval) * interval
        if due > now:
            await asyncio.sleep(due - now)
        self._due = due
        return due - self._origin
