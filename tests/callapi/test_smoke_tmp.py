from __future__ import annotations
import time
from device.simsite import SimSite
from services.callapi import CallStatus
from callapi_helpers import connect, speaker, hang_up


async def test_smoke(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    t = time.monotonic()
    pair = await connect(site, "door", "indoor1")
    print("connected", time.monotonic() - t)
    s = speaker(site, "indoor1")
    n = s.samples_played
    await s.wait_for_samples(n + 24000, 10)
    print("freq", s.dominant_frequency(300), speaker(site, "door").dominant_frequency(300))
    print(pair.caller_progress.statuses, pair.callee_progress.statuses)
    print(pair.caller_session.video_target_bitrate())
    await hang_up(pair)
    print(pair.caller_progress.statuses, pair.callee_progress.statuses, pair.caller_progress.hangups, pair.callee_progress.hangups)
    print("total", time.monotonic() - t)
