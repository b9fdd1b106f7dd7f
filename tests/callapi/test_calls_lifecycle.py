"""Closing an endpoint: idempotent, and a close called during another waits for it."""

from __future__ import annotations

import asyncio

import pytest
from harness.simsite import SimSite
from support import Answering, place_call, props_for

from services.callapi import CallStatus

pytestmark = pytest.mark.site_broker("memory")  # the endpoint's life, not the broker


async def test_a_second_close_returns_only_once_the_first_has_finished(
    door_and_indoor: SimSite,
) -> None:
    door, indoor = door_and_indoor["door"].calls, door_and_indoor["indoor1"].calls
    indoor.set_listener(Answering(indoor, auto_answer=True))
    _, progress = await place_call(door, props_for(door, "indoor1"))
    await progress.wait_status(CallStatus.CONNECTED)

    first = asyncio.create_task(door.close())
    await asyncio.sleep(0)  # the first close is under way (hanging up the call)
    await door.close()

    assert first.done(), "the second close returned while the first was still closing"
    assert progress.terminal() == [CallStatus.COMPLETE]
    assert not door.connected
    await door.close()  # and a third, after it, does nothing
