"""A camera that fails mid-call: the call goes on with audio, video comes back once it works.

The peer sees the video muted, the app hears HWERROR, and video comes back by itself once the camera
works.
"""

from __future__ import annotations

from typing import Any

import av
import pytest
from harness.simsite import SimSite
from support import TIMEOUT, Answering, place_call, props_for, wait_for

from hal.errors import DeviceUnavailableError
from services.callapi import CallErrorCode, CallStatus

pytestmark = pytest.mark.site_broker("memory")  # the call state machine, not the broker


class Unplug:
    """Makes a real test-pattern camera fail its reads, as an unplugged camera does."""

    def __init__(self, camera: Any) -> None:
        self.camera = camera
        self.unplugged = False
        self._read = camera.read

        async def read() -> av.VideoFrame:
            if self.unplugged:
                raise DeviceUnavailableError(f"camera {camera.name!r} was unplugged")
            frame: av.VideoFrame = await self._read()
            return frame

        camera.read = read


async def test_a_camera_failure_leaves_an_audio_call_and_video_comes_back(
    door_and_indoor: SimSite,
) -> None:
    door = door_and_indoor["door"].calls
    door_app = Answering(door)
    door.set_listener(door_app)
    indoor = door_and_indoor["indoor1"].calls
    indoor_app = Answering(indoor, auto_answer=True)
    indoor.set_listener(indoor_app)
    camera = Unplug(door_and_indoor["door"].board.camera("main"))
    call, progress = await place_call(door, props_for(door, "indoor1"))
    await progress.wait_status(CallStatus.CONNECTED)
    _, indoor_progress = await indoor_app.next_call()
    received = indoor.active_call.session.stats  # type: ignore[union-attr]

    camera.unplugged = True
    await door_app.wait_until(lambda: int(CallErrorCode.HARDWARE) in door_app.errors)
    await indoor_progress.wait_until(lambda: (False, True, True) in indoor_progress.mutes)
    assert door.camera_failure is not None and "unplugged" in door.camera_failure
    samples = received.audio_samples
    await wait_for(lambda: received.audio_samples > samples + 48000 // 2, "audio going on")
    assert call.status == CallStatus.CONNECTED, "the call goes on without video"

    camera.unplugged = False
    await indoor_progress.wait_until(
        lambda: indoor_progress.mutes[-1] == (False, False, True), timeout=TIMEOUT
    )
    frames = received.video_frames
    await wait_for(lambda: received.video_frames > frames + 5, "video again")
    assert door.camera_failure is None
