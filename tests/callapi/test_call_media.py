"""What a person sees and hears in a call: two-way media, the visitor preview, tones, formats.

The door's simulated microphone plays 440 Hz and indoor1's 660 Hz; cameras stamp a frame
counter into every frame (hal/camera.py), and the two cameras of a board differ in hue.
"""

from __future__ import annotations

import itertools

import pytest
from callapi_helpers import (
    connect,
    grows,
    mean_chroma_u,
    ring,
    settle,
    speaker,
    stays_flat,
    tone_level,
    wait_for,
)
from harness.simsite import SimSite
from support import TIMEOUT, props_for

from hal.camera import decode_stamp
from services.callapi import CallError, CallStatus, InCallSound, VideoCodec
from services.media.encoder import CappedEncoder

pytestmark = pytest.mark.site_broker("memory")  # the call state machine, not the broker

HALF_SECOND = 24000  # samples at 48 kHz


async def test_audio_and_video_flow_both_ways_after_answer(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    pair = await connect(site, "door", "indoor1")
    indoor_speaker, door_speaker = speaker(site, "indoor1"), speaker(site, "door")

    await grows(lambda: indoor_speaker.samples_played, HALF_SECOND, what="door audio at indoor1")
    await grows(lambda: door_speaker.samples_played, HALF_SECOND, what="indoor1 audio at door")
    await wait_for(lambda: pair.callee_session.stats.video_frames >= 15, what="video at indoor1")
    await wait_for(lambda: pair.caller_session.stats.video_frames >= 15, what="video at door")

    assert indoor_speaker.dominant_frequency(300) == pytest.approx(440.0, abs=10)
    assert door_speaker.dominant_frequency(300) == pytest.approx(660.0, abs=10)
    assert indoor_speaker.rms(300) > 0.05 and door_speaker.rms(300) > 0.05
    for session in (pair.caller_session, pair.callee_session):
        assert session.stats.video_size == (640, 480)
        assert session.stats.audio_samples > 0
        assert session.video_frames_sent > 0 and session.audio_frames_sent > 0
    assert pair.caller.is_video_call() and pair.callee.is_video_call()


async def test_callee_sees_the_visitor_before_answering_and_sends_nothing(
    door_and_indoor: SimSite,
) -> None:
    site = door_and_indoor
    pair = await ring(site, "door", "indoor1")
    preview = pair.callee_session
    counters: list[int] = []
    preview.on_video_frame = lambda frame: counters.append(decode_stamp(frame)[0])
    await preview.first_video.wait()
    await wait_for(lambda: len(counters) >= 10, what="ten preview frames")

    # the stamps advance (the first frame is sent twice on purpose: services/media/tracks.py)
    assert all(b >= a for a, b in itertools.pairwise(counters)), counters
    assert len(set(counters)) >= len(counters) - 1 and counters[-1] > counters[0], counters
    assert preview.stats.video_size == (640, 480)
    assert not pair.callee.is_answered()
    # the callee's speaker only rings: nothing of the visitor is heard before answering
    assert preview.stats.audio_frames > 0
    assert preview.stats.audio_samples == 0 and not preview.first_audio.is_set()
    assert tone_level(speaker(site, "indoor1").recorded(), 440.0) < 0.01
    # and the callee sends neither picture nor sound before answering
    assert preview.video_frames_sent == 0 and preview.audio_frames_sent == 0
    caller_leg = pair.caller.legs["indoor1"].session
    assert caller_leg.stats.video_frames == 0 and caller_leg.stats.audio_samples == 0
    assert pair.caller.session is None  # nobody answered yet

    await pair.callee.answer()
    await pair.caller_progress.wait_status(CallStatus.CONNECTED)
    await wait_for(lambda: preview.video_frames_sent > 0, what="indoor1 video out")
    await preview.first_audio.wait()


async def test_ringback_and_ringtone_while_ringing_stop_at_answer(
    door_and_indoor: SimSite,
) -> None:
    site = door_and_indoor
    door_speaker, indoor_speaker = speaker(site, "door"), speaker(site, "indoor1")
    pair = await ring(site, "door", "indoor1")
    # checked right after the first 250 ms: ringback is 1 s on, 4 s off; the ringtone's
    # gaps (200 ms) are shorter than the window
    await door_speaker.wait_for_samples(HALF_SECOND // 2, TIMEOUT)
    assert door_speaker.dominant_frequency(250) == pytest.approx(425.0, abs=10)  # ringback
    await indoor_speaker.wait_for_samples(HALF_SECOND // 2, TIMEOUT)
    assert indoor_speaker.dominant_frequency(250) == pytest.approx(880.0, abs=10)  # ringtone
    assert pair.caller_progress.sounds == [(InCallSound.RINGING, True)]

    await pair.callee.answer()
    await pair.caller_progress.wait_status(CallStatus.CONNECTED)
    assert (InCallSound.RINGING, False) in pair.caller_progress.sounds
    assert site["door"].calls.media.tones is not None
    assert site["door"].calls.media.tones.playing is None
    await grows(lambda: door_speaker.samples_played, HALF_SECOND, what="call audio at the door")
    assert tone_level(door_speaker.recorded()[-HALF_SECOND // 2 :], 425.0) < 0.01
    assert door_speaker.dominant_frequency(250) == pytest.approx(660.0, abs=10)


async def test_answer_without_video_keeps_showing_the_visitor(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    pair = await ring(site, "door", "indoor1")
    await pair.callee_session.first_video.wait()  # the preview was there
    await pair.callee.answer(video=False)
    await pair.caller_progress.wait_status(CallStatus.CONNECTED)
    await pair.callee_progress.wait_status(CallStatus.CONNECTED)

    indoor_speaker, door_speaker = speaker(site, "indoor1"), speaker(site, "door")
    await grows(lambda: indoor_speaker.samples_played, HALF_SECOND, what="audio at indoor1")
    await grows(lambda: door_speaker.samples_played, HALF_SECOND, what="audio at the door")
    assert indoor_speaker.dominant_frequency(300) == pytest.approx(440.0, abs=10)
    assert door_speaker.dominant_frequency(300) == pytest.approx(660.0, abs=10)
    # the resident sends no picture, but still sees the visitor
    assert pair.callee_session.video_frames_sent == 0
    assert pair.caller_session.stats.video_frames == 0
    before = pair.callee_session.stats.video_frames
    await grows(lambda: pair.callee_session.stats.video_frames, before + 10, what="door video")
    assert pair.caller.is_video_call() and pair.callee.is_video_call()


async def test_change_video_format_mid_call(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    pair = await connect(site, "door", "indoor1")
    stats = pair.callee_session.stats
    await wait_for(lambda: stats.video_size == (640, 480), what="640x480 at indoor1")

    await pair.caller.change_video_format(320, 240, 15)
    await wait_for(lambda: stats.video_size == (320, 240), what="320x240 at indoor1")
    assert (320, 240, False) in pair.caller_progress.videos
    videos = pair.callee_progress.videos
    await wait_for(lambda: (320, 240, True) in videos, what="on_video(remote) at indoor1")
    assert videos.index((640, 480, True)) < videos.index((320, 240, True))
    await grows(lambda: stats.video_frames, 10, what="frames after the change")
    assert stats.video_size == (320, 240)
    assert pair.caller.status == CallStatus.CONNECTED


async def test_video_bitrate_cap_holds_against_the_peers_estimate(
    door_and_indoor: SimSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every bitrate set on an encoder: the cap when it is installed, then the peer's REMB
    asked: list[tuple[CappedEncoder, int]] = []
    original = CappedEncoder.__dict__["target_bitrate"]
    assert isinstance(original, property) and original.fset is not None
    setter = original.fset

    def spy(encoder: CappedEncoder, bitrate: int) -> None:
        asked.append((encoder, bitrate))
        setter(encoder, bitrate)

    monkeypatch.setattr(CappedEncoder, "target_bitrate", property(original.fget, spy))
    site = door_and_indoor
    props = props_for(site["door"].calls, "indoor1")
    props.video.bitrate_kbps = 300
    pair = await connect(site, "door", "indoor1", props=props)
    session = pair.caller_session
    await wait_for(lambda: session.video_target_bitrate() is not None, what="the encoder")
    door_encoder = asked[0][0]  # the door encodes first: the preview, before the answer

    def reports() -> int:
        return sum(1 for encoder, _ in asked if encoder is door_encoder)

    def target() -> int:
        bitrate = session.video_target_bitrate()
        assert bitrate is not None
        return bitrate

    for cap_kbps in (300, 400, 260):
        if cap_kbps != 300:
            pair.caller.set_video_bitrate(cap_kbps)
        assert 0 < target() <= cap_kbps * 1000
        await grows(reports, 1, what=f"a REMB report from indoor1 under {cap_kbps} kbps")
        assert 0 < target() <= cap_kbps * 1000, (cap_kbps, asked)
    await grows(lambda: pair.callee_session.stats.video_frames, 10, what="video goes on")


@pytest.mark.parametrize(("codec", "kbps"), [(VideoCodec.VP8, 100), (VideoCodec.H264, 400)])
def test_a_bitrate_cap_the_encoder_cannot_honour_is_refused(
    door_and_indoor: SimSite, codec: VideoCodec, kbps: int
) -> None:
    door = door_and_indoor["door"].calls
    props = props_for(door, "indoor1")
    props.video.codec = codec
    props.video.bitrate_kbps = kbps
    with pytest.raises(CallError, match=f"video.bitrate_kbps {kbps} must be within"):
        door.call(props)
    assert not door.is_call_in_progress()


async def test_switch_source_mid_call_shows_the_other_camera(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    pair = await connect(site, "door", "indoor1")
    stats = pair.callee_session.stats

    def hue() -> float:
        frame = stats.last_video_frame
        return mean_chroma_u(frame) if frame is not None else -1.0

    await wait_for(lambda: stats.video_frames >= 5, what="video at indoor1")
    main_hue = hue()
    assert main_hue > 170  # camera "main" (seed 0) is blue-ish

    assert await pair.caller.switch_source("aux") == "aux"
    assert pair.caller_progress.sources == ["aux"]
    await wait_for(lambda: hue() < 130, 5.0, "the aux camera picture at indoor1")
    await grows(lambda: stats.video_frames, 10, what="video after the switch")
    assert hue() < 130
    assert pair.caller.status == CallStatus.CONNECTED


async def test_no_video_after_the_call_ends(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    pair = await connect(site, "door", "indoor1")
    await wait_for(lambda: pair.callee_session.stats.video_frames >= 5, what="video")
    callee_session = pair.callee_session
    await pair.caller.hangup()
    await pair.callee_progress.wait_status(CallStatus.COMPLETE)
    await settle(lambda: speaker(site, "indoor1").samples_played)
    assert await stays_flat(lambda: speaker(site, "indoor1").samples_played, 0.3)
    assert await stays_flat(lambda: callee_session.stats.video_frames, 0.1)
