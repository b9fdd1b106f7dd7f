"""The echo canceller between an endpoint's devices and its calls.

``ReferenceSpeaker`` wraps a speaker: every frame it plays (call audio, ringtones,
ringback) is also the canceller's far-end reference, converted to the canceller's
rate and cut into 10 ms blocks. ``CancelledMicrophone`` wraps the microphone: every
frame it captures goes through the canceller (echo removed, noise suppressed) before a
call sends it. LocalMedia puts both in place when echo cancellation is on, so the calls
never see the difference.
"""

from __future__ import annotations

import av
import numpy as np

from hal.audio import Microphone, Samples, Speaker
from hal.media_types import AudioFormat
from services.media.aec import EchoCanceller


class _Resampled:
    """Frames of any format -> mono s16 blocks of the canceller's block size."""

    def __init__(self, canceller: EchoCanceller) -> None:
        self._canceller = canceller
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=canceller.sample_rate)
        self._pending = np.zeros(0, dtype=np.int16)

    def blocks(self, frame: av.AudioFrame) -> list[Samples]:
        parts = [self._pending]
        for converted in self._resampler.resample(frame):
            parts.append(converted.to_ndarray().reshape(-1).astype(np.int16, copy=False))
        samples = np.concatenate(parts)
        size = self._canceller.block_size
        whole = samples.size - samples.size % size
        self._pending = samples[whole:]
        return [samples[i : i + size] for i in range(0, whole, size)]


class ReferenceSpeaker(Speaker):
    """A speaker whose output is also the echo canceller's far-end reference."""

    def __init__(self, speaker: Speaker, canceller: EchoCanceller) -> None:
        self.name = speaker.name
        self.inner = speaker
        self._canceller = canceller
        self._blocks = _Resampled(canceller)

    async def open(self, fmt: AudioFormat) -> None:
        """Open the wrapped speaker."""
        await self.inner.open(fmt)

    async def play(self, frame: av.AudioFrame) -> None:
        """Tell the canceller what is about to be heard, then play it."""
        for block in self._blocks.blocks(frame):
            self._canceller.process_render(block)
        await self.inner.play(frame)

    async def close(self) -> None:
        """Close the wrapped speaker."""
        await self.inner.close()


class RenderTapReference:
    """The reference taken at the device: called with what the back-end writes to the card.

    Called in the speaker's playback thread; silence and drift corrections included.
    """

    def __init__(self, canceller: EchoCanceller, speaker: Speaker) -> None:
        self._canceller = canceller
        self._speaker = speaker
        self._blocks = _Resampled(canceller)

    def __call__(self, block: Samples) -> None:
        """One block written to the device: int16, shape (n, channels)."""
        channels = block.shape[1] if block.ndim == 2 else 1
        layout = "mono" if channels == 1 else "stereo"
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(block).reshape(1, -1), format="s16", layout=layout
        )
        frame.sample_rate = self._speaker.device_rate  # the rate it was opened at
        for piece in self._blocks.blocks(frame):
            self._canceller.process_render(piece)


def with_reference(speaker: Speaker, canceller: EchoCanceller) -> Speaker:
    """``speaker`` feeding ``canceller`` its output.

    At the device when the back-end has a render tap (exactly what is played), else at ``play()``.
    """
    if speaker.has_render_tap:
        speaker.on_render = RenderTapReference(canceller, speaker)
        return speaker
    return ReferenceSpeaker(speaker, canceller)


class CancelledMicrophone(Microphone):
    """A microphone whose frames have the speaker's echo and the noise taken out.

    Frames keep the wrapped microphone's format (rate, samples per frame, pts); the
    canceller runs at the same rate, so no resampling happens on the capture path.
    """

    def __init__(self, microphone: Microphone, canceller: EchoCanceller) -> None:
        self.name = microphone.name
        self.inner = microphone
        self._canceller = canceller

    async def open(self, fmt: AudioFormat) -> None:
        """Open the wrapped microphone; its rate must be the canceller's."""
        if fmt.sample_rate != self._canceller.sample_rate or fmt.channels != 1:
            raise ValueError(
                f"echo cancelling needs mono at {self._canceller.sample_rate} Hz, "
                f"got {fmt.channels} channel(s) at {fmt.sample_rate} Hz"
            )
        await self.inner.open(fmt)

    async def read(self) -> av.AudioFrame:
        """The next captured frame, echo cancelled."""
        frame = await self.inner.read()
        samples = frame.to_ndarray().reshape(-1).astype(np.int16, copy=False)
        size = self._canceller.block_size
        cleaned = np.concatenate(
            [
                self._canceller.process_capture(samples[i : i + size])
                for i in range(0, samples.size, size)
            ]
        )
        out = av.AudioFrame.from_ndarray(cleaned.reshape(1, -1), format="s16", layout="mono")
        out.sample_rate = frame.sample_rate
        out.pts = frame.pts
        out.time_base = frame.time_base
        return out

    async def close(self) -> None:
        """Close the wrapped microphone."""
        await self.inner.close()
