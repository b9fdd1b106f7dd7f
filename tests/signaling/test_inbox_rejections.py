"""Every inbound check of a signaling endpoint, through the real broker.

Each bad message is published raw into an inbox (anyone in the site may do that), and
each test checks that it was dropped, counted under its reason, logged with the reason,
and that the endpoint keeps working: a real call from the door to indoor1 (or, where the
door itself is the problem, from indoor2) still rings, connects and ends normally.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from harness.simsite import EndpointSpec, SimSite
from signaling_harness import (
    capture_inbox,
    envelope_types,
    eventually,
    logged_reason,
    mqtt_of,
    place_and_complete_call,
    profile_payload,
    publish_raw,
    seal_for,
    topics,
    wait_rejected,
)
from support import Answering, MakeSite, place_call, props_for

from services.callapi import CallStatus
from services.media.session import MediaSession, MediaSettings
from services.signaling.errors import KeyChangedError, RejectReason
from services.signaling.identity import Identity, b64u_decode, b64u_encode


@pytest.fixture
async def site(make_site: MakeSite) -> SimSite:
    """A door and two indoor units, plus "mallory": a broker account with no endpoint."""
    return await make_site(
        EndpointSpec("door", role="door", name="Front door", tone_hz=440.0),
        EndpointSpec("indoor1", name="Flat 1", tone_hz=660.0),
        EndpointSpec("indoor2", name="Flat 2", tone_hz=880.0),
        extra_accounts=("mallory",),
    )


async def assert_dropped(
    site: SimSite,
    caplog: pytest.LogCaptureFixture,
    payload: bytes,
    reason: RejectReason,
    *,
    target: str = "indoor1",
) -> Answering:
    """Publish ``payload`` into ``target``'s inbox as mallory and check it was refused.

    Returns the app installed on ``target`` beforehand, which must not have been rung.
    """
    endpoint = site[target]
    app = Answering(endpoint.calls)
    endpoint.calls.set_listener(app)
    before = dict(endpoint.signaling.rejected)
    received = endpoint.signaling.received
    logged = logged_reason(caplog, target, reason)
    await publish_raw(site, target, payload)
    await wait_rejected(endpoint, reason, before.get(reason, 0) + 1)
    assert dict(endpoint.signaling.rejected) == {**before, reason: before.get(reason, 0) + 1}
    assert endpoint.signaling.received == received
    assert logged_reason(caplog, target, reason) == logged + 1
    assert app.incoming == []
    assert not endpoint.calls.is_call_in_progress()
    return app


def tamper(text: str) -> str:
    """``text`` with one character in the middle changed (still canonical base64url)."""
    middle = len(text) // 2
    replacement = "A" if text[middle] != "A" else "B"
    return text[:middle] + replacement + text[middle + 1 :]


async def test_malformed_json(site: SimSite, caplog: pytest.LogCaptureFixture) -> None:
    await assert_dropped(site, caplog, b'{"v": 1, "type": "invite",', RejectReason.BAD_JSON)
    await assert_dropped(site, caplog, b"\xff\xfe not utf-8", RejectReason.BAD_JSON)
    await place_and_complete_call(site)


async def test_deeply_nested_json(site: SimSite, caplog: pytest.LogCaptureFixture) -> None:
    """A small payload that would blow Python's recursion limit must not stop the inbox."""
    await assert_dropped(site, caplog, b"[" * 60_000, RejectReason.BAD_JSON)
    await assert_dropped(site, caplog, b'{"a":' * 12_000, RejectReason.BAD_JSON)
    await assert_dropped(site, caplog, b"[" * 70_000, RejectReason.OVERSIZE)
    await place_and_complete_call(site)


async def test_oversize(site: SimSite, caplog: pytest.LogCaptureFixture) -> None:
    assert site.broker_settings.max_packet_size >= 131072  # the broker lets 70 KB through
    payload = b'{"pad": "' + b"x" * 70_000 + b'"}'
    await assert_dropped(site, caplog, payload, RejectReason.OVERSIZE)
    await place_and_complete_call(site)


async def test_unknown_version(site: SimSite, caplog: pytest.LogCaptureFixture) -> None:
    envelope = json.loads(seal_for(site, site["door"].identity, sender="door", recipient="indoor1"))
    envelope["v"] = 2
    await assert_dropped(site, caplog, json.dumps(envelope).encode(), RejectReason.UNKNOWN_VERSION)
    await place_and_complete_call(site)


async def test_wrong_recipient(site: SimSite, caplog: pytest.LogCaptureFixture) -> None:
    for_indoor2 = seal_for(site, site["door"].identity, sender="door", recipient="indoor2")
    await assert_dropped(site, caplog, for_indoor2, RejectReason.WRONG_RECIPIENT)
    await place_and_complete_call(site)


