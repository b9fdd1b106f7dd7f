"""Audio: ``Microphone`` and ``Speaker`` interfaces and their simulated back-ends.

``ToneMicrophone`` produces a phase-continuous sine, paced in real time like a capture
device; ``VoiceMicrophone`` a speech-like voiced signal the same way.
``RecordingSpeaker`` keeps what it was given to play (converted to its own format), so
tests can measure level and pitch of what a call delivered. Both say when they last
worked (``last_captured_at``, ``last_played_at``) and the microphone the level of its
last frame (``last_rms``): the simulator's meters.
"""

from __future__ import annotations

import abc
import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt

from hal.errors import DeviceUnavailableError, HalError
from hal.media_types import AudioFormat, RealtimePacer

FULL_SCALE = 32768.0

Samples = npt.NDArray[np.int16]


class Microphone(abc.ABC):
    """An audio source handing out s16 ``av.AudioFrame`` objects paced in real time."""

    name: str

    @abc.abstractmethod
    async def open(self, fmt: AudioFormat) -> None:
        """Start capturing in ``fmt``; raises DeviceUnavailableError if busy or absent."""

    @abc.abstractmethod
    async def read(self) -> av.AudioFrame:
        """Return the next frame once it is due (the first one at once).

        A frame holds ``fmt.samples_per_frame`` packed s16 samples per channel
        (mono by default), ``pts`` counted in samples, ``time_base`` 1/sample_rate.
        Raises DeviceUnavailableError if the microphone is not open or closes meanwhile.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop capturing; calling it again does nothing."""


class Speaker(abc.ABC):
    """An audio sink playing ``av.AudioFrame`` objects of any rate and layout.

    A back-end that can report exactly what reaches the device (after its own queueing,
    silence and drift corrections) sets ``has_render_tap`` and calls ``on_render`` with
    int16 blocks of shape (n, channels) at ``device_rate``: the echo canceller's best
    reference.
    """

    name: str
    has_render_tap = False
    on_render: Callable[[Samples], None] | None = None

    @property
    def device_rate(self) -> int:
        """The device's sample rate (meaningful with a render tap)."""
        return 0

    @abc.abstractmethod
    async def open(self, fmt: AudioFormat) -> None:
        """Start playback in ``fmt``; raises DeviceUnavailableError if busy or absent."""

    @abc.abstractmethod
    async def play(self, frame: av.AudioFrame) -> None:
        """Queue ``frame`` for playback without blocking the event loop."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop playback; calling it again does nothing."""


class ToneMicrophone(Microphone):
    """Simulated microphone: a continuous sine (``frequency_hz=0`` gives silence)."""

    def __init__(
        self,
        name: str,
        frequency_hz: float = 440.0,
        amplitude: float = 0.3,
        *,
        max_lag: float = 0.2,
    ) -> None:
        """Create a closed microphone; ``amplitude`` is a fraction of full scale."""
        if not frequency_hz >= 0.0:
            raise HalError(f"tone frequency must be >= 0 Hz, got {frequency_hz!r}")
        if not 0.0 <= amplitude <= 1.0:
            raise HalError(f"tone amplitude must be in 0..1, got {amplitude!r}")
        self.name = name
        self.frequency_hz = frequency_hz
        self.amplitude = amplitude
        self.frames_captured = 0
        self.last_rms = 0.0  # of the last frame captured, a fraction of full scale
        self.last_captured_at: float | None = None  # time.monotonic() of that frame
        self._format = AudioFormat()
        self._pacer = RealtimePacer(max_lag)
        self._lock = asyncio.Lock()
        self._is_open = False

    @property
    def format(self) -> AudioFormat:
        """The format frames are captured in."""
        return self._format

    async def open(self, fmt: AudioFormat) -> None:
        """Start capturing in ``fmt``; the first read returns at once."""
        if self._is_open:
            raise DeviceUnavailableError(f"microphone {self.name!r} is already open")
        if self.frequency_hz >= fmt.sample_rate / 2:
            raise HalError(
                f"a {self.frequency_hz} Hz tone cannot be sampled at {fmt.sample_rate} Hz"
            )
        self._format = fmt
        self._pacer.reset()
        self._is_open = True

    async def read(self) -> av.AudioFrame:
        """Return the next frame once it is due (the first one at once)."""
        async with self._lock:
            self._require_open()
            stream_time = await self._pacer.tick(self._format.frame_interval)
            self._require_open()
            return self._capture(round(stream_time * self._format.sample_rate))

    async def close(self) -> None:
        """Stop capturing; idempotent."""
        self._is_open = False

    def _require_open(self) -> None:
        if not self._is_open:
            raise DeviceUnavailableError(f"microphone {self.name!r} is not open")

    def _capture(self, first_sample: int) -> av.AudioFrame:
        fmt = self._format
        tone = self.samples(first_sample, fmt.samples_per_frame, fmt.sample_rate)
        packed = np.repeat(tone, fmt.channels) if fmt.channels > 1 else tone
        frame = av.AudioFrame.from_ndarray(packed.reshape(1, -1), format="s16", layout=fmt.layout)
        frame.sample_rate = fmt.sample_rate
        frame.pts = first_sample
        frame.time_base = Fraction(1, fmt.sample_rate)
        self.frames_captured += 1
        self.last_rms = _rms(tone)
        self.last_captured_at = time.monotonic()
        return frame

    def samples(self, first_sample: int, count: int, rate: int) -> Samples:
        """Mono samples ``first_sample`` to ``first_sample + count`` of the signal at ``rate``."""
        if self.frequency_hz == 0.0 or self.amplitude == 0.0:
            return np.zeros(count, dtype=np.int16)
        cycles_per_sample = self.frequency_hz / rate
        start_phase = (first_sample * cycles_per_sample) % 1.0
        phase = start_phase + cycles_per_sample * np.arange(count, dtype=np.float64)
        wave = self.amplitude * (FULL_SCALE - 1) * np.sin(2.0 * math.pi * phase)
        return np.rint(wave).astype(np.int16)


