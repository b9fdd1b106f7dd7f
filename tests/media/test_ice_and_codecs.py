"""What goes into the SDP: host candidates only from allowed interfaces, no public STUN server.

And the video codec the properties ask for.
"""

from __future__ import annotations

import asyncio
import re

import av
import pytest
from harness.simsite import SimSite
from support import Answering, place_call, props_for, wait_for

from hal.board import build_sim_board
from hal.camera import decode_stamp
from services.callapi import CallStatus, VideoCodec
from services.media.errors import MediaError, SecurityError
from services.media.ice import LOOPBACK, IcePolicy
from services.media.local import LocalMedia
from services.media.session import MediaSession, MediaSettings, check_fingerprints

pytestmark = pytest.mark.site_broker("memory")  # the call state machine, not the broker

CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ udp \d+ (\S+) \d+ typ (\w+)", re.MULTILINE)


async def offer_with(policy: IcePolicy) -> str:
    media = LocalMedia(build_sim_board("t"))
    session = MediaSession(
        MediaSettings(ice=policy),
        video_source=media.camera.shared if media.camera else None,
        audio_source=media.microphone.shared if media.microphone else None,
        speaker=None,
    )
    try:
        return await session.create_offer()
    finally:
        await session.close()
        await media.close()


async def test_loopback_policy_offers_only_127_0_0_1_and_no_server_reflexive() -> None:
    sdp = await offer_with(LOOPBACK)
    candidates = CANDIDATE.findall(sdp)
    assert candidates, sdp
    assert {address for address, _ in candidates} == {"127.0.0.1"}
    assert {kind for _, kind in candidates} == {"host"}


async def test_interface_policy_by_name_uses_that_interface_only() -> None:
    sdp = await offer_with(IcePolicy(interfaces=("lo",)))
    addresses = {address for address, _ in CANDIDATE.findall(sdp)}
    assert addresses and addresses <= {"127.0.0.1", "::1"}


async def test_policy_does_not_leak_into_other_gatherings() -> None:
    restricted, unrestricted = await asyncio.gather(
        offer_with(LOOPBACK), offer_with(IcePolicy(interfaces=("no-such-interface0",)))
    )
    assert {a for a, _ in CANDIDATE.findall(restricted)} == {"127.0.0.1"}
    assert CANDIDATE.findall(unrestricted) == []


def test_bad_ice_address_is_refused_with_its_value() -> None:
    with pytest.raises(MediaError, match="'eth0' is not an IP address"):
        IcePolicy(addresses=("eth0",))


def test_weak_or_missing_fingerprints_are_refused() -> None:
    with pytest.raises(SecurityError, match="no DTLS fingerprint"):
        check_fingerprints("v=0\r\n")
    with pytest.raises(SecurityError, match="sha-1"):
        check_fingerprints("v=0\r\na=fingerprint:sha-1 AA:BB\r\n")
    check_fingerprints("v=0\r\na=fingerprint:sha-256 AA:BB\r\n")


@pytest.mark.parametrize("codec", [VideoCodec.VP8, VideoCodec.H264])
async def test_call_uses_the_codec_of_the_properties(
    door_and_indoor: SimSite, codec: VideoCodec
) -> None:
    door, indoor = door_and_indoor["door"].calls, door_and_indoor["indoor1"].calls
    app = Answering(indoor, auto_answer=True)
    indoor.set_listener(app)
    props = props_for(door, "indoor1")
    props.video.codec = codec
    call, progress = await place_call(door, props)
    await progress.wait_status(CallStatus.CONNECTED)
    incoming, _ = await app.next_call()
    session = incoming.session
    assert session is not None
    counters: list[int] = []
    advanced = asyncio.Event()

    def decoded(frame: av.VideoFrame) -> None:
        counters.append(decode_stamp(frame)[0])
        if len(set(counters)) >= 5:
            advanced.set()

    session.on_video_frame = decoded
    await asyncio.wait_for(advanced.wait(), 10)
    assert counters == sorted(counters), "frames arrived out of order"
    sdp = session._pc.remoteDescription.sdp
    video_section = sdp[sdp.index("m=video") :]
    rtpmap = re.findall(r"a=rtpmap:\d+ (\w+)/90000", video_section)
    assert rtpmap[0] == codec.name, rtpmap
    await call.hangup()


async def audio_flows(session: MediaSession) -> None:
    """Wait until ``session`` has encoded audio and decoded some of the peer's."""
    await wait_for(lambda: session.audio_lookahead_ms() is not None, "audio encoded")
    await wait_for(lambda: session.stats.audio_frames >= 10, "the peer's audio decoded")


async def test_call_audio_goes_out_as_low_delay_opus_on_a_clean_link(
    door_and_indoor: SimSite,
) -> None:
    """Both ends encode Opus in low delay (2.5 ms lookahead) while the link loses nothing."""
    door, indoor = door_and_indoor["door"].calls, door_and_indoor["indoor1"].calls
    app = Answering(indoor, auto_answer=True)
    indoor.set_listener(app)
    call, progress = await place_call(door, props_for(door, "indoor1"))
    await progress.wait_status(CallStatus.CONNECTED)
    incoming, _ = await app.next_call()
    for session in (call.session, incoming.session):
        assert session is not None
        await audio_flows(session)
        assert session.audio_lookahead_ms() == 2.5
    await call.hangup()
