"""A door station with the site's TURN secret mints relay credentials into each invite.

Each callee gets its own (``"<expiry>:<callee>"``) inside the signed, encrypted invite and
uses them for that call; the door's own side uses its own. A bad ``ice_servers`` entry is
logged and refused, and the call rings all the same. A real coturn on loopback (the relay
refuses loopback peers, so these calls connect directly: the relay candidates are there).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from harness.simsite import SimSite
from harness.turnrelay import TurnRelay, start_turnserver, turnserver_path
from support import Answering, need, place_call, props_for

from services.callapi import CallStatus
from services.media.turn import credential_expiry, rest_password
from services.signaling.endpoint import Message, SignalingEndpoint

pytestmark = pytest.mark.site_broker("memory")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def relay(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TurnRelay]:
    need(turnserver_path() is not None, "turnserver (Debian's coturn)")
    server = await start_turnserver(tmp_path_factory.mktemp("turn"))
    yield server
    await server.close()


def keep_invites(signaling: SignalingEndpoint) -> list[dict[str, Any]]:
    """The decrypted bodies of the invites ``signaling`` receives, as they arrive."""
    bodies: list[dict[str, Any]] = []
    handle = signaling.on_message
    assert handle is not None

    async def spy(message: Message) -> None:
        if message.type == "invite":
            bodies.append(dict(message.body))
        await handle(message)

    signaling.on_message = spy
    return bodies


async def test_each_callee_gets_its_own_credentials_in_the_invite(
    door_and_indoor: SimSite, relay: TurnRelay
) -> None:
    site = door_and_indoor
    door, indoor = site["door"].calls, site["indoor1"].calls
    door.turn = relay.minter()
    invites = keep_invites(site["indoor1"].signaling)
    app = Answering(indoor)
    indoor.set_listener(app)
    call, progress = await place_call(door, props_for(door, "indoor1"))
    incoming, _ = await app.next_call()
    [servers] = [body["ice_servers"] for body in invites]
    [entry] = servers
    assert entry["urls"] == [relay.url]
    expiry = credential_expiry(entry["username"])
    assert entry["username"] == f"{expiry}:indoor1" and expiry is not None
    assert expiry >= time.time() + 3600 - 1
    assert entry["credential"] == rest_password(relay.secret, entry["username"])
    callee_session, door_session = incoming.session, call.legs["indoor1"].session
    assert callee_session is not None and door_session is not None
    [used] = callee_session.settings.ice_servers
    assert (used.urls, used.username) == ([relay.url], entry["username"])
    assert callee_session.relay_failure == ""
    [own] = door_session.settings.ice_servers
    assert str(own.username).endswith(":door") and door_session.relay_failure == ""
    await incoming.answer()
    await progress.wait_until(lambda: CallStatus.CONNECTED in progress.statuses)
    await call.hangup()


async def test_bad_invite_servers_are_refused_and_the_call_rings(
    door_and_indoor: SimSite, relay: TurnRelay, caplog: pytest.LogCaptureFixture
) -> None:
    site = door_and_indoor
    door, indoor = site["door"].calls, site["indoor1"].calls
    username = f"{int(time.time()) - 60}:indoor1"
    bad: list[Any] = [
        {"urls": ["http://relay.example"]},
        {"urls": [relay.url], "username": username, "credential": rest_password("x", username)},
        {"urls": [relay.url]},
        {"urls": ["turn:" + "a" * 300]},
        "turn:relay",
    ]
    door.invite_ice_servers = lambda address: bad  # type: ignore[method-assign]
    app = Answering(indoor)
    indoor.set_listener(app)
    call, progress = await place_call(door, props_for(door, "indoor1"))
    incoming, _ = await app.next_call()
    await progress.wait_until(lambda: CallStatus.RINGING in progress.statuses)
    assert incoming.session is not None and incoming.session.settings.ice_servers == ()
    refused = [r.getMessage() for r in caplog.records if "refused ice_servers" in r.getMessage()]
    assert len(refused) == 5, refused
    assert "ice_servers has 5 entries: only the first 4 used" in refused[0]
    assert "ice_servers[0]: URL 'http://relay.example': not a stun:" in refused[1]
    assert "the TURN credentials expired" in refused[2]
    assert "needs a username and credential" in refused[3]
    assert "longer than 256 characters" in refused[4]
    await incoming.answer()
    await progress.wait_until(lambda: CallStatus.CONNECTED in progress.statuses)
    await call.hangup()


async def test_offers_prepared_while_idle_are_taken_with_the_relay_on(
    door_and_indoor: SimSite, relay: TurnRelay
) -> None:
    site = door_and_indoor
    door = site["door"].calls
    door.turn = relay.minter()
    site["indoor1"].calls.set_listener(Answering(site["indoor1"].calls))
    props = props_for(door, "indoor1")
    await door.prewarm(props)
    [(_, prepared, sdp)] = door._offers._prepared  # the pool's own list: what a press takes
    assert "typ relay" in sdp
    call, _ = await place_call(door, props_for(door, "indoor1"))
    assert call.legs["indoor1"].session is prepared
    await call.hangup()
