"""Echo canceller figures: ERLE per echo delay, convergence, double talk, CPU.

Run: ``.venv/bin/python bench/aec.py [--rate 48000] [--delays 0,10,20,50,100,150,200]``.
Prints one JSON object.

The far end talks (espeak-ng if installed, else noise shaped like speech) through a
simulated speaker into the microphone: an echo path with a delay the canceller is not
told, a 30 ms reverberation tail and a little microphone noise. The speaker is linear, or
clips the loudest peaks ("nonlinear"). The near end is silent for the first
``--single-talk`` seconds, then a different talker speaks over the far end (double talk).
Every engine that loads here runs on the same signals, with ``none`` as the baseline.

The delay is from the block handed to ``process_render`` to its echo in the block handed
to ``process_capture`` (both handed over together). On a device the reference is tapped
where frames go to the speaker, so this delay includes at least the playback buffer and
one capture period (>= 20 ms with 10 ms periods); 0 ms is a stress point, not a device.

Figures per engine, path and delay:

- ``erle_db``: echo return loss enhancement, 10 log10(mic power / output power) over the
  10 ms blocks where the echo is active, from 2 s to the end of single talk;
- ``convergence_s``: the end of the first 250 ms window from which every window of
  single talk keeps an ERLE of at least ``--converged-db`` (None: never, or for < 1 s);
- ``near_end_attenuation_db``: how much quieter the near-end talker comes out during
  double talk (talker ``--ser-db`` above the echo): -20 log10 of the least-squares gain
  of the clean near-end speech in the output (the figure held against the target);
- ``near_end_level_drop_db``: the same loss read as a level, near-end power over output
  power; residual echo counts as speech here, so it reads low (negative for ``none``).

Per engine: ``cpu_ms_per_s``, process CPU per second of audio (render + capture calls,
median of the runs; ``none`` is the cost of the loop itself), and ``tones_erle_db``: ERLE
with our own ringback, busy and ringtone (services/media/tones.py) as the far end at
100 ms delay, since the reference includes what the device itself plays.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from hal.media_types import AudioFormat
from services.media.aec import BLOCK_MS, EchoCanceller, available_engines, make_echo_canceller
from services.media.errors import MediaError
from services.media.tones import BUSY, RINGBACK, RINGTONE, TonePattern, tone_frames

Signal = npt.NDArray[np.float64]

FAR_TEXT = (
    "Hello, this is the delivery service. I have a parcel for flat number four. "
    "Could you open the door for me please? It is quite heavy, so I will bring it up "
    "the stairs. Shall I leave it in front of your door if nobody answers? "
)
NEAR_TEXT = (
    "Yes, good morning. Please come in, the lift is on the left side of the hall. "
    "I am on the third floor, the door with the green mat. "
)
TARGETS = {"erle_linear_db": 40.0, "erle_nonlinear_db": 30.0}
TARGETS |= {"near_end_attenuation_db": 3.0, "convergence_s": 2.0}
WINDOW_S = 0.25
TONES = (RINGBACK, BUSY, RINGTONE)
MEASURE_FROM_S = 2.0


def espeak(text: str, voice: str, rate: int) -> Signal | None:
    """``text`` spoken by espeak-ng at ``rate`` Hz in [-1, 1], or None without espeak-ng."""
    if shutil.which("espeak-ng") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
        with wave.open(str(path)) as wav:
            source_rate = wav.getframerate()
            raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    return resample(raw, source_rate, rate).astype(np.float64) / 32768.0


def resample(samples: npt.NDArray[np.int16], source: int, target: int) -> npt.NDArray[np.int16]:
    """Mono s16 ``samples`` from ``source`` Hz to ``target`` Hz with FFmpeg's resampler."""
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = source
    resampler = av.AudioResampler("s16", "mono", target)
    frames = [*resampler.resample(frame), *resampler.resample(None)]
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


