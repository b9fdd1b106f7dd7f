"""The TURN relay against a real coturn on loopback, with the configuration callbox generates.

Credentials minted as services/media/turn.py does get an allocation; wrong or expired ones
give a session a reason naming the server ("credentials refused" / "expired"); the relay
refuses to send to loopback and to private ranges other than the site's LAN; two aiortc
sessions with the relay-only policy carry media both ways through it (a second coturn
that, for this one test, may relay to loopback: callbox never writes those lines).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aioice import stun
from aiortc import RTCIceServer
from harness.turnrelay import LOOPBACK_PEERS, TurnRelay, start_turnserver, turnserver_path
from support import need

from hal.board import build_sim_board
from services.media.ice import LOOPBACK
from services.media.local import LocalMedia
from services.media.session import MediaSession, MediaSettings
from services.media.turn import IceServerEntry, rest_password

pytestmark = pytest.mark.asyncio(loop_scope="module")

SITE_LAN = "192.168.77.0/24"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def relay(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TurnRelay]:
    need(turnserver_path() is not None, "turnserver (Debian's coturn)")
    server = await start_turnserver(tmp_path_factory.mktemp("turn"), lan=(SITE_LAN,))
    yield server
    await server.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def loopback_relay(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TurnRelay]:
    need(turnserver_path() is not None, "turnserver (Debian's coturn)")
    server = await start_turnserver(tmp_path_factory.mktemp("turn-lo"), extra_lines=LOOPBACK_PEERS)
    yield server
    await server.close()


def rtc(entry: IceServerEntry) -> tuple[RTCIceServer, ...]:
    return (RTCIceServer(list(entry.urls), entry.username, entry.credential),)


async def offer_through(
    entry: IceServerEntry, *, relay_only: bool = True
) -> tuple[MediaSession, str]:
    session = MediaSession(
        MediaSettings(video=False, ice=LOOPBACK, ice_servers=rtc(entry), relay_only=relay_only),
        video_source=None,
        audio_source=None,
        speaker=None,
        label="t",
    )
    return session, await session.create_offer()


async def test_minted_credentials_get_a_relayed_address(relay: TurnRelay) -> None:
    host, port = await relay.allocate(relay.credentials("door"))
    assert host == "127.0.0.1" and port > 0


async def test_wrong_credentials_name_the_server_and_say_refused(relay: TurnRelay) -> None:
    good = relay.credentials("phone")
    wrong = IceServerEntry(good.urls, good.username, rest_password("not-the-site-secret", "x"))
    session, sdp = await offer_through(wrong)
    try:
        assert f"TURN server 127.0.0.1:{relay.port}" in session.relay_failure
        assert "credentials refused" in session.relay_failure
        assert "typ relay" not in sdp
    finally:
        await session.close()


async def test_expired_credentials_say_expired(relay: TurnRelay) -> None:
    username = f"{int(time.time()) - 120}:phone"
    expired = IceServerEntry((relay.url,), username, rest_password(relay.secret, username))
    session, _ = await offer_through(expired)
    try:
        assert f"TURN server 127.0.0.1:{relay.port}" in session.relay_failure
        assert "expired" in session.relay_failure
    finally:
        await session.close()


async def test_valid_credentials_give_a_relay_candidate(relay: TurnRelay) -> None:
    session, sdp = await offer_through(relay.credentials("phone"))
    try:
        assert session.relay_failure == ""
        assert "typ relay" in sdp
    finally:
        await session.close()


@pytest.mark.parametrize("peer", ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.20"])
async def test_the_relay_refuses_loopback_and_private_peers(relay: TurnRelay, peer: str) -> None:
    transport, probe = await relay.open(relay.credentials("phone"))
    try:
        transport.sendto(b"hello", (peer, 9))
        error = await asyncio.wait_for(probe.errors.get(), 10)
        assert isinstance(error, stun.TransactionFailed), error
        assert error.response.attributes["ERROR-CODE"][0] == 403  # Forbidden IP
    finally:
        transport.close()


async def test_the_relay_sends_to_the_site_lan(relay: TurnRelay) -> None:
    transport, probe = await relay.open(relay.credentials("phone"))
    try:
        transport.sendto(b"hello", ("192.168.77.20", 9))  # the channel binds: no reply needed
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(probe.errors.get(), 2)
    finally:
        transport.close()


async def test_two_sessions_with_the_relay_only_policy_talk_through_it(
    loopback_relay: TurnRelay,
) -> None:
    media_a, media_b = LocalMedia(build_sim_board("a")), LocalMedia(build_sim_board("b"))
    await media_a.start()
    await media_b.start()
    sessions = [
        MediaSession(
            MediaSettings(
                ice=LOOPBACK, ice_servers=rtc(loopback_relay.credentials(name)), relay_only=True
            ),
            video_source=media.camera.shared if media.camera else None,
            audio_source=media.microphone.shared if media.microphone else None,
            speaker=media.speaker(),
            label=name,
        )
        for name, media in (("a", media_a), ("b", media_b))
    ]
    caller, callee = sessions
    try:
        offer = await caller.create_offer()
        assert "typ host" not in offer and "typ relay" in offer
        await caller.apply_answer(await callee.accept_offer(offer))
        for session in sessions:
            session.set_sending(audio=True, video=True)
            session.set_playback(True)
        for session in sessions:
            await asyncio.wait_for(session.first_audio.wait(), 15)
            await asyncio.wait_for(session.first_video.wait(), 15)
            assert session.selected_pair() == ("relay", "relay")
        await caller.close()
        assert caller.selected_pair() == ("relay", "relay"), "the path is kept for the call log"
    finally:
        for session in sessions:
            await session.close()
        await media_a.close()
        await media_b.close()


async def test_the_loopback_lines_are_the_tests_own(relay: TurnRelay) -> None:
    generated = await asyncio.to_thread((relay.directory / "turnserver.conf").read_text)
    assert "allow-loopback-peers" not in generated
    assert "denied-peer-ip=127.0.0.0-127.255.255.255" in generated
    assert "allowed-peer-ip=192.168.77.0-192.168.77.255" in generated


async def test_a_session_closes_promptly_when_its_relay_is_gone(tmp_path: Path) -> None:
    need(turnserver_path() is not None, "turnserver (Debian's coturn)")
    server = await start_turnserver(tmp_path / "turn")
    session, sdp = await offer_through(server.credentials("door"), relay_only=False)
    assert "typ relay" in sdp
    await server.close()  # the relay goes away (a reboot, the network) before the hangup
    started = time.monotonic()
    await session.close()
    assert time.monotonic() - started < 4.0  # aioice alone waits ~30 s per allocation
