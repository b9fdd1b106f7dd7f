"""Losing the peer or the media path mid-call: a killed peer, a cut network, the grace period."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from harness.peer_process import start_peer_process
from harness.simsite import EndpointSpec, SimSite
from support import Answering, MakeSite, place_call, props_for

from services.callapi import CallStatus, HangupReason
from services.media.session import MediaSession


def cut_network(session: MediaSession) -> None:
    """Drop every datagram this session's ICE sockets send: the path is gone, signaling is not."""
    for transceiver in session._pc.getTransceivers():
        connection = transceiver.sender.transport.transport.iceGatherer._connection
        for protocol in connection._protocols:
            protocol.transport.sendto = lambda *args, **kwargs: None  # type: ignore[method-assign]


async def test_killed_peer_ends_the_call_within_one_second(
    make_site: MakeSite, tmp_path: Path
) -> None:
    site = await make_site(EndpointSpec("door", role="door"), extra_accounts=("flat9",))
    peer = await start_peer_process(site, "flat9", tmp_path)
    try:
        door = site["door"].calls
        call, progress = await place_call(door, props_for(door, "flat9"))
        await progress.wait_status(CallStatus.CONNECTED)
        assert call.session is not None
        await asyncio.wait_for(call.session.first_audio.wait(), 10)

        killed_at = time.monotonic()
        peer.send_signal(signal.SIGKILL)
        await progress.wait_status(CallStatus.NETWORKERROR, timeout=5)
        detected_ms = (progress.times[CallStatus.NETWORKERROR] - killed_at) * 1000
        assert detected_ms < 1000, f"the dead peer was noticed after {detected_ms:.0f} ms"
        await progress.wait_until(lambda: bool(progress.hangups))
        assert progress.terminal() == [CallStatus.NETWORKERROR]
        assert progress.hangups == [HangupReason.ERROR]
        assert not door.is_call_in_progress()
    finally:
        if peer.returncode is None:
            peer.kill()
        await peer.wait()


async def test_lost_media_reconnects_inside_the_same_call(door_and_indoor: SimSite) -> None:
    door, indoor = door_and_indoor["door"].calls, door_and_indoor["indoor1"].calls
    app = Answering(indoor, auto_answer=True)
    indoor.set_listener(app)
    call, progress = await place_call(door, props_for(door, "indoor1"))
    await progress.wait_status(CallStatus.CONNECTED)
    incoming, indoor_progress = await app.next_call()
    first = call.session
    assert first is not None and incoming.session is not None
    await asyncio.wait_for(first.first_audio.wait(), 10)

    cut_network(first)
    cut_network(incoming.session)
    await progress.wait_status(CallStatus.RECONNECTING)
    await progress.wait_until(lambda: progress.statuses[-1] == CallStatus.CONNECTED)
    second = call.session
    assert second is not None and second is not first
    await asyncio.wait_for(second.first_audio.wait(), 10)
    await indoor_progress.wait_until(lambda: indoor_progress.statuses[-1] == CallStatus.CONNECTED)
    assert call.status == CallStatus.CONNECTED and not call.is_ended()
    assert progress.terminal() == []

    await call.hangup()
    await indoor_progress.wait_status(CallStatus.COMPLETE)


async def test_media_that_never_comes_back_ends_after_the_grace_period(
    door_and_indoor: SimSite,
) -> None:
    door, indoor = door_and_indoor["door"].calls, door_and_indoor["indoor1"].calls
    app = Answering(indoor, auto_answer=True)
    indoor.set_listener(app)
    props = props_for(door, "indoor1")
    props.reconnect_grace_s = 1.0
    call, progress = await place_call(door, props)
    await progress.wait_status(CallStatus.CONNECTED)
    incoming, indoor_progress = await app.next_call()
    assert call.session is not None and incoming.session is not None
    await asyncio.wait_for(call.session.first_audio.wait(), 10)

    # The peer is still online, but no reoffer gets through: it cannot be rebuilt.
    door_and_indoor["indoor1"].signaling.on_message = None
    cut_network(call.session)
    cut_network(incoming.session)
    await progress.wait_status(CallStatus.RECONNECTING)
    await indoor_progress.wait_status(CallStatus.RECONNECTING)
    await progress.wait_status(CallStatus.NETWORKERROR, timeout=10)
    assert progress.terminal() == [CallStatus.NETWORKERROR]
    waited = progress.times[CallStatus.NETWORKERROR] - progress.times[CallStatus.RECONNECTING]
    assert 1.0 <= waited < 3.0
