"""Only a call's own peer changes a call; only its media can end it with SECURITYERROR.

Through a real mosquitto with real aiortc peers. Anyone with a broker login may publish into
an inbox, and every member of a ring group (and the broker) knows the call id. A message
that fails verification, or a genuine one from an endpoint that is not the call's peer, is
dropped: the call and its media go on, the drop is counted (``callbox status`` shows
``Calls.dropped_messages()``) and the call's listeners hear ``on_message_dropped``. A call
ends with SECURITYERROR when its peer's DTLS certificate is not the one its signed SDP
names, and the log says so.

Site: the door (440 Hz), indoor1 (660 Hz), indoor2 (880 Hz) and "mallory", a broker
account without an endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt
import pytest
from callapi_helpers import grows, wait_for
from harness.simsite import EndpointSpec, SimSite
from support import (
    Answering,
    MakeSite,
    Progress,
    place_call,
    props_for,
    sign_a_foreign_fingerprint,
)

from services.callapi import Call, CallErrorCode, CallStatus
from services.media.session import MediaSession
from services.signaling.envelope import seal
from services.signaling.identity import Identity
from services.signaling.topics import SiteTopics

S = CallStatus


@pytest.fixture
async def site(make_site: MakeSite) -> SimSite:
    """A door and two indoor units on a real mosquitto, and mallory's broker account."""
    return await make_site(
        EndpointSpec("door", role="door", name="Front door", tone_hz=440.0),
        EndpointSpec("indoor1", role="indoor", name="Flat 1", tone_hz=660.0),
        EndpointSpec("indoor2", role="indoor", name="Flat 2", tone_hz=880.0),
        extra_accounts=("mallory",),
    )


@dataclass(frozen=True)
class Dropped:
    """One ``on_message_dropped`` a listener heard."""

    sender: str
    message_type: str
    reason: str


