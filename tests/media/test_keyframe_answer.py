"""A PLI is answered within a frame, on the software encoder path and in H.264 passthrough.

Real aiortc calls on loopback; the receiver's aiortc sends the PLI over RTCP. A spy on the
sender's encoder records, frame by frame, whether what went out starts a key frame, and the
frame count at the moment the sender handled the PLI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiortc import RTCRtpSender
from fake_picamera2 import FakePicamera2Library
from test_h264_passthrough import FORMAT, calls, camera_on, send_pli, sender_encoder

from services.media.keyframes import h264_keyframe_start, vp8_keyframe_start
from services.media.session import MediaSession
from services.media.tracks import CameraSource


class KeyframeSpy:
    """Which frames out of the sender's encoder start a key frame; when PLIs were handled."""

    def __init__(self, session: MediaSession, detect: Callable[[bytes], bool]) -> None:
        self.frames: list[bool] = []
        self.plis_at: list[int] = []  # len(frames) when the sender handled a PLI
        self.changed = asyncio.Event()
        encoder = sender_encoder(session)
        transceiver = session._video_transceiver()
        assert transceiver is not None
        sender: RTCRtpSender = transceiver.sender

        def spy(original: Callable[..., tuple[list[bytes], int]]) -> Any:
            def call(*args: Any) -> tuple[list[bytes], int]:
                payloads, timestamp = original(*args)
                if payloads:
                    self.frames.append(detect(payloads[0]))
                    self.changed.set()
                return payloads, timestamp

            return call

        encoder.encode = spy(encoder.encode)  # type: ignore[method-assign]
        encoder.pack = spy(encoder.pack)  # type: ignore[method-assign]
        send_keyframe = sender._send_keyframe

        def handled_pli() -> None:
            self.plis_at.append(len(self.frames))
            self.changed.set()
            send_keyframe()

        sender._send_keyframe = handled_pli  # type: ignore[method-assign]

    async def wait(self, frames: int, plis: int = 0) -> None:
        async with asyncio.timeout(5):
            while len(self.frames) < frames or len(self.plis_at) < plis:
                self.changed.clear()
                await self.changed.wait()


@pytest.mark.parametrize(
    ("codec", "detect"),
    [("VP8", vp8_keyframe_start), ("H264", h264_keyframe_start)],
    ids=["encoder-vp8", "passthrough-h264"],
)
async def test_a_pli_is_answered_by_the_next_frame(codec: str, detect: Callable[..., bool]) -> None:
    fake = FakePicamera2Library()
    source = CameraSource(camera_on(fake), FORMAT)
    async with calls(source, codec) as ([sender], [peer]):
        await peer.wait_frames(5)
        assert sender.video_passthrough == (codec == "H264")
        spy = KeyframeSpy(sender, detect)
        for _ in range(3):  # again and again: a second loss soon after the first
            await spy.wait(len(spy.frames) + 8)
            await send_pli(sender, peer.session)
            await spy.wait(0, plis=len(spy.plis_at) + 1)  # RTCP on its way over loopback
            at = spy.plis_at[-1]
            await spy.wait(at + 2)
            # the frame being encoded when the PLI came may still be a delta frame
            assert True in spy.frames[at : at + 2], f"frames after the PLI: {spy.frames[at:]}"
