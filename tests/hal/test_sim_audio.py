"""The simulated microphone and speaker: tones, resampling, waiting, history."""

from __future__ import annotations

import asyncio
import math
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from hal.audio import RecordingSpeaker, ToneMicrophone, VoiceMicrophone
from hal.errors import DeviceUnavailableError, HalError
from hal.media_types import AudioFormat


def _stereo_tone(frequency: float, frames: int, amplitude: float = 0.3) -> list[av.AudioFrame]:
    """Frames as aiortc's Opus decoder yields them: 48 kHz packed stereo s16, 20 ms."""
    out = []
    for index in range(frames):
        n = np.arange(index * 960, (index + 1) * 960)
        wave = np.rint(amplitude * 32767 * np.sin(2 * math.pi * frequency * n / 48000))
        packed = np.repeat(wave.astype(np.int16), 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(packed, format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, index * 960, Fraction(1, 48000)
        out.append(frame)
    return out


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def _frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum[1:]) + 1) * rate / samples.size


async def test_tone_microphone_gives_a_paced_continuous_sine() -> None:
    mic = ToneMicrophone("main", frequency_hz=440.0, amplitude=0.3, max_lag=5.0)
    await mic.open(AudioFormat())
    start = time.monotonic()
    frames = [await mic.read() for _ in range(50)]
    assert time.monotonic() - start >= 0.9
    assert [frame.pts for frame in frames] == [960 * i for i in range(50)]
    assert all(frame.time_base == Fraction(1, 48000) for frame in frames)
    assert {(f.format.name, f.layout.name, f.samples) for f in frames} == {("s16", "mono", 960)}
    samples = np.concatenate([frame.to_ndarray()[0] for frame in frames]).astype(np.float64)
    assert abs(_frequency(samples, 48000) - 440.0) <= 2.0
    assert np.max(np.abs(samples)) == pytest.approx(0.3 * 32767, abs=2)
    biggest_step = 0.3 * 32767 * 2 * math.pi * 440 / 48000
    assert np.max(np.abs(np.diff(samples))) <= biggest_step + 2  # no jump between frames
    assert mic.frames_captured == 50


async def test_voice_microphone_speaks_in_continuous_syllables() -> None:
    mic = VoiceMicrophone("main", frequency_hz=150.0, amplitude=0.3, max_lag=5.0)
    await mic.open(AudioFormat())
    frames = [await mic.read() for _ in range(50)]
    assert [frame.pts for frame in frames] == [960 * i for i in range(50)]
    samples = np.concatenate([frame.to_ndarray()[0] for frame in frames])
    assert np.array_equal(samples, mic.samples(0, 50 * 960, 48000)), "deterministic"
    assert np.max(np.abs(samples.astype(np.float64))) <= 0.3 * 32767 + 1
    fine = np.abs(np.diff(samples.astype(np.float64)))
    assert np.max(fine) < 0.3 * 32767 / 4, "no jump between frames"
    loudness = [_rms(samples[i : i + 2400]) for i in range(0, samples.size, 2400)]
    assert max(loudness) > 2.5 * min(loudness), "syllables: the level rises and falls"
    assert 100.0 <= _frequency(samples.astype(np.float64)[:9600], 48000) <= 200.0


async def test_silent_and_stereo_microphones() -> None:
    silent = ToneMicrophone("main", frequency_hz=0)
    await silent.open(AudioFormat())
    assert not np.any((await silent.read()).to_ndarray())
    stereo = ToneMicrophone("main")
    await stereo.open(AudioFormat(16000, 2, 10))
    frame = await stereo.read()
    assert (frame.sample_rate, frame.layout.name, frame.samples) == (16000, "stereo", 160)


async def test_microphone_refuses_bad_use() -> None:
    with pytest.raises(HalError, match="amplitude"):
        ToneMicrophone("main", amplitude=1.5)
    mic = ToneMicrophone("main", frequency_hz=5000.0)
    with pytest.raises(HalError, match="5000"):
        await mic.open(AudioFormat(8000))
    with pytest.raises(DeviceUnavailableError, match="not open"):
        await mic.read()
    await mic.open(AudioFormat())
    await mic.close()
    await mic.close()


