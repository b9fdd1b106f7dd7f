"""Mouth-to-ear audio latency on loopback through the real ALSA back-ends.

Run: ``.venv/bin/python bench/audio_latency.py [--seconds 20]``. Prints one JSON object.

The sender's microphone is an AlsaMicrophone on ALSA's ``file`` plugin (capture PCM on
a ``null`` slave, its samples read from a raw file this bench writes: silence with a
20 ms 1 kHz burst every 250 ms, each starting on a 20 ms frame boundary). Its frames go
through the echo canceller (webrtc-aec3, or none: two runs in the same process), Opus,
a real aiortc connection on 127.0.0.1 and the receiver's jitter buffer to an AlsaSpeaker
on a ``file`` playback PCM. Both PCMs are clockless and paced by the back-ends' virtual
devices at the nominal rate.

Per burst: from the moment the microphone back-end hands out the frame holding its first
sample (``AlsaMicrophone.read`` returns it) to the moment the speaker back-end writes
the first 10 ms block whose energy crosses a threshold (``AlsaSpeaker.on_render``).
Neither the capture buffer before the read nor the playback buffer after the write is
in that figure; the speaker's fill level (``stats().delay``), sampled during the run, is
reported beside it. Bursts not found at the speaker count as concealed/missing.

Drift: both virtual devices run on the same wall clock, so a live run has no clock
offset. The 100 ppm figure simulates AlsaSpeaker's drift compensation
(``hal.alsa_playback.DriftCompensator`` with the band PlaybackLoop gives it for the
default spec) fed 20 ms packets at a 100 ppm offset against 10 ms device periods, as
tests/hal/test_alsa_audio.py does with a smooth feed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from hal.alsa_audio import AlsaMicrophone, AlsaPcmSpec, AlsaSpeaker
from hal.alsa_pcm import file_pcms_config
from hal.alsa_playback import DriftCompensator
from hal.audio import Microphone
from hal.media_types import AudioFormat
from services.media.aec import make_echo_canceller
from services.media.echo_path import CancelledMicrophone
from services.media.ice import LOOPBACK
from services.media.session import MediaSession, MediaSettings
from services.media.tracks import MicrophoneSource

RATE = 48000
FMT = AudioFormat()  # 48 kHz mono, 20 ms frames
FRAME = FMT.samples_per_frame
BURST_EVERY = 12 * FRAME  # 240 ms: bursts are one frame long, on frame boundaries
BURST_LEN = FRAME
BURST_FREQ = 1000.0
BURST_LEVEL = 0.5  # of full scale
THRESHOLD_RMS = 0.05 * 32767  # a rendered block louder than this is part of a burst
MATCH_WINDOW_S = 0.2  # a burst must reach the speaker within this long
WARMUP_S = 1.0  # bursts handed out this early in the call are not counted
PLAYBACK_PCM, CAPTURE_PCM = "callbox_bench_play", "callbox_bench_capture"
TARGETS = {"median_ms": 40, "concealed_percent": 1.0, "drift_growth_ms_30min_100ppm": 20}


Samples = npt.NDArray[np.int16]


def capture_signal(seconds: float) -> tuple[Samples, list[int]]:
    """Silence with a tone burst every BURST_EVERY samples; the bursts' start positions."""
    total = int(seconds * RATE)
    signal = np.zeros(total, dtype=np.int16)
    n = np.arange(BURST_LEN)
    burst = np.rint(BURST_LEVEL * 32767 * np.sin(2 * math.pi * BURST_FREQ * n / RATE))
    starts = list(range(BURST_EVERY, total - BURST_LEN, BURST_EVERY))
    for start in starts:
        signal[start : start + BURST_LEN] = burst.astype(np.int16)
    return signal, starts


def write_asoundrc(directory: Path, signal: Samples) -> Path:
    """The capture input file, the asoundrc naming both PCMs; alsa-lib pointed at it."""
    infile, output = directory / "capture.raw", directory / "played.raw"
    signal.astype("<i2").tofile(infile)
    config = directory / "asoundrc"
    config.write_text(file_pcms_config(PLAYBACK_PCM, CAPTURE_PCM, output, infile))
    os.environ["ALSA_CONFIG_PATH"] = str(config)  # read by alsa-lib when a PCM opens
    return output


class TimedMicrophone(Microphone):
    """Records when each frame (by pts) is handed out by the wrapped back-end."""

    def __init__(self, inner: Microphone) -> None:
        self.name = inner.name
        self.inner = inner
        self.handed: dict[int, float] = {}

    async def open(self, fmt: AudioFormat) -> None:
        """Open the wrapped microphone."""
        await self.inner.open(fmt)

    async def read(self) -> av.AudioFrame:
        """The wrapped microphone's next frame, its hand-out time recorded."""
        frame = await self.inner.read()
        if frame.pts is not None:
            self.handed[int(frame.pts)] = time.monotonic()
        return frame

    async def close(self) -> None:
        """Close the wrapped microphone."""
        await self.inner.close()