class Watching(Progress):
    """Records statuses and the messages the call dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped: list[Dropped] = []

    def on_message_dropped(
        self, call: Call, sender: str, message_type: str, reason: str, detail: str
    ) -> None:
        assert detail, "a drop says why"
        self.dropped.append(Dropped(sender, message_type, reason))
        self._touch()


async def publish_as_mallory(site: SimSite, recipient: str, payload: bytes) -> None:
    """Publish ``payload`` into ``recipient``'s inbox from mallory's broker login."""
    settings = site.broker_settings
    async with aiomqtt.Client(
        settings.host,
        settings.port,
        username="mallory",
        password=site.broker.files.passwords["mallory"],
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
    ) as client:
        await client.publish(SiteTopics(site.site).inbox(recipient), payload, qos=1)


def forged(site: SimSite, *, sender: str, recipient: str, type: str, call_id: str) -> bytes:  # noqa: A002
    """A well-formed envelope claiming ``sender``, signed with a key that is not its own."""
    return seal(
        Identity.generate(),
        type=type,
        call_id=call_id,
        sender=sender,
        recipient=recipient,
        recipient_keys=site[recipient].identity.public_keys,
        body={"reason": "user"},
    )


async def answered_call(site: SimSite, *callees: str) -> tuple[Call, Watching, Call, Progress]:
    """The door rings ``callees``; the first answers. The door's call and the answerer's."""
    apps = {u: Answering(site[u].calls) for u in callees}
    for unit, app in apps.items():
        site[unit].calls.set_listener(app)
    door = site["door"].calls
    watching = Watching()
    call = door.call(props_for(door, *callees))
    assert call is not None
    await call.start(watching)
    rung = {}
    for unit in callees:
        rung[unit] = await apps[unit].next_call()
        await rung[unit][1].wait_status(S.INCOMING)
    incoming, incoming_progress = rung[callees[0]]
    await incoming.answer()
    await watching.wait_status(S.CONNECTED)
    await incoming_progress.wait_status(S.CONNECTED)
    return call, watching, incoming, incoming_progress


async def media_flows(call: Call, incoming: Call) -> None:
    """Video still arrives both ways."""
    for name, side in (("the door", call), ("the callee", incoming)):
        session = side.session
        assert session is not None
        await grows(video_frames(session), 10, what=f"video at {name}")


def video_frames(session: MediaSession) -> Callable[[], int]:
    """Reads how many video frames ``session`` decoded so far."""
    return lambda: session.stats.video_frames


async def test_a_forged_hangup_claiming_the_peer_leaves_the_answered_call_up(
    site: SimSite, caplog: pytest.LogCaptureFixture
) -> None:
    call, watching, incoming, incoming_progress = await answered_call(site, "indoor1")
    door = site["door"].calls
    hangup = forged(site, sender="indoor1", recipient="door", type="hangup", call_id=call.call_id)
    await publish_as_mallory(site, "door", hangup)

    await watching.wait_until(lambda: bool(watching.dropped or watching.terminal()))
    assert watching.terminal() == [], "the forged hangup ended the call"
    assert watching.dropped == [Dropped("indoor1", "", "bad_signature")]
    assert door.dropped_messages()["bad_signature"] == 1
    assert any(
        "failed verification (bad_signature)" in r.getMessage() and "goes on" in r.getMessage()
        for r in caplog.records
    )
    await media_flows(call, incoming)
    assert not call.is_ended() and call.status == S.CONNECTED
    assert watching.terminal() == [] and incoming_progress.terminal() == []

    await call.hangup()  # the real hangup still ends it, normally
    await incoming_progress.wait_until(lambda: bool(incoming_progress.terminal()))
    assert watching.terminal() == [S.COMPLETE]
    assert incoming_progress.terminal() == [S.COMPLETE]


async def test_a_ring_group_member_cannot_end_or_change_the_answered_call(
    site: SimSite,
) -> None:
    call, watching, incoming, incoming_progress = await answered_call(site, "indoor1", "indoor2")
    assert list(call.legs) == ["indoor1"]
    indoor1_watching = Watching()
    incoming.add_listener(indoor1_watching)
    member = site["indoor2"].signaling  # pinned by both: its messages pass every check
    for message_type, body in (
        ("hangup", {"reason": "user"}),
        ("cancel", {"reason": "caller"}),
        ("mute", {"audio": True, "video": True}),
    ):
        await member.send("indoor1", message_type, call.call_id, body)
    await member.send("door", "hangup", call.call_id, {"reason": "user"})

    indoor1 = site["indoor1"].calls
    await wait_for(lambda: indoor1.dropped_messages().get("wrong_call", 0) == 3, what="3 drops")
    await indoor1_watching.wait_until(lambda: len(indoor1_watching.dropped) == 3)
    assert {d.message_type for d in indoor1_watching.dropped} == {"hangup", "cancel", "mute"}
    assert {(d.sender, d.reason) for d in indoor1_watching.dropped} == {("indoor2", "wrong_call")}
    await media_flows(call, incoming)
    assert not incoming.get_mute_status(audio=True, video=True, remote=True)
    assert not call.is_ended() and not incoming.is_ended()
    assert watching.terminal() == [] and incoming_progress.terminal() == []
    await call.hangup()
    await incoming_progress.wait_until(lambda: bool(incoming_progress.terminal()))
    assert incoming_progress.terminal() == [S.COMPLETE]


async def test_a_dtls_fingerprint_mismatch_ends_with_securityerror_and_says_so(
    site: SimSite, caplog: pytest.LogCaptureFixture
) -> None:
    sign_a_foreign_fingerprint(site, "indoor1")
    door, indoor = site["door"].calls, site["indoor1"].calls
    callee = Answering(indoor)
    indoor.set_listener(callee)
    caller_app = Answering(door)
    door.set_listener(caller_app)
    _, progress = await place_call(door, props_for(door, "indoor1"))
    await progress.wait_status(S.SECURITYERROR)
    assert progress.terminal() == [S.SECURITYERROR]
    await caller_app.wait_until(lambda: caller_app.errors == [CallErrorCode.SECURITY])
    _, incoming_progress = await callee.next_call()
    await incoming_progress.wait_until(lambda: bool(incoming_progress.terminal()))
    assert incoming_progress.terminal() == [S.SECURITYERROR]

    def said(address: str, *words: str) -> bool:
        return any(
            r.levelno >= logging.ERROR
            and r.getMessage().startswith(f"{address}: ")
            and all(w in r.getMessage() for w in words)
            for r in caplog.records
        )

    assert said("door", "SECURITYERROR", "DTLS fingerprint", "indoor1")
    assert said("indoor1", "DTLS fingerprint", "door")
    assert door.dropped_messages() == {}, "no message failed: the media did"
