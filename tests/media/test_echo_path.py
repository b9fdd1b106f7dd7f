"""The echo canceller in the audio path.

What the speaker plays comes back out of the microphone much weaker, and a call between endpoints
with echo cancelling still carries the other side's voice. Real engines (WebRTC AEC3), real sim
devices, a real call.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt
import pytest
from harness.simsite import EndpointSpec
from support import Answering, MakeSite, need, place_call, props_for

from hal.audio import Microphone, RecordingSpeaker
from hal.media_types import AudioFormat
from services.callapi import CallStatus
from services.media.aec import available_engines, make_echo_canceller
from services.media.echo_path import CancelledMicrophone, ReferenceSpeaker

pytestmark = pytest.mark.site_broker("memory")  # the call state machine, not the broker

RATE = 48000
FRAME = RATE // 50  # 20 ms
ECHO_DELAY_FRAMES = 3  # 60 ms between the speaker and the microphone


def frame_of(samples: npt.NDArray[np.int16], index: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    frame.pts = index * FRAME
    frame.time_base = Fraction(1, RATE)
    return frame


class EchoingMicrophone(Microphone):
    """Hears the frames a test hands it (the echo), one per read."""

    def __init__(self) -> None:
        self.name = "main"
        self.pending: list[npt.NDArray[np.int16]] = []
        self.index = 0

    async def open(self, fmt: AudioFormat) -> None:
        pass

    async def read(self) -> av.AudioFrame:
        self.index += 1
        return frame_of(self.pending.pop(0), self.index)

    async def close(self) -> None:
        pass


def speech_like(seconds: float) -> npt.NDArray[np.int16]:
    """Noise shaped like speech: band-limited, with a syllable-rate envelope."""
    rng = np.random.default_rng(7)
    n = int(seconds * RATE)
    noise = np.convolve(rng.standard_normal(n), np.ones(12) / 12, mode="same")
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(n) / RATE) ** 2
    shaped: npt.NDArray[np.float64] = noise * envelope / np.max(np.abs(noise)) * 12000
    return shaped.astype(np.int16)


async def test_the_speakers_echo_is_taken_out_of_the_microphone() -> None:
    engines = await asyncio.to_thread(available_engines)  # loads the libraries
    need("webrtc-aec3" in engines, "the webrtc-aec3 echo canceller")
    canceller = make_echo_canceller(RATE, prefer="webrtc-aec3")
    speaker = ReferenceSpeaker(RecordingSpeaker("speaker"), canceller)
    raw = EchoingMicrophone()
    microphone = CancelledMicrophone(raw, canceller)
    await speaker.open(AudioFormat())
    await microphone.open(AudioFormat())
    far = speech_like(4.0)
    frames = [far[i : i + FRAME] for i in range(0, far.size, FRAME)]
    silence = np.zeros(FRAME, dtype=np.int16)
    heard, sent = [], []
    for index, played in enumerate(frames):
        await speaker.play(frame_of(played, index))
        echo = frames[index - ECHO_DELAY_FRAMES] if index >= ECHO_DELAY_FRAMES else silence
        echo = (echo.astype(np.float64) * 0.5).astype(np.int16)  # the room: half as loud
        raw.pending.append(echo)
        heard.append(echo)
        sent.append((await microphone.read()).to_ndarray().reshape(-1))
    after = slice(2 * RATE // FRAME, None)  # once converged
    before_db = 10 * np.log10(np.mean(np.concatenate(heard[after]).astype(np.float64) ** 2))
    after_db = 10 * np.log10(np.mean(np.concatenate(sent[after]).astype(np.float64) ** 2) + 1e-9)
    assert before_db - after_db >= 20.0, f"echo only {before_db - after_db:.1f} dB lower"
    await microphone.close()
    await speaker.close()
    canceller.close()


async def test_a_call_with_echo_cancelling_carries_the_other_side(make_site: MakeSite) -> None:
    engines = await asyncio.to_thread(available_engines)  # loads the libraries
    need("webrtc-aec3" in engines, "the webrtc-aec3 echo canceller")
    site = await make_site(
        EndpointSpec("door", role="door", echo_cancellation=True),
        EndpointSpec("indoor1", echo_cancellation=True, tone_hz=660.0),
    )
    door = site["door"].calls
    assert door.media.echo_canceller is not None
    assert door.media.echo_canceller.engine == "webrtc-aec3"
    indoor = site["indoor1"].calls
    indoor.set_listener(Answering(indoor, auto_answer=True))
    _, progress = await place_call(door, props_for(door, "indoor1"))
    await progress.wait_status(CallStatus.CONNECTED)
    door_speaker = site["door"].board.speaker("speaker")
    assert isinstance(door_speaker, RecordingSpeaker)
    door_speaker.clear()
    await door_speaker.wait_for_samples(RATE // 2, timeout=10)
    assert door_speaker.rms(last_ms=300) > 0.001, "the indoor unit is heard at the door"
