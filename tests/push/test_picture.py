"""The visitor's picture for a push: small enough for one push message, still a picture.

The size rule (docs/protocol.md, "Web Push"): the payload with the picture as a data URL is at
most 3072 bytes of UTF-8 JSON; the JPEG is 160 px wide when that fits (then 128, then 96), at
the best quality that fits. Frames from the simulated camera and a frame of noise (the worst
case for JPEG) are encoded for real with PyAV and decoded again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re

import av
import numpy as np
import pytest

from hal.camera import TestPatternCamera
from hal.media_types import VideoFormat
from services.push.payload import MAX_PAYLOAD_BYTES, RingPush, push_topic
from services.push.picture import PictureError, encode_push_jpeg, push_jpeg

RING = RingPush("door", "Front door", "AAAAAAAAAAAAAAAAAAAAAA", 1_765_000_000_000, 30000)


async def camera_frame(width: int, height: int) -> av.VideoFrame:
    """One frame of the simulated door camera at ``width`` x ``height``."""
    camera = TestPatternCamera("main")
    await camera.open(VideoFormat(width, height, 30))
    try:
        return await camera.read()
    finally:
        await camera.close()


def noise_frame(width: int, height: int) -> av.VideoFrame:
    """Random pixels: what JPEG compresses worst."""
    pixels = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(pixels, format="rgb24")


def decode(jpeg: bytes) -> av.VideoFrame:
    """The JPEG decoded by PyAV (FFmpeg's decoder)."""
    codec = av.CodecContext.create("mjpeg", "r")
    (frame,) = codec.decode(av.Packet(jpeg))
    assert isinstance(frame, av.VideoFrame)
    return frame


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (320, 240)])
async def test_a_camera_frame_makes_a_160_px_picture_that_fits_the_push(
    size: tuple[int, int],
) -> None:
    frame = await camera_frame(*size)
    budget = RING.snapshot_budget()
    jpeg = await encode_push_jpeg(frame, budget)
    assert jpeg[:2] == b"\xff\xd8" and len(jpeg) <= budget
    picture = await asyncio.to_thread(decode, jpeg)
    assert picture.width == 160
    assert picture.height == round(size[1] * 160 / size[0] / 2) * 2
    payload = RING.snapshot_payload(jpeg)
    assert len(payload) <= MAX_PAYLOAD_BYTES
    snapshot = json.loads(payload)["snapshot"]
    assert base64.b64decode(snapshot.removeprefix("data:image/jpeg;base64,")) == jpeg


async def test_noise_is_made_smaller_until_it_fits_or_refused() -> None:
    frame = noise_frame(640, 480)
    budget = RING.snapshot_budget()
    jpeg = await encode_push_jpeg(frame, budget)
    assert len(jpeg) <= budget
    picture = await asyncio.to_thread(decode, jpeg)
    assert picture.width in (160, 128, 96)
    with pytest.raises(PictureError, match="over the push's room of 300 bytes"):
        await asyncio.to_thread(push_jpeg, frame, 300)


def test_the_budget_is_exact() -> None:
    """A JPEG of the budget fits; three bytes more (four base64 characters) do not."""
    budget = RING.snapshot_budget()
    assert budget == 2172  # docs/protocol.md, "Web Push": ~2 KB of JPEG in 3072 bytes
    assert len(RING.snapshot_payload(b"\xff" * budget)) <= MAX_PAYLOAD_BYTES
    with pytest.raises(ValueError, match=f"over {MAX_PAYLOAD_BYTES}"):
        RING.snapshot_payload(b"\xff" * (budget + 1))
    # a longer door name leaves less room
    longer = RingPush("door", "D" * 500, RING.call_id, RING.at_ms, RING.ring_timeout_ms)
    assert budget - 371 <= longer.snapshot_budget() <= budget - 364  # 490 bytes: 367.5 of JPEG
    assert RingPush("door", "D" * 3000, "c", 0, 1).snapshot_budget() == 0


def test_the_topic_is_32_base64url_characters_of_the_call_and_hides_its_id() -> None:
    topic = push_topic(RING.call_id)
    assert topic == "ickIdvlKQPmuMHMOV_-nKv1qRRZrr5jl"  # docs/protocol.md, "Web Push"
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", topic)
    assert push_topic(RING.call_id) == topic
    assert push_topic("BBBBBBBBBBBBBBBBBBBBBB") != topic
    assert RING.call_id not in topic