async def test_unknown_sender(site: SimSite, caplog: pytest.LogCaptureFixture) -> None:
    stranger = Identity.generate()
    for sender in ("stranger", "mallory"):
        payload = seal_for(site, stranger, sender=sender, recipient="indoor1")
        await assert_dropped(site, caplog, payload, RejectReason.UNKNOWN_SENDER)
    assert site["indoor1"].signaling.contacts.get("mallory") is None
    await place_and_complete_call(site)


async def test_forged_signature(site: SimSite, caplog: pytest.LogCaptureFixture) -> None:
    mallory = Identity.generate()
    forged = seal_for(site, mallory, sender="door", recipient="indoor1", call_id="forged-1")
    await assert_dropped(site, caplog, forged, RejectReason.BAD_SIGNATURE)
    await place_and_complete_call(site)


async def test_tampered_invite(site: SimSite, caplog: pytest.LogCaptureFixture) -> None:
    """A real invite (its encrypted SDP carries the door's DTLS fingerprint), altered."""
    captured = capture_inbox(site["indoor1"])
    await place_and_complete_call(site)
    genuine = next(json.loads(p) for p in captured if json.loads(p)["type"] == "invite")
    tampered_ct = json.loads(json.dumps(genuine))
    tampered_ct["body"]["ct"] = tamper(genuine["body"]["ct"])
    b64u_decode(tampered_ct["body"]["ct"])  # still well-formed: the signature must catch it
    tampered_sig = dict(genuine, sig=tamper(genuine["sig"]))
    tampered_epk = json.loads(json.dumps(genuine))
    tampered_epk["body"]["epk"] = b64u_encode(Identity.generate().public_keys.dh)
    moved = dict(genuine, call_id="another-call")
    for tampered in (tampered_ct, tampered_sig, tampered_epk, moved):
        await assert_dropped(
            site, caplog, json.dumps(tampered).encode(), RejectReason.BAD_SIGNATURE
        )
    await place_and_complete_call(site)


async def test_replayed_invite_rings_nobody(
    site: SimSite, caplog: pytest.LogCaptureFixture
) -> None:
    captured = capture_inbox(site["indoor1"])
    call_id = await place_and_complete_call(site)
    invites = [p for p in captured if json.loads(p)["type"] == "invite"]
    assert len(invites) == 1, envelope_types(captured)
    assert json.loads(invites[0])["call_id"] == call_id
    await assert_dropped(site, caplog, invites[0], RejectReason.REPLAY)
    # the same call id under a fresh nonce (as after the nonce window) is a replay too
    again = seal_for(
        site, site["door"].identity, sender="door", recipient="indoor1", call_id=call_id
    )
    await assert_dropped(site, caplog, again, RejectReason.REPLAY)
    await place_and_complete_call(site)


async def test_stale_timestamp(site: SimSite, caplog: pytest.LogCaptureFixture) -> None:
    ten_minutes_ago = time.time_ns() // 1_000_000 - 600_000
    stale = seal_for(
        site, site["door"].identity, sender="door", recipient="indoor1", ts_ms=ten_minutes_ago
    )
    await assert_dropped(site, caplog, stale, RejectReason.STALE)
    in_the_future = seal_for(
        site,
        site["door"].identity,
        sender="door",
        recipient="indoor1",
        ts_ms=ten_minutes_ago + 1_200_000,
    )
    await assert_dropped(site, caplog, in_the_future, RejectReason.STALE)
    await place_and_complete_call(site)


async def test_unknown_type(site: SimSite, caplog: pytest.LogCaptureFixture) -> None:
    unknown = seal_for(
        site, site["door"].identity, sender="door", recipient="indoor1", type="teleport"
    )
    await assert_dropped(site, caplog, unknown, RejectReason.UNKNOWN_TYPE)
    await place_and_complete_call(site)


async def test_invite_rate_limit(site: SimSite, caplog: pytest.LogCaptureFixture) -> None:
    indoor1 = site["indoor1"]
    app = Answering(indoor1.calls, accept=False)  # the app declines every call
    indoor1.calls.set_listener(app)
    limit = indoor1.signaling.invite_limit.count
    for n in range(limit):
        invite = seal_for(
            site, site["door"].identity, sender="door", recipient="indoor1", call_id=f"flood-{n}"
        )
        await publish_raw(site, "indoor1", invite)
    await app.wait_until(lambda: len(app.incoming) == limit)
    over = seal_for(
        site, site["door"].identity, sender="door", recipient="indoor1", call_id="flood-over"
    )
    await assert_dropped(site, caplog, over, RejectReason.RATE_LIMITED)
    # the limit is per sender: indoor2 still gets through to indoor1, and the door to indoor2
    await place_and_complete_call(site, "indoor2", "indoor1")
    await place_and_complete_call(site, "door", "indoor2")


