"""In-call controls as a person uses them: mute, DTMF and moving the sound to the handset."""

from __future__ import annotations

import asyncio

import pytest
from callapi_helpers import CallPair, connect, grows, ring, settle, speaker, stays_flat
from harness.simsite import SimSite

from services.callapi import AudioDevice, Call, CallError, CallStatus
from services.media.session import MediaSession

pytestmark = pytest.mark.site_broker("memory")  # the call state machine, not the broker

HALF_SECOND = 24000  # samples at 48 kHz
TONES = {"door": 440.0, "indoor1": 660.0}


def sides(pair: CallPair, muter: str) -> tuple[str, str]:
    """(who mutes, who listens) as site addresses."""
    return ("door", "indoor1") if muter == "caller" else ("indoor1", "door")


def calls_of(pair: CallPair, muter: str) -> tuple[Call, Call]:
    """(the muter's call, the listener's call)."""
    return (pair.caller, pair.callee) if muter == "caller" else (pair.callee, pair.caller)


@pytest.mark.parametrize("muter", ["caller", "callee"])
async def test_audio_mute_silences_the_peer_until_unmuted(
    door_and_indoor: SimSite, muter: str
) -> None:
    site = door_and_indoor
    pair = await connect(site, "door", "indoor1")
    me, peer = sides(pair, muter)
    my_call, peer_call = calls_of(pair, muter)
    my_progress, peer_progress = (
        (pair.caller_progress, pair.callee_progress)
        if muter == "caller"
        else (pair.callee_progress, pair.caller_progress)
    )
    peer_speaker, my_speaker = speaker(site, peer), speaker(site, me)
    peer_session = peer_call.session
    assert peer_session is not None
    await grows(lambda: peer_speaker.samples_played, HALF_SECOND // 2, what=f"audio at {peer}")

    assert await my_call.toggle_audio_mute() is True
    await peer_progress.wait_until(lambda: (True, False, True) in peer_progress.mutes)
    assert my_progress.mutes == [(True, False, False)]
    assert my_call.get_mute_status(audio=True, video=False)
    assert not my_call.get_mute_status(audio=False, video=True)
    assert not my_call.get_mute_status(audio=True, video=True)
    assert peer_call.get_mute_status(audio=True, video=False, remote=True)
    assert not peer_call.get_mute_status(audio=True, video=False)
    assert not my_call.get_mute_status(audio=True, video=False, remote=True)

    await settle(lambda: peer_speaker.samples_played)
    assert await stays_flat(lambda: peer_speaker.samples_played, 0.5)
    # the picture goes on, and the muted side still hears its peer
    await grows(lambda: peer_session.stats.video_frames, 10, what=f"video at {peer}")
    await grows(lambda: my_speaker.samples_played, HALF_SECOND // 4, what=f"audio at {me}")

    assert await my_call.toggle_audio_mute() is False
    await peer_progress.wait_until(lambda: peer_progress.mutes[-1] == (False, False, True))
    assert not peer_call.get_mute_status(audio=True, video=False, remote=True)
    await grows(lambda: peer_speaker.samples_played, HALF_SECOND, what=f"audio at {peer} again")
    assert peer_speaker.dominant_frequency(300) == pytest.approx(TONES[me], abs=10)
    for progress in (pair.caller_progress, pair.callee_progress):
        assert CallStatus.RECONNECTING not in progress.statuses
        assert progress.statuses[-1] == CallStatus.CONNECTED


@pytest.mark.parametrize("muter", ["caller", "callee"])
async def test_video_mute_freezes_the_peers_picture_until_unmuted(
    door_and_indoor: SimSite, muter: str
) -> None:
    site = door_and_indoor
    pair = await connect(site, "door", "indoor1")
    _, peer = sides(pair, muter)
    my_call, peer_call = calls_of(pair, muter)
    peer_progress = pair.callee_progress if muter == "caller" else pair.caller_progress
    peer_session: MediaSession | None = peer_call.session
    assert peer_session is not None
    stats = peer_session.stats
    await grows(lambda: stats.video_frames, 10, what=f"video at {peer}")

    assert await my_call.toggle_video_mute() is True
    await peer_progress.wait_until(lambda: (False, True, True) in peer_progress.mutes)
    assert my_call.get_mute_status(audio=False, video=True)
    assert peer_call.get_mute_status(audio=False, video=True, remote=True)
    await settle(lambda: stats.video_frames)
    assert await stays_flat(lambda: stats.video_frames, 0.5)
    await grows(lambda: speaker(site, peer).samples_played, HALF_SECOND // 2, what="audio")

    assert await my_call.toggle_video_mute() is False
    await peer_progress.wait_until(lambda: peer_progress.mutes[-1] == (False, False, True))
    await grows(lambda: stats.video_frames, 10, what=f"video at {peer} again")
    assert peer_call.status == CallStatus.CONNECTED and my_call.status == CallStatus.CONNECTED


async def test_muting_everything_is_not_a_lost_link(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    pair = await connect(site, "door", "indoor1")
    await pair.caller.mute(audio=True, video=True, enable=True)
    await pair.callee_progress.wait_until(lambda: (True, True, True) in pair.callee_progress.mutes)
    assert pair.caller.get_mute_status(audio=True, video=True)
    assert pair.callee.get_mute_status(audio=True, video=True, remote=True)
    await settle(lambda: pair.callee_session.stats.video_frames)
    # longer than the media-silence watchdog (1 s): the callee must not show RECONNECTING
    await asyncio.sleep(1.5)  # deliberate: nothing must happen during this window
    assert pair.callee_progress.statuses[-1] == CallStatus.CONNECTED
    assert CallStatus.RECONNECTING not in pair.callee_progress.statuses
    await pair.caller.mute(audio=True, video=True, enable=False)
    await grows(lambda: pair.callee_session.stats.video_frames, 10, what="video again")
    await grows(lambda: speaker(site, "indoor1").samples_played, HALF_SECOND, what="audio again")


async def test_dtmf_reaches_the_peer(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    pair = await connect(site, "door", "indoor1")
    await pair.caller.send_dtmf(5)
    await pair.callee_progress.wait_until(lambda: pair.callee_progress.dtmf == [5])
    await pair.callee.send_dtmf(11)  # '#'
    await pair.callee.send_dtmf(0)
    await pair.caller_progress.wait_until(lambda: pair.caller_progress.dtmf == [11, 0])
    for digit in (16, -1):
        with pytest.raises(CallError, match="dtmf"):
            await pair.caller.send_dtmf(digit)
    assert pair.callee_progress.dtmf == [5]


async def test_audio_moves_to_the_handset_and_back(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    pair = await connect(site, "door", "indoor1")
    loud, handset = speaker(site, "indoor1"), speaker(site, "indoor1", "handset")
    await grows(lambda: loud.samples_played, HALF_SECOND // 2, what="audio on the loudspeaker")
    assert handset.samples_played == 0

    await pair.callee.set_audio_device(AudioDevice.EARPIECE)
    assert pair.callee_progress.audio_devices == [(AudioDevice.EARPIECE, AudioDevice.SPEAKER)]
    await grows(lambda: handset.samples_played, HALF_SECOND, what="audio on the handset")
    assert handset.dominant_frequency(300) == pytest.approx(440.0, abs=10)
    await settle(lambda: loud.samples_played)
    assert await stays_flat(lambda: loud.samples_played, 0.3)

    with pytest.raises(CallError, match="headset"):
        await pair.callee.set_audio_device(AudioDevice.HEADSET)  # the sim board has none
    assert len(pair.callee_progress.audio_devices) == 1
    await grows(lambda: handset.samples_played, HALF_SECOND // 4, what="still on the handset")

    await pair.callee.set_audio_device(AudioDevice.SPEAKER)
    assert pair.callee_progress.audio_devices[-1] == (AudioDevice.SPEAKER, AudioDevice.EARPIECE)
    await grows(lambda: loud.samples_played, HALF_SECOND, what="audio on the loudspeaker again")
    await settle(lambda: handset.samples_played)
    assert await stays_flat(lambda: handset.samples_played, 0.3)


async def test_caller_mutes_while_ringing(door_and_indoor: SimSite) -> None:
    """A visitor's door mutes picture and sound before anyone answers: the preview stops."""
    site = door_and_indoor
    pair = await ring(site, "door", "indoor1")
    preview = pair.callee_session
    await preview.first_video.wait()
    await pair.caller.mute(audio=True, video=True, enable=True)
    await pair.callee_progress.wait_until(lambda: (True, True, True) in pair.callee_progress.mutes)
    await settle(lambda: preview.stats.video_frames)
    assert await stays_flat(lambda: preview.stats.video_frames, 0.3)

    await pair.callee.answer()
    await pair.caller_progress.wait_status(CallStatus.CONNECTED)
    await pair.callee_progress.wait_status(CallStatus.CONNECTED)
    assert pair.callee.get_mute_status(audio=True, video=True, remote=True)
    await grows(lambda: speaker(site, "door").samples_played, HALF_SECOND // 2, what="audio")
    assert speaker(site, "indoor1").samples_played == 0 or await stays_flat(
        lambda: speaker(site, "indoor1").samples_played, 0.3
    )
    await asyncio.sleep(1.5)  # deliberate: longer than the media-silence watchdog
    assert CallStatus.RECONNECTING not in pair.callee_progress.statuses
    await pair.caller.mute(audio=True, video=True, enable=False)
    await grows(lambda: preview.stats.video_frames, 10, what="video after unmute")
    await grows(lambda: speaker(site, "indoor1").samples_played, HALF_SECOND, what="audio")
    assert speaker(site, "indoor1").dominant_frequency(300) == pytest.approx(440.0, abs=10)