def shaped_noise(seconds: float, rate: int, seed: int) -> Signal:
    """Noise with a speech-like spectrum and syllable/word envelope (no espeak-ng)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    shape = np.where(freqs < 300, freqs / 300, 1.0) / np.sqrt(1 + (freqs / 800) ** 2)
    noise = np.fft.irfft(spectrum * shape * (freqs < 7000), n)
    t = np.arange(n) / rate
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))
    words = np.repeat(rng.random(int(seconds * 3) + 1) > 0.25, rate // 3 + 1)[:n]
    signal: Signal = noise * syllables * words
    return signal / float(np.max(np.abs(signal)))


def talker(text: str, voice: str, seconds: float, rate: int, seed: int) -> Signal:
    """``seconds`` of one talker at ``rate``, peak 1: repeated espeak-ng speech or noise."""
    speech = espeak(text, voice, rate)
    if speech is None:
        return shaped_noise(seconds, rate, seed)
    gap = np.zeros(int(0.3 * rate))
    reps = int(seconds * rate / (speech.size + gap.size)) + 1
    looped: Signal = np.tile(np.concatenate([speech, gap]), reps)[: int(seconds * rate)]
    return looped / float(np.max(np.abs(looped)))


def tone(pattern: TonePattern, seconds: float, rate: int) -> Signal:
    """One of our call-progress tones as the speaker plays it, ``seconds`` long."""
    cycle = np.concatenate(
        [f.to_ndarray().reshape(-1) for f in tone_frames(pattern, AudioFormat(rate))]
    ).astype(np.float64)
    return np.tile(cycle, int(seconds * rate / cycle.size) + 1)[: int(seconds * rate)] / 32768


def echo_path(rate: int, delay_ms: int, seed: int) -> Signal:
    """Impulse response: ``delay_ms`` of air and buffers, then a 30 ms decaying tail."""
    rng = np.random.default_rng(seed)
    tail = int(0.030 * rate)
    decay = np.exp(-6.9 * np.arange(tail) / tail)  # -60 dB over 30 ms
    taps = rng.standard_normal(tail) * decay * 0.25
    taps[0] = 1.0
    return np.concatenate([np.zeros(delay_ms * rate // 1000), taps])


def convolve(x: Signal, h: Signal) -> Signal:
    """``x`` filtered by ``h``, same length as ``x`` (FFT convolution)."""
    size = 1 << int(np.ceil(np.log2(x.size + h.size)))
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: x.size]


def to_s16(x: Signal) -> npt.NDArray[np.int16]:
    """[-1, 1] floats to int16 with saturation."""
    return np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16)


def build(engine: str, rate: int) -> EchoCanceller:
    """A canceller of exactly ``engine``: the factory would fall back to another one."""
    try:
        canceller = make_echo_canceller(rate, prefer=engine)
    except MediaError as err:
        raise SystemExit(str(err)) from err
    if canceller.engine != engine:
        canceller.close()
        raise SystemExit(f"echo canceller {engine} does not load here")
    return canceller


def run_engine(
    canceller: EchoCanceller, far: npt.NDArray[np.int16], mic: npt.NDArray[np.int16]
) -> tuple[Signal, float]:
    """The canceller's output for ``mic`` with ``far`` as reference, and CPU seconds used."""
    n = canceller.block_size
    out = np.zeros(mic.size, dtype=np.int16)
    start = time.process_time()
    for i in range(0, mic.size - n + 1, n):
        canceller.process_render(far[i : i + n])
        out[i : i + n] = canceller.process_capture(mic[i : i + n])
    return out.astype(np.float64) / 32768, time.process_time() - start


