"""The audio receive path inside aiortc: the hook, the SDP, and a real call over loopback."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpCodecParameters
from aiortc.codecs import CODECS
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket
from opus_stream import opus_packets
from support import lose_at_receiver, wait_for

import services.media.session as session_module
from hal.audio import VoiceMicrophone
from hal.media_types import AudioFormat
from services.media.audio_receive import (
    AiortcInternalsError,
    PlayoutTrack,
    advertise_inband_fec,
    check_aiortc_internals,
)
from services.media.errors import MediaError
from services.media.ice import LOOPBACK
from services.media.opus_send import AdaptiveOpusEncoder
from services.media.session import AudioFec, MediaSession, MediaSettings
from services.media.tracks import MicrophoneSource


async def test_aiortc_receiver_still_has_the_hook_the_playout_uses() -> None:
    """Fails on an aiortc upgrade that moves the jitter buffer, the codec map or add()."""
    pc = RTCPeerConnection()
    try:
        check_aiortc_internals(pc.addTransceiver("audio").receiver)
    finally:
        await pc.close()


def test_a_receiver_without_the_hook_is_refused_by_name() -> None:
    with pytest.raises(AiortcInternalsError, match="_RTCRtpReceiver__jitter_buffer"):
        check_aiortc_internals(object())  # type: ignore[arg-type]


def test_inband_fec_is_added_to_the_opus_fmtp() -> None:
    bare = (
        "m=audio 9 UDP/TLS/RTP/SAVPF 96 0\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    assert advertise_inband_fec(bare) == (
        "m=audio 9 UDP/TLS/RTP/SAVPF 96 0\r\na=rtpmap:96 opus/48000/2\r\n"
        "a=fmtp:96 useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    browser = "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10\r\n"
    assert advertise_inband_fec(browser) == (
        "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
    )
    assert advertise_inband_fec(advertise_inband_fec(browser)) == advertise_inband_fec(browser)


class SteppedClock:
    """A clock whose sleeps return at once, moving its time: the track's pacing, no waiting."""

    def __init__(self) -> None:
        self.time = 100.0

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.time += max(0.0, seconds)
        await asyncio.sleep(0)


async def test_playout_track_paces_one_frame_per_20_ms_and_ends_when_stopped() -> None:
    clock = SteppedClock()
    track = PlayoutTrack(clock)
    opus = next(c for c in CODECS["audio"] if c.name == "opus")
    for seq, payload in enumerate(opus_packets(0.2)):  # a burst, all at once
        packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 960)
        track.push(opus, packet, payload)
    played_at = []
    for _ in range(5):
        out = await track.recv_frame()
        assert out.received and out.frame.samples == 960
        played_at.append(clock.now())
    assert 100.0 < played_at[0] < 100.2  # after the target delay
    assert np.diff(played_at) == pytest.approx([0.02] * 4)
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


def the_playout(session: MediaSession) -> PlayoutTrack:
    """The session's one audio playout (installed)."""
    (playout,) = session._playouts.values()
    assert playout is not None
    return playout


def held(playout: PlayoutTrack) -> int:
    """How many packets ``playout`` holds."""
    stats = playout.stats()
    assert stats is not None
    return stats.packets_held


def drop_every(playout: PlayoutTrack, nth: int) -> list[int]:
    """Lose every ``nth`` audio packet on its way into ``playout``; returns the lost numbers."""
    push: Callable[[RTCRtpCodecParameters, RtpPacket, bytes], None] = playout.push
    lost: list[int] = []

    def lossy(codec: RTCRtpCodecParameters, packet: RtpPacket, payload: bytes) -> None:
        if packet.sequence_number % nth == 0:
            lost.append(packet.sequence_number)
            return
        push(codec, packet, payload)

    playout.push = lossy  # type: ignore[method-assign]
    return lost


@asynccontextmanager
async def audio_call(*, fec: AudioFec = "on") -> AsyncIterator[tuple[MediaSession, MediaSession]]:
    """Two sessions on loopback (no STUN), each sending a speaking microphone's Opus."""
    sources = [MicrophoneSource(VoiceMicrophone(f"mic{i}"), AudioFormat()) for i in (0, 1)]
    sessions = [
        MediaSession(
            MediaSettings(video=False, ice=LOOPBACK, ice_servers=(), audio_fec=fec),
            video_source=None,
            audio_source=source.shared,
            speaker=None,
            label=label,
        )
        for source, label in zip(sources, ("caller", "callee"), strict=True)
    ]
    caller, callee = sessions
    try:
        await caller.apply_answer(await callee.accept_offer(await caller.create_offer()))
        for session in sessions:
            session.set_sending(audio=True, video=False)
        yield caller, callee
    finally:
        for session in sessions:
            await session.close()
        for source in sources:
            await source.close()


