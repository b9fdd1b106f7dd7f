"""Network outages ridden out inside the call; a peer that is gone told apart from one cut off.

The media path is cut for every session of the process (the aioice sockets drop what they
send), so a fresh path tried during the outage fails as it would on a real network; the
signaling is the in-memory broker, whose ``cut`` publishes the endpoint's last will.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aioice.ice import StunProtocol
from harness.simsite import EndpointSpec, SimSite
from memory_broker import MemoryBroker
from support import Answering, MakeSite, Progress, place_call, props_for

from services.callapi import Call, CallStatus
from services.callapi.supervision import GONE_CONFIRM_S, RESTART_RETRY_S

OUTAGE_S = RESTART_RETRY_S * 2
"""Long enough for fresh paths to be tried, and to fail, during the outage."""


class MediaPath:
    """Cuts and restores the media path of every session in this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = False
        send_data = StunProtocol.send_data
        send_stun = StunProtocol.send_stun

        async def gated_data(protocol: StunProtocol, data: bytes, addr: Any) -> None:
            if not self.down:
                await send_data(protocol, data, addr)

        def gated_stun(protocol: StunProtocol, message: Any, addr: Any) -> None:
            if not self.down:
                send_stun(protocol, message, addr)

        monkeypatch.setattr(StunProtocol, "send_data", gated_data)
        monkeypatch.setattr(StunProtocol, "send_stun", gated_stun)


@pytest.fixture
def media_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[MediaPath]:
    """The process's media path, up."""
    yield MediaPath(monkeypatch)


async def connected_call(
    make_site: MakeSite, broker: MemoryBroker
) -> tuple[SimSite, Call, Progress, Call, Progress]:
    """A door-to-indoor call, answered, with audio flowing both ways."""
    site = await make_site(
        EndpointSpec("door", role="door"), EndpointSpec("indoor1"), transports=broker.transport
    )
    door, indoor = site["door"].calls, site["indoor1"].calls
    app = Answering(indoor, auto_answer=True)
    indoor.set_listener(app)
    call, progress = await place_call(door, props_for(door, "indoor1"))
    await progress.wait_status(CallStatus.CONNECTED)
    incoming, incoming_progress = await app.next_call()
    await incoming_progress.wait_status(CallStatus.CONNECTED)
    for session in (call.session, incoming.session):
        assert session is not None
        await asyncio.wait_for(session.first_audio.wait(), 10)
    return site, call, progress, incoming, incoming_progress


async def media_flows(call: Call) -> None:
    """Wait until the call's current session receives audio again."""
    start = call.session.stats.audio_frames if call.session else 0

    def more() -> bool:
        return call.session is not None and call.session.stats.audio_frames > start + 10

    for _ in range(100):
        if more():
            return
        await asyncio.sleep(0.1)  # polled: audio frames are counted, not signalled
    raise AssertionError(f"{call.call_id}: no audio after the path returned")


async def test_an_outage_of_media_and_broker_is_ridden_out_and_the_call_ends_complete(
    make_site: MakeSite, media_path: MediaPath
) -> None:
    broker = MemoryBroker()
    site, call, progress, incoming, incoming_progress = await connected_call(make_site, broker)
    try:
        media_path.down = True
        await progress.wait_status(CallStatus.RECONNECTING)
        await incoming_progress.wait_status(CallStatus.RECONNECTING)
        # The indoor unit's broker connection times out after its media stopped: its will.
        broker.cut("indoor1", reconnect=False)
        await site["door"].signaling.wait_presence("indoor1", False, timeout=5)
        await asyncio.sleep(OUTAGE_S)  # the outage itself
        assert not call.is_ended() and not incoming.is_ended()
        assert call.status == CallStatus.RECONNECTING

        media_path.down = False
        broker.restore("indoor1")
        await progress.wait_until(lambda: progress.statuses[-1] == CallStatus.CONNECTED)
        await incoming_progress.wait_until(
            lambda: incoming_progress.statuses[-1] == CallStatus.CONNECTED
        )
        await media_flows(call)
        await media_flows(incoming)
        assert progress.terminal() == [] and incoming_progress.terminal() == []

        await call.hangup()
        await incoming_progress.wait_status(CallStatus.COMPLETE)
        assert progress.terminal() == [CallStatus.COMPLETE]
    finally:
        media_path.down = False


async def test_a_last_will_while_media_goes_on_keeps_the_call(
    make_site: MakeSite, media_path: MediaPath
) -> None:
    broker = MemoryBroker()
    site, call, progress, _, _ = await connected_call(make_site, broker)
    loop = asyncio.get_running_loop()

    broker.cut("indoor1", reconnect=False)  # a will the peer's media contradicts
    await site["door"].signaling.wait_presence("indoor1", False, timeout=5)
    will_seen = loop.time()
    session = call.session
    assert session is not None
    for _ in range(50):
        last = session.stats.last_media_at
        if last is not None and last > will_seen + GONE_CONFIRM_S + 0.2:
            break
        await asyncio.sleep(0.1)  # polled: media arrival is counted, not signalled
    assert not call.is_ended(), "an unverified last will ended a call whose media went on"
    assert progress.statuses[-1] == CallStatus.CONNECTED

    broker.restore("indoor1")
    await call.hangup()
    assert progress.terminal() == [CallStatus.COMPLETE]


async def test_a_peer_cut_off_past_the_grace_ends_on_both_sides(
    make_site: MakeSite, media_path: MediaPath
) -> None:
    broker = MemoryBroker()
    _, call, progress, incoming, incoming_progress = await connected_call(make_site, broker)
    call.props.reconnect_grace_s = incoming.props.reconnect_grace_s = 2.0
    try:
        media_path.down = True
        await progress.wait_status(CallStatus.RECONNECTING)
        broker.cut("indoor1", reconnect=False)
        await progress.wait_status(CallStatus.NETWORKERROR, timeout=10)
        await incoming_progress.wait_status(CallStatus.NETWORKERROR, timeout=10)
        for recorded in (progress, incoming_progress):
            waited = (
                recorded.times[CallStatus.NETWORKERROR] - recorded.times[CallStatus.RECONNECTING]
            )
            assert 2.0 <= waited < 4.0
    finally:
        media_path.down = False