async def test_changed_key_is_refused_until_trusted(
    site: SimSite, caplog: pytest.LogCaptureFixture
) -> None:
    door, indoor1 = site["door"], site["indoor1"]
    new_identity = Identity.generate()
    new_keys = new_identity.public_keys
    # the door's new retained profile, published on the door's own broker connection (its
    # account is the only one allowed to, and a second connection would replace the first)
    as_door = mqtt_of(door)._client
    assert as_door is not None
    await as_door.publish(
        topics(site).profile("door"),
        profile_payload("Front door", "door", new_identity, address="door"),
        qos=1,
        retain=True,
    )
    await eventually(
        lambda: indoor1.signaling.contacts.advertised.get("door") == new_keys,
        "indoor1 to see the door's new profile",
    )
    with pytest.raises(KeyChangedError):
        indoor1.signaling.contacts.check_key_change("door")
    invite = seal_for(site, new_identity, sender="door", recipient="indoor1", call_id="new-key-1")
    await assert_dropped(site, caplog, invite, RejectReason.KEY_CHANGED)
    assert any("key changed for door" in r.getMessage() for r in caplog.records)

    # a person compares the safety number and confirms the new key; the door now uses it
    indoor1.signaling.contacts.trust("door", new_keys)
    door.signaling.identity = new_identity
    door.signaling.transport.profile = json.loads(
        profile_payload("Front door", "door", new_identity, address="door")
    )
    indoor1.signaling.contacts.check_key_change("door")
    await place_and_complete_call(site)


async def test_answer_from_another_endpoint_is_a_wrong_call(
    site: SimSite, caplog: pytest.LogCaptureFixture
) -> None:
    door, indoor1, indoor2 = site["door"], site["indoor1"], site["indoor2"]
    app = Answering(indoor1.calls, auto_answer=True)
    indoor1.calls.set_listener(app)
    call, progress = await place_call(door.calls, props_for(door.calls, "indoor1", video=False))
    await progress.wait_status(CallStatus.CONNECTED)
    # indoor2 is a pinned contact of the door, so its message passes every envelope check
    await indoor2.signaling.send("door", "answer", call.call_id, {"sdp": "v=0\r\n"})
    await wait_rejected(door, RejectReason.WRONG_CALL, 1)
    assert logged_reason(caplog, "door", RejectReason.WRONG_CALL) == 1
    assert not call.is_ended() and call.is_link_up()
    assert set(call.legs) == {"indoor1"}
    _, incoming_progress = await app.next_call()
    await call.hangup()
    await incoming_progress.wait_until(lambda: bool(incoming_progress.terminal()))
    assert progress.terminal() == [CallStatus.COMPLETE]
    assert CallStatus.SECURITYERROR not in progress.statuses
    await place_and_complete_call(site)


async def test_forged_message_mid_call_is_dropped_and_the_call_goes_on(
    site: SimSite, caplog: pytest.LogCaptureFixture
) -> None:
    door, indoor1 = site["door"], site["indoor1"]
    callee = Answering(indoor1.calls, auto_answer=True)
    indoor1.calls.set_listener(callee)
    caller_app = Answering(door.calls)
    door.calls.set_listener(caller_app)
    call, progress = await place_call(door.calls, props_for(door.calls, "indoor1", video=True))
    await progress.wait_status(CallStatus.CONNECTED)
    incoming, incoming_progress = await callee.next_call()
    session = call.session
    assert session is not None
    await asyncio.wait_for(session.first_video.wait(), 10)

    # mallory's own peer: the forged "answer" carries its SDP, so had the door believed
    # it, the door's media would have gone to mallory (the forged path)
    mallory_peer = MediaSession(
        MediaSettings(video=True, ice=site.ice), video_source=None, audio_source=None, speaker=None
    )
    try:
        forged = seal_for(
            site,
            Identity.generate(),
            sender="indoor1",
            recipient="door",
            type="answer",
            call_id=call.call_id,
            body={"sdp": await mallory_peer.create_offer()},
        )
        await publish_raw(site, "door", forged)
        await wait_rejected(door, RejectReason.BAD_SIGNATURE, 1)
        assert logged_reason(caplog, "door", RejectReason.BAD_SIGNATURE) == 1
        assert door.calls.dropped_messages()["bad_signature"] == 1
        received = incoming.session
        assert received is not None
        before = received.stats.video_frames
        await eventually(lambda: received.stats.video_frames > before + 10, "video at indoor1")
        assert mallory_peer.state in ("new", "connecting")
        assert mallory_peer.stats.video_frames == 0
        assert mallory_peer.stats.audio_frames == 0
        assert not call.is_ended() and call.session is session
        assert progress.terminal() == [] and incoming_progress.terminal() == []
        assert caller_app.errors == []
    finally:
        await mallory_peer.close()
    await call.hangup()
    await incoming_progress.wait_until(lambda: bool(incoming_progress.terminal()))
    assert progress.terminal() == [CallStatus.COMPLETE]
    await place_and_complete_call(site)