async def test_call_audio_arrives_through_the_playout_and_fec_recovers_lost_packets() -> None:
    async with audio_call() as (caller, callee):
        assert re.search(r"a=fmtp:\d+ useinbandfec=1", caller._pc.localDescription.sdp)
        assert re.search(r"a=fmtp:\d+ useinbandfec=1", callee._pc.localDescription.sdp)
        playout = the_playout(callee)
        lost = drop_every(playout, 10)

        def recovered() -> int:
            stats = callee.audio_receive_stats()
            return stats.recovered_fec if stats else 0

        await wait_for(lambda: recovered() >= 3, "lost packets recovered from the caller's FEC")
        stats = callee.audio_receive_stats()
        assert stats is not None and len(lost) >= 3
        # FEC-recovered frames are the peer's audio; the decoded ones are too.
        assert callee.stats.audio_frames >= stats.frames_played + stats.recovered_fec


def concealed(session: MediaSession) -> int:
    stats = session.audio_receive_stats()
    return stats.concealed if stats else 0


async def test_concealment_is_not_media_from_the_peer() -> None:
    """A peer that stops sending goes silent for supervision, concealment or not."""
    async with audio_call() as (_caller, callee):
        await wait_for(lambda: callee.stats.audio_frames >= 10, "the caller's audio")
        playout = the_playout(callee)
        stopped = asyncio.Event()
        playout.push = lambda *args: stopped.set()  # type: ignore[method-assign]
        await asyncio.wait_for(stopped.wait(), 5)  # from now on nothing arrives
        before = concealed(callee)  # a frame inserted to keep the delay at its target counts
        await wait_for(
            lambda: concealed(callee) > before and held(playout) == 0,
            "the buffered audio played, then concealment of the missing audio",
        )
        last, frames = callee.stats.last_media_at, callee.stats.audio_frames
        await wait_for(lambda: concealed(callee) >= 5, "more concealment")
        assert callee.stats.last_media_at == last and callee.stats.audio_frames == frames


async def test_without_fec_audio_goes_out_in_low_delay_mode_and_losses_are_concealed() -> None:
    async with audio_call(fec="off") as (caller, callee):
        playout = the_playout(callee)
        drop_every(playout, 10)
        await wait_for(lambda: concealed(callee) >= 3, "lost packets concealed")
        assert caller.audio_lookahead_ms() == 2.5  # CELT only: 4 ms less than with FEC
        stats = callee.audio_receive_stats()
        assert stats is not None and stats.recovered_fec == 0


def lose_on_the_wire(session: MediaSession, nth: int) -> None:
    """Drop every ``nth`` audio packet before aiortc's receiver sees it (its reports show it)."""
    (receiver,) = [t.receiver for t in session._pc.getTransceivers() if t.kind == "audio"]
    lose_at_receiver(receiver, lambda packet: packet.sequence_number % nth == 0)


def audio_encoder(session: MediaSession) -> AdaptiveOpusEncoder:
    (sender,) = [t.sender for t in session._pc.getTransceivers() if t.kind == "audio"]
    encoder = getattr(sender, "_RTCRtpSender__encoder", None)
    assert isinstance(encoder, AdaptiveOpusEncoder)
    return encoder


async def test_auto_fec_starts_in_low_delay_and_turns_on_when_the_peer_reports_loss() -> None:
    async with audio_call(fec="auto") as (caller, callee):
        await wait_for(lambda: callee.stats.audio_frames >= 10, "the caller's audio")
        assert caller.audio_lookahead_ms() == 2.5 and not audio_encoder(caller).fec
        lose_on_the_wire(callee, 10)

        def recovered() -> int:
            stats = callee.audio_receive_stats()
            return stats.recovered_fec if stats else 0

        await wait_for(lambda: recovered() >= 3, "losses recovered from FEC once reported")
        assert audio_encoder(caller).fec and caller.audio_lookahead_ms() == 6.5


async def test_a_session_keeps_aiortcs_audio_path_when_the_playout_cannot_be_installed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def moved(receiver: object, clock: object = None) -> PlayoutTrack:
        raise MediaError("aiortc's RTCRtpReceiver internals changed (test)")

    monkeypatch.setattr(session_module, "install_playout", moved)
    async with audio_call() as (_caller, callee):
        await wait_for(lambda: callee.stats.audio_frames >= 10, "the caller's audio, by aiortc")
        assert callee.audio_receive_stats() is None
    assert any("audio playout not installed" in r.getMessage() for r in caplog.records)
