"""Messages of no call go to their registered handler, never to the call core."""

from __future__ import annotations

import asyncio

import pytest
from harness.simsite import SimSite
from support import wait_for

from services.callapi.calls import new_call_id
from services.signaling.endpoint import Message

pytestmark = pytest.mark.site_broker("memory")


async def test_a_registered_handler_takes_push_messages(door_and_indoor: SimSite) -> None:
    door, indoor = door_and_indoor["door"].calls, door_and_indoor["indoor1"].calls
    got: asyncio.Queue[Message] = asyncio.Queue()

    async def take(message: Message) -> None:
        got.put_nowait(message)

    door.handle_messages(["push_subscribe"], take)
    call_id = new_call_id()
    await indoor.signaling.send("door", "push_subscribe", call_id, {"x": 1})
    message = await asyncio.wait_for(got.get(), 5)
    assert (message.sender, message.call_id, message.body) == ("indoor1", call_id, {"x": 1})
    assert door.active_call is None and door.dropped_messages() == {}


async def test_a_message_nobody_takes_is_counted_not_handled(door_and_indoor: SimSite) -> None:
    door, indoor = door_and_indoor["door"].calls, door_and_indoor["indoor1"].calls
    await indoor.signaling.send("door", "push_status", new_call_id(), {})
    await wait_for(lambda: door.dropped_messages().get("not_handled") == 1, "the drop counted")


def test_a_call_message_cannot_be_taken_from_the_call_core(door_and_indoor: SimSite) -> None:
    async def take(message: Message) -> None:
        raise AssertionError(message)

    with pytest.raises(ValueError, match="'hangup' is a call message"):
        door_and_indoor["door"].calls.handle_messages(["hangup"], take)
