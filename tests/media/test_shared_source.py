"""One device, several sessions: SharedSource reads once per frame, never hands out a stale frame.

The last frame of a previous call must not become the next call's preview.
"""

from __future__ import annotations

import asyncio

import av
import numpy as np

from services.media.tracks import OutgoingTrack, SharedSource


class CountingDevice:
    """A device whose frames carry their read number in the pixel values."""

    def __init__(self) -> None:
        self.reads = 0

    async def read(self) -> av.VideoFrame:
        self.reads += 1
        await asyncio.sleep(0.005)  # the device takes a little while to deliver
        pixels = np.full((48, 32), self.reads % 256, dtype=np.uint8)
        return av.VideoFrame.from_ndarray(pixels, format="gray")


async def test_two_readers_share_one_device_read() -> None:
    device = CountingDevice()
    source = SharedSource(device.read)
    (seq_a, a), (seq_b, b) = await asyncio.gather(source.next_frame(0), source.next_frame(0))
    assert device.reads == 1
    assert seq_a == seq_b == 1 and a is b


async def test_a_frame_older_than_max_age_is_not_handed_out() -> None:
    device = CountingDevice()
    source = SharedSource(device.read, max_age_s=0.05)
    _, first = await source.next_frame(0)
    await asyncio.sleep(0.06)  # idle between two calls, longer than max_age
    _, second = await source.next_frame(0)
    assert device.reads == 2
    assert second is not first


async def test_gated_track_sends_nothing_until_opened_then_restamps() -> None:
    device = CountingDevice()
    track = OutgoingTrack("video", SharedSource(device.read))
    pending = asyncio.create_task(track.recv())
    await asyncio.sleep(0.02)  # gate closed: nothing may be read
    assert not pending.done() and device.reads == 0
    track.set_sending(True)
    first = await asyncio.wait_for(pending, 1)
    repeat = await asyncio.wait_for(track.recv(), 1)
    third = await asyncio.wait_for(track.recv(), 1)
    assert device.reads == 2, "the first frame is repeated at once, not read again"
    assert first.pts is not None and repeat.pts is not None and third.pts is not None
    assert first.pts <= repeat.pts < third.pts
    assert track.frames_sent == 3
