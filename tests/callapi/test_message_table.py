"""Every message type of the protocol reaches exactly one handler of the call core."""

from __future__ import annotations

from harness.simsite import SimSite
from support import props_for

from services.signaling.endpoint import ALARM_MESSAGE_TYPES, MESSAGE_TYPES, PUSH_MESSAGE_TYPES

TAKEN_BY_CALLS = {"invite"}
"""``Calls`` takes these itself: an invite is a new call, not a message of one."""
RESERVED = {"ack"}
"""Reserved in docs/protocol.md; no endpoint acts on it yet."""
NOT_OF_A_CALL = PUSH_MESSAGE_TYPES | ALARM_MESSAGE_TYPES
"""Web Push registration, a door's alarms: handed to their services before the call core
(Calls.handle_messages)."""


async def test_each_message_type_of_a_call_has_one_handler(door_and_indoor: SimSite) -> None:
    calls = door_and_indoor["door"].calls
    call = calls.call(props_for(calls, "indoor1"))
    assert call is not None
    assert call.handled_types == MESSAGE_TYPES - TAKEN_BY_CALLS - RESERVED - NOT_OF_A_CALL
    await call.hangup()
