"""A doorbell rings every indoor unit at once; the first to answer gets the visitor.

Site: the door (440 Hz microphone), indoor1 (660 Hz) and indoor2 (550 Hz).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from callapi_helpers import grows, settle, speaker, stays_flat
from harness.simsite import EndpointSpec, SimSite
from support import Answering, MakeSite, Progress, place_call, props_for

from services.callapi import Call, CallStatus, HangupReason, NotifyKind
from services.media.tones import RINGTONE

pytestmark = pytest.mark.site_broker("memory")  # the call state machine, not the broker

S = CallStatus
HALF_SECOND = 24000
UNITS = ("indoor1", "indoor2")


@pytest.fixture
async def flat(make_site: MakeSite) -> SimSite:
    """A door and two indoor units."""
    return await make_site(
        EndpointSpec("door", role="door", name="Front door", tone_hz=440.0),
        EndpointSpec("indoor1", role="indoor", name="Kitchen", tone_hz=660.0),
        EndpointSpec("indoor2", role="indoor", name="Hall", tone_hz=550.0),
    )


@dataclass
class Group:
    """The door's group call and each unit's app, call and listener."""

    call: Call
    progress: Progress
    apps: dict[str, Answering]
    calls: dict[str, Call]
    progresses: dict[str, Progress]


async def ring_group(site: SimSite, *units: str, ring_timeout_s: float | None = None) -> Group:
    """The door calls ``units`` at once; returns once every online unit rings."""
    apps = {u: Answering(site[u].calls) for u in UNITS}
    for unit, app in apps.items():
        site[unit].calls.set_listener(app)
    props = props_for(site["door"].calls, *units)
    if ring_timeout_s is not None:
        props.ring_timeout_s = ring_timeout_s
    call, progress = await place_call(site["door"].calls, props)
    calls, progresses = {}, {}
    for unit in units:
        if not site["door"].signaling.is_online(unit):
            continue
        calls[unit], progresses[unit] = await apps[unit].next_call()
        await progresses[unit].wait_status(S.INCOMING)
    await progress.wait_status(S.RINGING)
    return Group(call, progress, apps, calls, progresses)


async def ended(progress: Progress) -> None:
    await progress.wait_until(lambda: bool(progress.hangups))


def ringing(site: SimSite, unit: str) -> bool:
    tones = site[unit].calls.media.tones
    return tones is not None and tones.playing is RINGTONE


async def test_first_to_answer_gets_the_visitor_and_the_other_stops_ringing(
    flat: SimSite,
) -> None:
    site = flat
    group = await ring_group(site, *UNITS)
    for unit in UNITS:
        session = group.calls[unit].session
        assert session is not None
        await session.first_video.wait()  # both show the visitor
        assert ringing(site, unit)
        assert not group.calls[unit].is_answered()

    kitchen_session = group.calls["indoor1"].session
    assert kitchen_session is not None
    await group.calls["indoor2"].answer()
    await group.progress.wait_status(S.CONNECTED)
    await group.progresses["indoor2"].wait_status(S.CONNECTED)
    await ended(group.progresses["indoor1"])

    assert group.progress.statuses == [S.INPROGRESS, S.RINGING, S.ANSWER, S.CONNECTED]
    assert group.call.peer.address == "indoor2"
    assert list(group.call.legs) == ["indoor2"]
    assert group.progresses["indoor2"].statuses == [S.INCOMING, S.ANSWER, S.CONNECTED]
    assert group.progresses["indoor1"].statuses == [S.INCOMING, S.CANCEL]
    assert group.progresses["indoor1"].hangups == [HangupReason.REMOTE]
    assert group.apps["indoor1"].notified == []  # answered elsewhere: not a missed call
    assert site["indoor1"].calls.missed_calls == 0
    assert not site["indoor1"].calls.is_call_in_progress()
    assert not ringing(site, "indoor1")
    kitchen = speaker(site, "indoor1")
    await settle(lambda: kitchen.samples_played)
    assert await stays_flat(lambda: kitchen.samples_played, 0.3)
    assert await stays_flat(lambda: kitchen_session.stats.video_frames, 0.1)

    # the door and the hall talk
    hall_session = group.calls["indoor2"].session
    assert hall_session is not None
    await grows(lambda: hall_session.stats.video_frames, 10, what="video at the hall")
    await grows(lambda: speaker(site, "door").samples_played, HALF_SECOND, what="hall audio")
    await grows(lambda: speaker(site, "indoor2").samples_played, HALF_SECOND, what="door audio")
    assert speaker(site, "door").dominant_frequency(300) == pytest.approx(550.0, abs=10)
    assert speaker(site, "indoor2").dominant_frequency(300) == pytest.approx(440.0, abs=10)

    await group.call.hangup()
    await ended(group.progress)
    await ended(group.progresses["indoor2"])
    assert group.progress.terminal() == [S.COMPLETE]
    assert group.progresses["indoor2"].terminal() == [S.COMPLETE]
    assert group.progresses["indoor1"].terminal() == [S.CANCEL]
    assert group.progress.hangups == [HangupReason.USER]


async def test_both_answer_at_once_only_one_gets_the_call(flat: SimSite) -> None:
    site = flat
    group = await ring_group(site, *UNITS)
    await asyncio.gather(*(group.calls[u].answer() for u in UNITS))
    await group.progress.wait_status(S.CONNECTED)
    winner = group.call.peer.address
    loser = next(u for u in UNITS if u != winner)
    await ended(group.progresses[loser])
    await group.progresses[winner].wait_status(S.CONNECTED)

    assert group.progress.statuses == [S.INPROGRESS, S.RINGING, S.ANSWER, S.CONNECTED]
    assert group.progresses[loser].terminal() == [S.CANCEL]
    assert group.apps[loser].notified == []
    assert not site[loser].calls.is_call_in_progress()
    assert group.progresses[winner].terminal() == []
    await grows(lambda: speaker(site, winner).samples_played, HALF_SECOND, what="door audio")
    await group.call.hangup()
    await ended(group.progresses[winner])
    assert group.progress.terminal() == [S.COMPLETE]


async def test_one_declines_the_other_can_still_answer(flat: SimSite) -> None:
    site = flat
    group = await ring_group(site, *UNITS)
    await group.calls["indoor1"].hangup()
    await ended(group.progresses["indoor1"])
    assert group.progresses["indoor1"].statuses == [S.INCOMING, S.CANCEL]
    await asyncio.sleep(0.3)  # deliberate: the door must not give up on the group
    assert group.progress.terminal() == []
    assert ringing(site, "indoor2")

    await group.calls["indoor2"].answer()
    await group.progress.wait_status(S.CONNECTED)
    assert group.call.peer.address == "indoor2"
    await group.call.hangup()
    await ended(group.progresses["indoor2"])
    assert group.progress.terminal() == [S.COMPLETE]
    assert group.progresses["indoor2"].terminal() == [S.COMPLETE]


async def test_everyone_declines_the_door_hears_busy_once(flat: SimSite) -> None:
    site = flat
    group = await ring_group(site, *UNITS)
    await asyncio.gather(*(group.calls[u].hangup() for u in UNITS))
    await ended(group.progress)
    assert group.progress.statuses == [S.INPROGRESS, S.RINGING, S.BUSY]
    assert group.progress.hangups == [HangupReason.REMOTE]
    for unit in UNITS:
        assert group.progresses[unit].terminal() == [S.CANCEL]
    assert not site["door"].calls.is_call_in_progress()


async def test_door_gives_up_every_unit_has_a_missed_call(flat: SimSite) -> None:
    site = flat
    group = await ring_group(site, *UNITS)
    await group.call.hangup()
    await ended(group.progress)
    for unit in UNITS:
        await ended(group.progresses[unit])
        assert group.progresses[unit].statuses == [S.INCOMING, S.CANCEL]
        assert group.apps[unit].notified == [(NotifyKind.MISSED, "door")]
        assert not ringing(site, unit)
    assert group.progress.statuses == [S.INPROGRESS, S.RINGING, S.CANCEL]
    assert group.progress.hangups == [HangupReason.USER]


async def test_nobody_answers_in_time(flat: SimSite) -> None:
    site = flat
    group = await ring_group(site, *UNITS, ring_timeout_s=1.0)
    await ended(group.progress)
    assert group.progress.statuses == [S.INPROGRESS, S.RINGING, S.NOANSWER]
    for unit in UNITS:
        await ended(group.progresses[unit])
        assert group.progresses[unit].statuses == [S.INCOMING, S.NOANSWER]
        assert group.apps[unit].notified == [(NotifyKind.MISSED, "door")]


async def test_an_offline_unit_does_not_stop_the_others_ringing(flat: SimSite) -> None:
    site = flat
    await site["indoor1"].calls.close()
    await site["door"].signaling.wait_presence("indoor1", False, 10)
    group = await ring_group(site, *UNITS)
    assert list(group.calls) == ["indoor2"]
    await group.calls["indoor2"].answer()
    await group.progress.wait_status(S.CONNECTED)
    assert group.call.peer.address == "indoor2"
    await group.calls["indoor2"].hangup()
    await ended(group.progress)
    assert group.progress.terminal() == [S.COMPLETE]
    assert group.progress.hangups == [HangupReason.REMOTE]