async def test_speaker_downmixes_opus_style_stereo_to_mono() -> None:
    speaker = RecordingSpeaker("handset")
    await speaker.open(AudioFormat())
    for frame in _stereo_tone(1000.0, 25):
        await speaker.play(frame)
    await speaker.wait_for_samples(24000, timeout=1.0)
    recorded = speaker.recorded()
    assert recorded.dtype == np.int16 and recorded.ndim == 1
    assert speaker.frames_played == 25
    assert speaker.samples_played == recorded.size == 24000
    assert abs(speaker.dominant_frequency(400) - 1000.0) <= 2.0
    assert speaker.rms(200) == pytest.approx(0.3 / math.sqrt(2), rel=0.02)


async def test_speaker_resamples_to_its_own_rate() -> None:
    speaker = RecordingSpeaker("speaker")
    await speaker.open(AudioFormat(16000, 1, 20))
    for frame in _stereo_tone(700.0, 50):
        await speaker.play(frame)
    assert abs(speaker.samples_played - 16000) <= 320  # the resampler may hold back a little
    assert abs(speaker.dominant_frequency(500) - 700.0) <= 2.0


async def test_wait_for_samples_times_out_or_wakes_on_play() -> None:
    speaker = RecordingSpeaker("speaker")
    await speaker.open(AudioFormat())
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        await speaker.wait_for_samples(1, timeout=0.05)
    assert 0.04 <= time.monotonic() - start < 0.5

    async def play_later() -> None:
        await asyncio.sleep(0.05)
        for frame in _stereo_tone(440.0, 3):
            await speaker.play(frame)

    player = asyncio.create_task(play_later())
    await speaker.wait_for_samples(2880, timeout=2.0)
    await player
    assert speaker.samples_played == 2880


async def test_history_is_bounded_and_clear_resets() -> None:
    speaker = RecordingSpeaker("speaker", history_s=0.1)
    with pytest.raises(DeviceUnavailableError, match="'speaker' is not open"):
        await speaker.play(_stereo_tone(440.0, 1)[0])
    await speaker.open(AudioFormat())
    for frame in _stereo_tone(440.0, 50):
        await speaker.play(frame)
    assert speaker.samples_played == 48000
    assert 4800 <= speaker.recorded().size <= 4800 + 960
    speaker.clear()
    assert (speaker.samples_played, speaker.frames_played, speaker.recorded().size) == (0, 0, 0)
    assert speaker.rms() == 0.0
    assert speaker.dominant_frequency(100) == 0.0
    await speaker.close()
    await speaker.close()


@pytest.mark.parametrize(
    ("rate", "channels", "frame_ms"), [(4000, 1, 20), (48000, 3, 20), (44100, 1, 15), (8000, 1, 0)]
)
def test_bad_audio_formats_are_refused(rate: int, channels: int, frame_ms: int) -> None:
    with pytest.raises(HalError, match="audio"):
        AudioFormat(rate, channels, frame_ms)


def test_samples_per_frame() -> None:
    assert AudioFormat().samples_per_frame == 960
    assert AudioFormat(16000, 1, 20).samples_per_frame == 320
    assert AudioFormat(44100, 2, 10).samples_per_frame == 441


async def test_level_hooks_say_when_and_how_loud() -> None:
    """What the simulator's meters read: the last frame's level and when it came."""
    mic = ToneMicrophone("main", amplitude=0.3)
    assert mic.last_captured_at is None and mic.last_rms == 0.0
    await mic.open(AudioFormat())
    before = time.monotonic()
    await mic.read()
    assert mic.last_captured_at is not None and mic.last_captured_at >= before
    assert mic.last_rms == pytest.approx(0.3 / math.sqrt(2), rel=0.01)  # a sine's RMS
    speaker = RecordingSpeaker("speaker")
    await speaker.open(AudioFormat())
    assert speaker.last_played_at is None
    await speaker.play(_stereo_tone(440.0, 1)[0])
    assert speaker.last_played_at is not None and speaker.last_played_at >= before
    assert speaker.rms(20) == pytest.approx(0.3 / math.sqrt(2), rel=0.02)
