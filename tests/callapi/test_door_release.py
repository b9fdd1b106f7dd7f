"""Door release through the Call API: the challenge scheme of docs/protocol.md.

The door station's unlock handler stands in for the relay here (the intercom tests drive
the real relay pin); what is checked is who may open the door, how often, and that a
recorded request never opens it twice.
"""

from __future__ import annotations

import pytest
from harness.simsite import EndpointSpec, SimSite
from support import TIMEOUT, Answering, MakeSite, place_call, props_for

from services.callapi import CallError, CallStatus
from services.callapi.door_release import UnlockRefused, UnlockRequest
from services.signaling.errors import RejectReason

pytestmark = pytest.mark.site_broker("memory")  # the call state machine, not the broker


class Door:
    """Records door openings; refuses when told to."""

    def __init__(self) -> None:
        self.openings: list[tuple[str, str]] = []
        self.refuse_with: str | None = None

    async def __call__(self, request: UnlockRequest) -> None:
        if self.refuse_with is not None:
            raise UnlockRefused(self.refuse_with)
        self.openings.append((request.call_id, request.requester))


async def answered_doorbell_call(site: SimSite) -> tuple[Door, Answering]:
    door_calls = site["door"].calls
    door = Door()
    door_calls.set_unlock_handler(door)
    indoor = Answering(site["indoor1"].calls, auto_answer=True)
    site["indoor1"].calls.set_listener(indoor)
    _, progress = await place_call(door_calls, props_for(door_calls, "indoor1"))
    await progress.wait_status(CallStatus.CONNECTED)
    return door, indoor


async def test_callee_opens_the_door_once_per_request_and_again_with_the_next_challenge(
    door_and_indoor: SimSite,
) -> None:
    door, indoor = await answered_doorbell_call(door_and_indoor)
    call, _ = await indoor.next_call()
    first = call.unlock_challenge
    assert first, "a doorbell call carries a release challenge"

    assert await call.unlock(timeout=TIMEOUT) is True
    assert door.openings == [(call.call_id, "indoor1")]
    assert call.unlock_challenge not in (None, first), "the door sends a fresh challenge"

    assert await call.unlock(timeout=TIMEOUT) is True
    assert len(door.openings) == 2


async def test_a_replayed_challenge_opens_nothing(door_and_indoor: SimSite) -> None:
    door, indoor = await answered_doorbell_call(door_and_indoor)
    call, _ = await indoor.next_call()
    used = call.unlock_challenge
    assert await call.unlock(timeout=TIMEOUT)

    current = call.unlock_challenge
    call.unlock_challenge = used  # a recording of the first request, signed anew
    assert await call.unlock(timeout=TIMEOUT) is False
    assert len(door.openings) == 1
    # refused before the policy: the door's current challenge is kept and sent back
    assert call.unlock_challenge == current
    assert await call.unlock(timeout=TIMEOUT) is True
    assert len(door.openings) == 2


async def test_the_door_refusal_reaches_the_requester(door_and_indoor: SimSite) -> None:
    door, indoor = await answered_doorbell_call(door_and_indoor)
    call, _ = await indoor.next_call()
    first = call.unlock_challenge
    door.refuse_with = "rate limited"
    assert await call.unlock(timeout=TIMEOUT) is False
    assert door.openings == []
    assert call.unlock_challenge not in (None, first), "refused by the policy: used up"


async def test_a_call_without_a_door_cannot_unlock(make_site: MakeSite) -> None:
    site = await make_site(EndpointSpec("indoor1"), EndpointSpec("indoor2"))
    callee = Answering(site["indoor2"].calls, auto_answer=True)
    site["indoor2"].calls.set_listener(callee)
    caller = site["indoor1"].calls
    call, progress = await place_call(caller, props_for(caller, "indoor2"))
    await progress.wait_status(CallStatus.CONNECTED)
    with pytest.raises(CallError, match="not with a door"):
        await call.unlock()


async def test_a_monitor_call_to_the_door_can_open_it(door_and_indoor: SimSite) -> None:
    door_calls = door_and_indoor["door"].calls
    door = Door()
    door_calls.set_unlock_handler(door)
    door_calls.set_listener(Answering(door_calls, auto_answer=True))
    indoor_calls = door_and_indoor["indoor1"].calls
    call, progress = await place_call(indoor_calls, props_for(indoor_calls, "door"))
    await progress.wait_status(CallStatus.CONNECTED)
    assert call.unlock_challenge, "the door's answer carries the challenge"
    assert await call.unlock(timeout=TIMEOUT)
    assert door.openings == [(call.call_id, "indoor1")]


async def test_an_unlock_outside_the_call_is_refused_as_wrong_call(
    door_and_indoor: SimSite,
) -> None:
    door, indoor = await answered_doorbell_call(door_and_indoor)
    call, _ = await indoor.next_call()
    signaling = door_and_indoor["indoor1"].signaling
    rejected = door_and_indoor["door"].signaling.rejected
    before = rejected[RejectReason.WRONG_CALL]
    await signaling.send("door", "unlock", "another-call-id", {"challenge": call.unlock_challenge})
    # one inbox, delivered in order: once this answer is back, the stray one was handled
    assert await call.unlock(timeout=TIMEOUT)
    assert rejected[RejectReason.WRONG_CALL] == before + 1
    assert door.openings == [(call.call_id, "indoor1")]
