"""The adaptive Opus sender: FEC only while the peer reports loss, timestamps unbroken."""

from __future__ import annotations

import fractions

import av
import numpy as np
from aiortc.codecs import CODECS
from aiortc.codecs.opus import SAMPLES_PER_FRAME
from opus_stream import FRAME, FRAME_S, RATE, speech

from services.media.opus_codec import packet_has_fec
from services.media.opus_send import AdaptiveOpusEncoder, FecOnLoss

OPUS = CODECS["audio"][0]


def speech_frames(count: int) -> list[av.AudioFrame]:
    """``count`` 20 ms frames of tests/media/opus_stream.py's speech-like audio."""
    pcm = speech(count * FRAME_S + 0.1)
    frames = []
    for index in range(count):
        start = index * FRAME
        chunk = np.ascontiguousarray(pcm[:, 2 * start : 2 * (start + FRAME)])
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = RATE, start, fractions.Fraction(1, RATE)
        frames.append(frame)
    return frames


def encode_all(
    encoder: AdaptiveOpusEncoder, frames: list[av.AudioFrame]
) -> list[tuple[bytes, int]]:
    out: list[tuple[bytes, int]] = []
    for frame in frames:
        payloads, timestamp = encoder.encode(frame)
        if payloads:
            assert timestamp is not None
            out.extend((payload, timestamp) for payload in payloads)
    return out


def test_fec_goes_on_and_off_with_continuous_timestamps() -> None:
    encoder = AdaptiveOpusEncoder(OPUS)
    frames = speech_frames(150)
    low = encode_all(encoder, frames[:50])
    encoder.set_fec(True)
    fec = encode_all(encoder, frames[50:100])
    encoder.set_fec(False)
    back = encode_all(encoder, frames[100:])

    assert encoder.switches == 2
    assert not any(packet_has_fec(p) for p, _ in low + back)
    assert sum(packet_has_fec(p) for p, _ in fec) > len(fec) // 2
    timestamps = [t for _, t in low + fec + back]
    steps = np.diff(timestamps)
    assert (steps == SAMPLES_PER_FRAME).all(), "a switch broke the RTP timestamps"


class FakeClock:
    """Seconds, advanced by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_fec_is_held_after_the_last_loss_then_dropped() -> None:
    encoder = AdaptiveOpusEncoder(OPUS)
    clock = FakeClock()
    policy = FecOnLoss(encoder, hold_s=20.0, clock=clock)
    policy.report(0)
    assert not encoder.fec and not encoder._wanted
    policy.report(3)
    assert encoder._wanted
    for _ in range(19):
        clock.now += 1.0
        policy.report(0)
        assert encoder._wanted, "FEC dropped while the hold lasts"
    clock.now += 2.0
    policy.report(0)
    assert not encoder._wanted
