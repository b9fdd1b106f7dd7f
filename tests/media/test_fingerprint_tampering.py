"""A DTLS fingerprint that does not belong to the peer: not a single frame is decoded.

An SDP altered in flight fails the envelope signature: the answer is dropped like a lost one
(a message that fails verification never changes a call) and the call rings out. An SDP
signed with a fingerprint that the DTLS certificate does not match fails DTLS: the call ends
with SECURITYERROR.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from harness.simsite import SimSite
from support import Answering, Progress, place_call, props_for, sign_a_foreign_fingerprint

from services.callapi import CallErrorCode, CallStatus
from services.signaling.errors import RejectReason
from services.signaling.identity import b64u_decode, b64u_encode

pytestmark = pytest.mark.site_broker("memory")  # the call state machine, not the broker

QUIET_WINDOW_S = 0.5


def tamper_answers_in_flight(site: SimSite, address: str) -> None:
    """Like a broker that rewrites ``address``'s answers: one bit of the sealed SDP flips."""
    transport = site[address].signaling.transport
    publish = transport.publish_inbox

    async def rewriting(recipient: str, payload: bytes, timeout: float = 5.0) -> None:
        envelope = json.loads(payload)
        if envelope["type"] == "answer":
            ct = bytearray(b64u_decode(envelope["body"]["ct"]))
            ct[len(ct) // 2] ^= 0x01
            envelope["body"]["ct"] = b64u_encode(bytes(ct))
            payload = json.dumps(envelope).encode()
        await publish(recipient, payload, timeout)

    transport.publish_inbox = rewriting  # type: ignore[method-assign]


async def ring_and_expect_security_error(site: SimSite) -> tuple[Progress, Answering]:
    door, indoor = site["door"].calls, site["indoor1"].calls
    callee = Answering(indoor)
    indoor.set_listener(callee)
    caller_app = Answering(door)
    door.set_listener(caller_app)
    call, progress = await place_call(door, props_for(door, "indoor1"))
    await progress.wait_status(CallStatus.SECURITYERROR)
    assert progress.terminal() == [CallStatus.SECURITYERROR]
    await caller_app.wait_until(lambda: caller_app.errors == [CallErrorCode.SECURITY])
    incoming, incoming_progress = await callee.next_call()
    await incoming_progress.wait_until(lambda: bool(incoming_progress.terminal()))
    assert incoming_progress.terminal() == [CallStatus.SECURITYERROR]
    await asyncio.sleep(QUIET_WINDOW_S)  # no frame may be decoded on either side meanwhile
    assert call.legs == {} or all(leg.session.stats.video_frames == 0 for leg in call.legs.values())
    assert incoming.session is not None
    assert incoming.session.stats.video_frames == 0
    assert incoming.session.stats.audio_frames == 0
    assert not door.is_call_in_progress() and not indoor.is_call_in_progress()
    return progress, callee


async def test_answer_altered_in_flight_is_dropped_and_nothing_is_decoded(
    door_and_indoor: SimSite,
) -> None:
    tamper_answers_in_flight(door_and_indoor, "indoor1")
    door, indoor = door_and_indoor["door"].calls, door_and_indoor["indoor1"].calls
    callee = Answering(indoor)
    indoor.set_listener(callee)
    props = props_for(door, "indoor1")
    props.ring_timeout_s = 1.5
    call, progress = await place_call(door, props)
    await progress.wait_until(lambda: bool(progress.terminal()), timeout=10)
    assert progress.terminal() == [CallStatus.NOANSWER], "the altered answer was a lost one"
    assert door_and_indoor["door"].signaling.rejected[RejectReason.BAD_SIGNATURE] == 1
    incoming, incoming_progress = await callee.next_call()
    await incoming_progress.wait_until(lambda: bool(incoming_progress.terminal()))
    assert incoming_progress.terminal() == [CallStatus.NOANSWER]
    assert all(leg.session.stats.video_frames == 0 for leg in call.legs.values())
    assert incoming.session is not None
    assert incoming.session.stats.video_frames == 0
    assert incoming.session.stats.audio_frames == 0


async def test_signed_fingerprint_of_another_certificate_fails_dtls(
    door_and_indoor: SimSite,
) -> None:
    sign_a_foreign_fingerprint(door_and_indoor, "indoor1")
    await ring_and_expect_security_error(door_and_indoor)
    assert sum(door_and_indoor["door"].signaling.rejected.values()) == 0