def block_power(x: Signal, n: int) -> Signal:
    """Mean power of each ``n``-sample block of ``x``."""
    blocks = x[: x.size // n * n].reshape(-1, n)
    power: Signal = np.mean(blocks * blocks, axis=1)
    return power


def erle_db(echo_mic: Signal, out: Signal, active: npt.NDArray[np.bool_]) -> float:
    """10 log10(mic power / output power) over the ``active`` blocks."""
    mic_power = float(np.sum(echo_mic[active]))
    return round(float(10 * np.log10(mic_power / max(float(np.sum(out[active])), 1e-20))), 1)


def convergence_s(
    mic_p: Signal, out_p: Signal, active: npt.NDArray[np.bool_], threshold_db: float
) -> float | None:
    """End of the first 250 ms window from which every window keeps ERLE >= threshold.

    Windows with echo in under a quarter of their blocks (speech pauses) are not judged.
    None when the canceller never gets there, or holds it for less than a second.
    """
    per_window = int(WINDOW_S * 1000 / BLOCK_MS)
    judged: list[tuple[float, bool]] = []
    for start in range(0, mic_p.size - per_window + 1, per_window):
        window = slice(start, start + per_window)
        if active[window].sum() >= per_window // 4:
            erle = erle_db(mic_p[window], out_p[window], active[window])
            judged.append(((start + per_window) * BLOCK_MS / 1000, erle >= threshold_db))
    held = int(1.0 / WINDOW_S)
    for index, (end_s, _) in enumerate(judged[: len(judged) - held + 1]):
        if all(ok for _, ok in judged[index:]):
            return round(end_s, 2)
    return None


def near_end_loss_db(near: Signal, out: Signal, rate: int) -> tuple[float, float]:
    """How much quieter the near-end talker comes out, over the blocks where it talks.

    Two readings, both at the output's lag (the engines delay it by up to ~15 ms):
    -20 log10 of the least-squares gain of ``near`` in ``out`` (residual echo and noise
    are uncorrelated with ``near``, so they do not count; a gain that dips and recovers
    counts by its mean), and the level drop, 10 log10(near power / output power), which
    is the loss as a level meter sees it but counts residual echo as near-end speech.
    """
    n = rate * BLOCK_MS // 1000
    lags = range(0, rate // 25)
    lag = lags[int(np.argmax([np.dot(out[lag:], near[: near.size - lag]) for lag in lags]))]
    delayed = np.concatenate([np.zeros(lag), near[: near.size - lag]])
    active = np.repeat(block_power(delayed, n) > 1e-5, n)
    ref, got = delayed[: active.size][active], out[: active.size][active]
    gain = float(np.dot(got, ref) / np.dot(ref, ref))
    projected = float(-20 * np.log10(max(gain, 1e-6)))
    level = float(10 * np.log10(np.dot(ref, ref) / max(float(np.dot(got, got)), 1e-20)))
    return round(projected, 1), round(level, 1)


class Scene:
    """The signals of one run: reference, microphone parts, phase boundaries."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.rate: int = args.rate
        self.seconds = args.single_talk + args.double_talk
        self.split = int(args.single_talk * self.rate)
        self.far = talker(FAR_TEXT, "en-us", self.seconds, self.rate, seed=1) * 0.5
        near = talker(NEAR_TEXT, "en-gb+f3", args.double_talk, self.rate, seed=2)
        self.near = np.concatenate([np.zeros(self.split), near])
        self.noise = np.random.default_rng(3).standard_normal(self.far.size) * 10 ** (-70 / 20)
        self.clip = args.clip
        self.ser_db: float = args.ser_db
        self.signal = "espeak-ng" if shutil.which("espeak-ng") else "shaped-noise"

    def echo(self, delay_ms: int, nonlinear: bool, far: Signal | None = None) -> Signal:
        """What the microphone hears of the speaker (plus its own noise)."""
        played = self.far if far is None else far
        if nonlinear:
            limit = self.clip * np.max(np.abs(played))
            played = np.clip(played, -limit, limit)
        echo = convolve(played, echo_path(self.rate, delay_ms, seed=4)) * 0.7
        return echo + self.noise[: echo.size]

    def near_gain(self, echo: Signal) -> float:
        """Scale giving the near-end talker ``ser_db`` more power than the echo."""
        n = self.rate * BLOCK_MS // 1000
        near_p, echo_p = block_power(self.near, n), block_power(echo, n)
        mask = near_p > 1e-5
        power_ratio = np.mean(echo_p[mask]) / np.mean(near_p[mask]) * 10 ** (self.ser_db / 10)
        return float(np.sqrt(power_ratio))


def measure(
    scene: Scene, engine: str, delay_ms: int, nonlinear: bool, threshold_db: float
) -> tuple[dict[str, Any], float]:
    """One run of ``engine``: its figures and its CPU ms per second of audio."""
    rate, split, n = scene.rate, scene.split, scene.rate * BLOCK_MS // 1000
    echo = scene.echo(delay_ms, nonlinear)
    near = scene.near * scene.near_gain(echo)
    canceller = build(engine, rate)
    out, cpu = run_engine(canceller, to_s16(scene.far), to_s16(echo + near))
    canceller.close()
    mic_p, out_p = block_power(echo[:split], n), block_power(out[:split], n)
    active = mic_p > np.max(mic_p) * 1e-4
    first = int(MEASURE_FROM_S * 1000 / BLOCK_MS)
    attenuation, level_drop = near_end_loss_db(near[split:], out[split:], rate)
    figures = {
        "erle_db": erle_db(mic_p[first:], out_p[first:], active[first:]),
        "convergence_s": convergence_s(mic_p, out_p, active, threshold_db),
        "near_end_attenuation_db": attenuation,
        "near_end_level_drop_db": level_drop,
    }
    return figures, cpu * 1000 / scene.seconds


def tone_erle(scene: Scene, engine: str, pattern: TonePattern) -> float:
    """ERLE with ``pattern`` as the far end, 100 ms delay, linear path, after 2 s."""
    rate, n = scene.rate, scene.rate * BLOCK_MS // 1000
    played = tone(pattern, scene.split / rate, rate)
    echo = scene.echo(100, nonlinear=False, far=played)
    canceller = build(engine, rate)
    out, _ = run_engine(canceller, to_s16(played), to_s16(echo))
    canceller.close()
    mic_p, out_p = block_power(echo, n), block_power(out, n)
    first = int(MEASURE_FROM_S * 1000 / BLOCK_MS)
    active = mic_p > np.max(mic_p) * 1e-4
    return erle_db(mic_p[first:], out_p[first:], active[first:])


def bench_engine(
    scene: Scene, engine: str, delays: list[int], threshold_db: float
) -> dict[str, Any]:
    """Every delay on both speaker paths for one engine, with a summary against targets."""
    result: dict[str, Any] = {}
    cpu: list[float] = []
    for path, nonlinear in (("linear", False), ("nonlinear", True)):
        result[path] = {}
        for delay in delays:
            figures, cpu_ms = measure(scene, engine, delay, nonlinear, threshold_db)
            result[path][f"{delay}ms"] = figures
            cpu.append(cpu_ms)
    result["tones_erle_db"] = {p.name: tone_erle(scene, engine, p) for p in TONES}
    result["cpu_ms_per_s"] = round(statistics.median(cpu), 2)
    result["summary"] = summarize(result)
    return result


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Worst case over delays of each figure, and whether it meets the issue's target."""
    runs = [*result["linear"].values(), *result["nonlinear"].values()]
    convergence = [r["convergence_s"] for r in runs]
    worst = {
        "erle_linear_db": min(r["erle_db"] for r in result["linear"].values()),
        "erle_nonlinear_db": min(r["erle_db"] for r in result["nonlinear"].values()),
        "near_end_attenuation_db": max(r["near_end_attenuation_db"] for r in runs),
        "near_end_level_drop_db": max(r["near_end_level_drop_db"] for r in runs),
        "convergence_s": None if None in convergence else max(convergence),
    }
    at_most = ("near_end_attenuation_db", "convergence_s")
    meets = {}
    for key, target in TARGETS.items():
        value = worst[key]
        meets[key] = value is not None and (value <= target if key in at_most else value >= target)
    return {"worst": worst, "meets_target": meets}


def main() -> None:
    """Parse arguments, run every engine that loads and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--delays", default="0,10,20,50,100,150,200", help="echo delays in ms")
    parser.add_argument("--single-talk", type=float, default=8.0, help="seconds")
    parser.add_argument("--double-talk", type=float, default=6.0, help="seconds")
    parser.add_argument("--clip", type=float, default=0.5, help="clip level, share of the peak")
    parser.add_argument("--ser-db", type=float, default=0.0, help="near-end to echo, dB")
    parser.add_argument("--converged-db", type=float, default=20.0)
    parser.add_argument("--engines", default="", help="comma list; default: all that load")
    args = parser.parse_args()
    delays = [int(d) for d in args.delays.split(",")]
    engines = args.engines.split(",") if args.engines else available_engines()
    scene = Scene(args)
    clipped = float(np.mean(np.abs(scene.far) > args.clip * np.max(np.abs(scene.far))))
    report: dict[str, Any] = {
        "rate": args.rate,
        "signal": scene.signal,
        "seconds": {"single_talk": args.single_talk, "double_talk": args.double_talk},
        "delays_ms": delays,
        "nonlinear_clip": {"level": args.clip, "samples_clipped": round(clipped, 4)},
        "double_talk_ser_db": args.ser_db,
        "converged_db": args.converged_db,
        "targets": TARGETS,
        "engines": {e: bench_engine(scene, e, delays, args.converged_db) for e in engines},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