class VoiceMicrophone(ToneMicrophone):
    """Simulated microphone: a voiced, speech-like signal instead of a steady sine.

    A sine is a poor stand-in for a talker where the codec's behaviour matters: Opus's
    SILK voice-activity detector takes a steady tone for background noise after a moment
    and stops sending in-band FEC for it. This source is a harmonic series up to 4 kHz
    (amplitudes 1/k) on a fundamental of ``frequency_hz`` that glides +-15 % twice a
    second, under a syllable envelope (four a second, dipping to a quarter between them),
    so the encoder sees voiced speech. Deterministic: sample ``n`` is always the same.
    """

    PITCH_GLIDE = 0.15
    GLIDE_HZ = 0.5
    SYLLABLES_PER_S = 4.0
    ENVELOPE_FLOOR = 0.25
    TOP_HZ = 4000.0

    def __init__(
        self,
        name: str,
        frequency_hz: float = 150.0,
        amplitude: float = 0.3,
        *,
        max_lag: float = 0.2,
    ) -> None:
        """Create a closed microphone with a ``frequency_hz`` voice (the mean pitch)."""
        super().__init__(name, frequency_hz, amplitude, max_lag=max_lag)

    def samples(self, first_sample: int, count: int, rate: int) -> Samples:
        """Mono samples ``first_sample`` to ``first_sample + count`` of the voice at ``rate``."""
        if self.frequency_hz == 0.0 or self.amplitude == 0.0:
            return np.zeros(count, dtype=np.int16)
        t = (first_sample + np.arange(count, dtype=np.float64)) / rate
        glide = 2.0 * math.pi * self.GLIDE_HZ
        # the integral of the gliding pitch, so the phase stays continuous across frames
        cycles = self.frequency_hz * (t - self.PITCH_GLIDE * np.cos(glide * t) / glide)
        top = min(self.TOP_HZ, rate / 2.0)
        harmonics = max(1, int(top // (self.frequency_hz * (1.0 + self.PITCH_GLIDE))))
        wave = sum(np.sin(2.0 * math.pi * k * cycles) / k for k in range(1, harmonics + 1))
        floor = self.ENVELOPE_FLOOR
        envelope = floor + (1.0 - floor) * np.sin(math.pi * self.SYLLABLES_PER_S * t) ** 2
        peak = sum(1.0 / k for k in range(1, harmonics + 1))
        scaled = self.amplitude * (FULL_SCALE - 1) * envelope * np.asarray(wave) / peak
        samples: Samples = np.rint(scaled).astype(np.int16)
        return samples


class RecordingSpeaker(Speaker):
    """Simulated speaker that records what it plays, converted to its open format.

    Keeps the last ``history_s`` seconds; ``samples_played`` and
    ``frames_played`` count everything since construction or ``clear()``.
    """

    def __init__(self, name: str, *, history_s: float = 60.0) -> None:
        """Create a closed speaker remembering the last ``history_s`` seconds."""
        if not history_s > 0:
            raise HalError(f"speaker history must be > 0 s, got {history_s!r}")
        self.name = name
        self.samples_played = 0
        self.frames_played = 0
        self.last_played_at: float | None = None  # time.monotonic() of the last play()
        self._history_s = history_s
        self._format = AudioFormat()
        self._chunks: deque[Samples] = deque()
        self._stored = 0
        self._resampler: av.AudioResampler | None = None
        self._resampler_input: tuple[str, str, int] | None = None
        self._played = asyncio.Condition()
        self._is_open = False

    @property
    def format(self) -> AudioFormat:
        """The format samples are recorded in."""
        return self._format

    async def open(self, fmt: AudioFormat) -> None:
        """Start playback in ``fmt``; a format change discards the old recording."""
        if self._is_open:
            raise DeviceUnavailableError(f"speaker {self.name!r} is already open")
        if fmt != self._format:
            self.clear()
        self._format = fmt
        self._resampler = self._resampler_input = None
        self._is_open = True

    async def play(self, frame: av.AudioFrame) -> None:
        """Record ``frame``, resampled to the open format."""
        if not self._is_open:
            raise DeviceUnavailableError(f"speaker {self.name!r} is not open")
        for samples in self._convert(frame):
            self._store(samples)
        self.frames_played += 1
        self.last_played_at = time.monotonic()
        async with self._played:
            self._played.notify_all()

    async def close(self) -> None:
        """Stop playback; the recording stays available. Idempotent."""
        self._is_open = False

    def clear(self) -> None:
        """Forget the recording and reset both counters."""
        self._chunks.clear()
        self._stored = 0
        self.samples_played = 0
        self.frames_played = 0

    def recorded(self) -> Samples:
        """The recorded int16 samples: shape (n,) when mono, (n, channels) otherwise."""
        return self._tail(None)

    def rms(self, last_ms: int | None = None) -> float:
        """RMS level of the recording (or its last ``last_ms``) as a fraction of full scale."""
        return _rms(self._tail(last_ms))

    def dominant_frequency(self, last_ms: int) -> float:
        """Frequency in Hz of the strongest tone in the last ``last_ms``; 0.0 if silent."""
        samples = self._tail(last_ms).astype(np.float64)
        mono = samples.mean(axis=1) if samples.ndim == 2 else samples
        if mono.size < 4 or not np.any(mono):
            return 0.0
        spectrum = np.abs(np.fft.rfft(mono * np.hanning(mono.size)))
        spectrum[0] = 0.0
        peak = int(np.argmax(spectrum))
        return (peak + _peak_offset(spectrum, peak)) * self._format.sample_rate / mono.size

    async def wait_for_samples(self, n: int, timeout: float) -> None:
        """Wait until ``samples_played >= n``; raises TimeoutError after ``timeout`` s."""
        async with asyncio.timeout(timeout), self._played:
            await self._played.wait_for(lambda: self.samples_played >= n)

    def _convert(self, frame: av.AudioFrame) -> list[Samples]:
        fmt = self._format
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key == ("s16", fmt.layout, fmt.sample_rate):
            return [_to_samples(frame, fmt.channels)]
        try:
            if self._resampler is None or key != self._resampler_input:
                self._resampler = av.AudioResampler("s16", fmt.layout, fmt.sample_rate)
                self._resampler_input = key
            converted = self._resampler.resample(frame)
        except (ValueError, av.FFmpegError) as err:
            raise HalError(f"speaker {self.name!r} cannot play a {key} frame: {err}") from err
        return [_to_samples(out, fmt.channels) for out in converted]

    def _store(self, samples: Samples) -> None:
        if samples.shape[0] == 0:
            return
        self._chunks.append(samples)
        self._stored += samples.shape[0]
        self.samples_played += samples.shape[0]
        limit = math.ceil(self._history_s * self._format.sample_rate)
        while self._stored - self._chunks[0].shape[0] >= limit:
            self._stored -= self._chunks.popleft().shape[0]

    def _tail(self, last_ms: int | None) -> Samples:
        channels = self._format.channels
        wanted = self._stored if last_ms is None else last_ms * self._format.sample_rate // 1000
        picked: list[Samples] = []
        count = 0
        for chunk in reversed(self._chunks):
            if count >= wanted:
                break
            picked.append(chunk)
            count += chunk.shape[0]
        if not picked:
            return np.zeros((0, channels) if channels > 1 else 0, dtype=np.int16)
        joined = np.concatenate(picked[::-1])[max(0, count - wanted) :]
        return joined[:, 0] if channels == 1 else joined


def _rms(samples: Samples) -> float:
    """RMS level of int16 ``samples`` as a fraction of full scale (0.0 when empty)."""
    if samples.size == 0:
        return 0.0
    scaled = samples.astype(np.float64) / FULL_SCALE
    return float(np.sqrt(np.mean(scaled * scaled)))


def _to_samples(frame: av.AudioFrame, channels: int) -> Samples:
    packed = frame.to_ndarray().astype(np.int16, copy=False)
    return packed.reshape(-1, channels).copy()


def _peak_offset(spectrum: npt.NDArray[np.float64], peak: int) -> float:
    """Sub-bin offset of a spectral peak by parabolic fit on log magnitudes."""
    if not 0 < peak < spectrum.size - 1:
        return 0.0
    left, centre, right = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
    denominator = left - 2.0 * centre + right
    return 0.0 if denominator == 0.0 else float(0.5 * (left - right) / denominator)
