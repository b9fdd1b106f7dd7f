"""mesibo's checkPermissions: 0 ready, 1 in use by a call, negative when a device is missing."""

from __future__ import annotations

import pytest
from harness.simsite import SimSite
from support import Answering, place_call, props_for

from services.callapi import CallStatus
from services.callapi.calls import permission_status

pytestmark = pytest.mark.site_broker("memory")  # the call state machine, not the broker


async def test_ready_when_idle_and_in_use_during_a_call(door_and_indoor: SimSite) -> None:
    door = door_and_indoor["door"].calls
    indoor = door_and_indoor["indoor1"].calls
    assert door.check_permissions(video=True) == 0
    indoor.set_listener(Answering(indoor, auto_answer=True))
    call, progress = await place_call(door, props_for(door, "indoor1"))
    await progress.wait_status(CallStatus.CONNECTED)
    assert door.check_permissions(video=True) == 1
    await call.hangup()
    assert door.check_permissions(video=True) == 0


def test_missing_devices_are_negative() -> None:
    assert permission_status(microphone=False, speaker=True, camera=True, video=False) == -1
    assert permission_status(microphone=True, speaker=False, camera=True, video=False) == -1
    assert permission_status(microphone=True, speaker=True, camera=False, video=True) == -2
    assert permission_status(microphone=True, speaker=True, camera=False, video=False) == 0