class RenderLog:
    """The speaker's on_render tap: when each block was written, and how loud it was."""

    def __init__(self) -> None:
        self.blocks: list[tuple[float, float]] = []  # (time written, RMS)
        self._lock = threading.Lock()

    def __call__(self, chunk: Samples) -> None:
        """Note when the speaker wrote `chunk` and how loud it was (its RMS)."""
        rms = float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2))) if chunk.size else 0.0
        with self._lock:
            self.blocks.append((time.monotonic(), rms))

    def onsets(self) -> list[float]:
        """Times of the blocks that crossed the threshold after a quiet one."""
        with self._lock:
            blocks = list(self.blocks)
        found, loud = [], False
        for at, rms in blocks:
            if rms >= THRESHOLD_RMS and not loud:
                found.append(at)
            loud = rms >= THRESHOLD_RMS
        return found


def summary(values: list[float]) -> dict[str, float | int | None]:
    """Median, 95th percentile, min and max of ``values`` in ms (None when empty)."""
    if not values:
        return {"median": None, "p95": None, "min": None, "max": None, "n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median": round(statistics.median(ordered), 1),
        "p95": round(p95, 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
        "n": len(values),
    }


async def run_call(seconds: float, engine: str | None) -> dict[str, Any]:
    """One loopback call of ``seconds``; ``engine`` None runs without echo canceller."""
    signal, starts = capture_signal(seconds + WARMUP_S + 5.0)
    with tempfile.TemporaryDirectory(prefix="callbox-bench-audio-") as directory:
        output = write_asoundrc(Path(directory), signal)
        timed = TimedMicrophone(AlsaMicrophone("bench-mic", AlsaPcmSpec(pcm=CAPTURE_PCM)))
        canceller = None if engine is None else make_echo_canceller(RATE, engine)
        microphone: Microphone = (
            timed if canceller is None else CancelledMicrophone(timed, canceller)
        )
        source = MicrophoneSource(microphone, FMT)
        rendered = RenderLog()
        speaker = AlsaSpeaker("bench-speaker", AlsaPcmSpec(pcm=PLAYBACK_PCM), on_render=rendered)
        await speaker.open(FMT)
        settings = MediaSettings(video=False, ice=LOOPBACK)
        sender = MediaSession(
            settings, video_source=None, audio_source=source.shared, speaker=None, label="tx"
        )
        receiver = MediaSession(
            settings, video_source=None, audio_source=None, speaker=speaker, label="rx"
        )
        delays: list[tuple[float, int]] = []
        try:
            await sender.apply_answer(await receiver.accept_offer(await sender.create_offer()))
            await asyncio.wait_for(
                asyncio.gather(sender.connected.wait(), receiver.connected.wait()), 10
            )
            receiver.set_playback(True)
            sender.set_sending(audio=True, video=False)
            await asyncio.wait_for(receiver.first_audio.wait(), 10)
            end = time.monotonic() + seconds + WARMUP_S
            while time.monotonic() < end:
                await asyncio.sleep(0.05)
                delays.append((time.monotonic(), speaker.stats().delay))
            await asyncio.sleep(MATCH_WINDOW_S)  # the last bursts reach the speaker
            stats = speaker.stats()
            mic_stats = timed.inner.stats() if isinstance(timed.inner, AlsaMicrophone) else None
            sent, received = sender.audio_frames_sent, receiver.stats.audio_frames
        finally:
            await sender.close()
            await receiver.close()
            await source.close()
            await speaker.close()
            if canceller is not None:
                canceller.close()
        played_bytes = output.stat().st_size if output.exists() else 0
    return _figures(timed.handed, starts, rendered, delays, seconds) | {
        "echo_canceller": canceller.engine if canceller is not None else "off",
        "frames_sent": sent,
        "frames_received": received,
        "missing_frames_percent": round(100 * max(0, sent - received) / sent, 2) if sent else None,
        "speaker": {
            "gaps": stats.gaps,
            "xruns": stats.xruns,
            "dropped_from_queue": stats.dropped,
            "drift_dropped": stats.drift_dropped,
            "drift_inserted": stats.drift_inserted,
            "wall_clock_paced": stats.wall_clock,
            "played_to_file_s": round(played_bytes / 2 / RATE, 2),
        },
        "microphone_dropped_frames": mic_stats.dropped_frames if mic_stats else None,
    }


def _figures(
    handed: dict[int, float],
    starts: list[int],
    rendered: RenderLog,
    delays: list[tuple[float, int]],
    seconds: float,
) -> dict[str, Any]:
    """Match each handed-out burst to the first loud block written after it."""
    if not handed:
        return {"mouth_to_ear_ms": summary([]), "bursts": 0, "concealed_percent": None}
    first = min(handed.values())
    counted = [
        handed[s]
        for s in starts
        if s in handed and WARMUP_S <= handed[s] - first <= WARMUP_S + seconds
    ]
    onsets = rendered.onsets()
    latencies: list[float] = []
    for at in counted:
        hits = [o for o in onsets if at <= o < at + MATCH_WINDOW_S]
        if hits:
            latencies.append((hits[0] - at) * 1000)
    missing = len(counted) - len(latencies)
    window = [d for t, d in delays if t - first >= WARMUP_S]
    head = [d for t, d in delays if WARMUP_S <= t - first < WARMUP_S + 5]
    tail = [d for t, d in delays if t - first >= WARMUP_S + seconds - 5]
    return {
        "mouth_to_ear_ms": summary(latencies),
        "bursts": len(counted),
        "bursts_not_found": missing,
        "concealed_percent": round(100 * missing / len(counted), 2) if counted else None,
        "speaker_fill_ms": {
            "median": round(statistics.median(window) * 1000 / RATE, 1) if window else None,
            "first_5s_median": round(statistics.median(head) * 1000 / RATE, 1) if head else None,
            "last_5s_median": round(statistics.median(tail) * 1000 / RATE, 1) if tail else None,
        },
    }


def simulate_drift(ppm: float, minutes: float, spec: AlsaPcmSpec | None = None) -> dict[str, Any]:
    """The playback fill level under AlsaSpeaker's drift compensation, ``ppm`` offset.

    Packets of 20 ms (at the peer's clock) arrive every other 10 ms device period; the
    device buffer and queue are those PlaybackLoop sets up for ``spec``.
    """
    spec = spec or AlsaPcmSpec()
    period = spec.period_frames(RATE)
    buffer, cap = spec.periods * period, spec.queue_periods * period
    drift = DriftCompensator(buffer - period, buffer + cap // 2)  # as PlaybackLoop does
    packet = FRAME * (1 + ppm / 1e6)
    level = float(buffer)
    per_second = 1000 // spec.period_ms
    observed: list[float] = []  # what PlaybackStats.delay reports: before each period
    corrections = 0
    for index in range(int(minutes * 60 * per_second)):
        if index % 2 == 0:
            level += packet
        observed.append(level)
        adjust = drift.observe(round(level))
        corrections += abs(adjust)
        level -= period + adjust
    at_30s = statistics.mean(observed[29 * per_second : 31 * per_second])
    at_end = statistics.mean(observed[-2 * per_second :])
    return {
        "ppm": ppm,
        "minutes": minutes,
        "delay_at_30s_ms": round(at_30s * 1000 / RATE, 2),
        "delay_at_end_ms": round(at_end * 1000 / RATE, 2),
        "growth_ms": round((at_end - at_30s) * 1000 / RATE, 2),
        "min_delay_ms": round(min(observed) * 1000 / RATE, 2),
        "max_delay_ms": round(max(observed) * 1000 / RATE, 2),
        "corrections": corrections,
        "expected_corrections": round(abs(ppm) / 1e6 * RATE * minutes * 60),
    }


async def run(seconds: float) -> dict[str, Any]:
    """Both calls, the drift simulation, and the JSON report."""
    without = await run_call(seconds, None)
    with_aec = await run_call(seconds, "webrtc-aec3")
    drift = [simulate_drift(ppm, 30) for ppm in (100, -100)]
    medians = [r["mouth_to_ear_ms"]["median"] for r in (without, with_aec)]
    return {
        "seconds_per_run": seconds,
        "burst_every_ms": BURST_EVERY * 1000 // RATE,
        "aec_off": without,
        "aec_on": with_aec,
        "aec_added_median_ms": (round(medians[1] - medians[0], 1) if None not in medians else None),
        "drift": {
            "method": "simulated DriftCompensator with PlaybackLoop's band for the default"
            " spec (10 ms periods x3, queue 4 periods), 20 ms packets; the live runs have"
            " no clock offset (both PCMs paced by the same wall clock)",
            "runs": drift,
        },
        "targets": TARGETS,
    }


def main() -> None:
    """Parse arguments, run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(asyncio.run(run(args.seconds)), indent=2))


if __name__ == "__main__":
    main()
