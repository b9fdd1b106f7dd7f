"""Real Opus packets of speech-like audio, and a simulated link that drives a playout buffer.

The packets come from PyAV's libopus encoder (FFmpeg's, as aiortc's sender uses); the
playout is driven on simulated time, so no test sleeps or depends on the machine's speed.
"""

from __future__ import annotations

import fractions
from collections.abc import Mapping
from dataclasses import dataclass, field

import av
import numpy as np

from services.media.audio_playout import AudioPlayout, FrameKind, PlayoutStats
from services.media.encoder import OPUS_BITRATE, OPUS_OPTIONS

RATE = 48000
FRAME = 960
FRAME_S = FRAME / RATE
NO_FEC = {"application": "voip"}


def speech(seconds: float) -> np.ndarray:
    """Voiced speech-like audio: a gliding 25-harmonic buzz in syllables, s16 stereo packed."""
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 140 + 30 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    buzz = sum(np.sin(k * phase) / k for k in range(1, 25))
    syllables = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))
    mono = (buzz * syllables * 6000).astype(np.int16)
    return np.stack([mono, mono], axis=1).reshape(1, -1)


def opus_packets(
    seconds: float, options: Mapping[str, str] = OPUS_OPTIONS, bitrate: int = OPUS_BITRATE
) -> list[bytes]:
    """``seconds`` of :func:`speech` as 20 ms Opus packets made with these encoder options."""
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = bitrate
    codec.format = "s16"
    codec.layout = "stereo"
    codec.sample_rate = RATE
    codec.time_base = fractions.Fraction(1, RATE)
    codec.options = dict(options)
    pcm = speech(seconds + 0.1)
    packets: list[bytes] = []
    for start in range(0, int(seconds * RATE), FRAME):
        chunk = np.ascontiguousarray(pcm[:, 2 * start : 2 * (start + FRAME)])
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = RATE, start, codec.time_base
        packets += [bytes(p) for p in codec.encode(frame)]
    return packets


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """How close ``other`` is to ``reference``, in dB (higher is closer)."""
    ref, diff = reference.astype(float), reference.astype(float) - other.astype(float)
    return float(10 * np.log10((ref**2).sum() / max((diff**2).sum(), 1.0)))


@dataclass
class Tick:
    """One frame the playout produced, at simulated time ``at``."""

    at: float
    kind: FrameKind
    pcm: np.ndarray
    stats: PlayoutStats


@dataclass
class Link:
    """Sends ``packets`` every 20 ms; ``delay(seq)`` is each one's transit time (None: lost)."""

    packets: list[bytes]
    delays: dict[int, float | None] = field(default_factory=dict)
    base_delay: float = 0.005

    def arrivals(self) -> list[tuple[float, int]]:
        """(arrival time, sequence number) of every packet that arrives, in arrival order."""
        out = []
        for seq in range(len(self.packets)):
            delay = self.delays.get(seq, self.base_delay)
            if delay is not None:
                out.append((seq * FRAME_S + delay, seq))
        return sorted(out)


def run(
    playout: AudioPlayout, link: Link, until: float, seq_offset: int = 0, ts_offset: int = 0
) -> list[Tick]:
    """Deliver ``link``'s packets and tick the playout as its track would, up to ``until``.

    Packets arriving at or before a tick are in the buffer at that tick. The playout clock
    starts when the first packet is due and restarts after the playout idles.
    """
    arrivals = link.arrivals()
    ticks: list[Tick] = []
    deadline: float | None = None
    i = 0
    while True:
        if deadline is None:
            if i >= len(arrivals):
                return ticks
            deliver_until = arrivals[i][0]
        else:
            deliver_until = deadline
        while i < len(arrivals) and arrivals[i][0] <= deliver_until:
            at, seq = arrivals[i]
            wire = (seq + seq_offset) & 0xFFFF
            timestamp = (seq * FRAME + ts_offset) & 0xFFFFFFFF
            playout.push(wire, timestamp, link.packets[seq], at)
            i += 1
        if deadline is None:
            deadline = playout.first_tick_at()
            continue
        if deadline > until:
            return ticks
        out = playout.tick(deadline)
        if out is None:
            deadline = None
            continue
        ticks.append(Tick(deadline, out.kind, out.frame.to_ndarray(), playout.stats()))
        deadline += out.frame.samples / out.frame.sample_rate
