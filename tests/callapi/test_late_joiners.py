"""A phone that comes online while the door still rings joins the ring group.

A phone in a pocket is offline (its page closed) when the doorbell is pressed; the door
wakes it with a push, and when its page connects the door invites it too: it rings, shows
the visitor before anyone answers, and may answer; the first answer still wins.

Site: the door (440 Hz microphone), indoor1 (660 Hz) and a phone (550 Hz).
"""

from __future__ import annotations

import pytest
from harness.simsite import EndpointSpec, SimSite
from support import Answering, MakeSite, Progress, place_call, props_for, wait_for

from services.callapi import Call, Calls, CallStatus, HangupReason

pytestmark = pytest.mark.site_broker("memory")  # the call state machine, not the broker

S = CallStatus


@pytest.fixture
async def flat(make_site: MakeSite) -> SimSite:
    """A door, an indoor unit and a phone, all online."""
    return await make_site(
        EndpointSpec("door", role="door", name="Front door", tone_hz=440.0),
        EndpointSpec("indoor1", role="indoor", name="Kitchen", tone_hz=660.0),
        EndpointSpec("phone", role="phone", name="Anna's phone", tone_hz=550.0),
    )


async def go_offline(site: SimSite, address: str) -> None:
    """Close ``address`` (a phone whose page was closed) and wait until the door knows."""
    await site[address].calls.close()
    await site["door"].signaling.wait_presence(address, False, 10)


async def come_online(site: SimSite, address: str) -> Answering:
    """Reopen ``address`` (woken by the push) with an app that takes calls."""
    apps: list[Answering] = []

    def app(calls: Calls) -> Answering:
        apps.append(Answering(calls))
        return apps[0]

    await site.reconnect(address, app)
    return apps[0]


async def door_rings(
    site: SimSite,
    *targets: str,
    wakes: set[str],
    ring_timeout_s: float = 30.0,
    connect_timeout_s: float = 15.0,
) -> tuple[Call, Progress]:
    """The door calls ``targets``; it can wake the ones in ``wakes`` (they have a push)."""
    site["door"].calls.set_wake_check(lambda address: address in wakes)
    props = props_for(site["door"].calls, *targets)
    props.ring_timeout_s = ring_timeout_s
    props.connect_timeout_s = connect_timeout_s
    return await place_call(site["door"].calls, props)


async def ring_with_the_phone_away(
    site: SimSite, ring_timeout_s: float = 30.0
) -> tuple[Call, Progress, Answering]:
    """The phone's page is closed; the door rings the kitchen and wakes the phone.

    Returns the door's call, its progress and the kitchen's app (which takes calls).
    """
    await go_offline(site, "phone")
    kitchen = Answering(site["indoor1"].calls)
    site["indoor1"].calls.set_listener(kitchen)
    call, progress = await door_rings(
        site, "indoor1", "phone", wakes={"phone"}, ring_timeout_s=ring_timeout_s
    )
    return call, progress, kitchen


async def ring_with_everyone_away(
    site: SimSite, *, ring_timeout_s: float = 30.0, connect_timeout_s: float = 15.0
) -> tuple[Call, Progress]:
    """The kitchen and the phone are offline; the door rings both and can wake the phone."""
    await go_offline(site, "indoor1")
    await go_offline(site, "phone")
    return await door_rings(
        site,
        "indoor1",
        "phone",
        wakes={"phone"},
        ring_timeout_s=ring_timeout_s,
        connect_timeout_s=connect_timeout_s,
    )


async def test_a_phone_woken_while_the_door_rings_joins_and_its_answer_wins(
    flat: SimSite,
) -> None:
    site = flat
    call, progress, kitchen = await ring_with_the_phone_away(site)
    _kitchen_call, kitchen_progress = await kitchen.next_call()
    await progress.wait_status(S.RINGING)
    assert list(call.legs) == ["indoor1"]

    phone = await come_online(site, "phone")
    phone_call, phone_progress = await phone.next_call()
    await phone_progress.wait_status(S.INCOMING)
    session = phone_call.session
    assert session is not None
    await session.first_video.wait()  # the visitor before answering
    assert not phone_call.is_answered()
    assert sorted(call.legs) == ["indoor1", "phone"]

    await phone_call.answer()
    await progress.wait_status(S.CONNECTED)
    await phone_progress.wait_status(S.CONNECTED)
    await kitchen_progress.wait_until(lambda: bool(kitchen_progress.hangups))
    assert call.peer.address == "phone"
    assert kitchen_progress.terminal() == [S.CANCEL]
    assert kitchen.notified == []  # answered elsewhere: not a missed call

    await call.hangup()
    await phone_progress.wait_until(lambda: bool(phone_progress.hangups))
    assert phone_progress.terminal() == [S.COMPLETE]


async def test_a_late_joiner_rings_only_for_what_is_left_of_the_ring_time(
    flat: SimSite,
) -> None:
    site = flat
    _call, progress, _kitchen = await ring_with_the_phone_away(site, ring_timeout_s=3.0)
    await progress.wait_status(S.RINGING)
    phone = await come_online(site, "phone")
    _, phone_progress = await phone.next_call()
    await phone_progress.wait_until(lambda: bool(phone_progress.hangups))
    await progress.wait_until(lambda: bool(progress.hangups))
    assert progress.terminal() == [S.NOANSWER]
    assert phone_progress.terminal() == [S.NOANSWER]
    # it stopped ringing with the door, not a whole ring timeout after it joined
    assert phone_progress.times[S.NOANSWER] - progress.times[S.NOANSWER] < 1.5


async def test_when_every_target_is_offline_the_door_waits_for_the_one_it_woke(
    flat: SimSite,
) -> None:
    site = flat
    # a woken phone may take longer than the connect timeout to connect
    call, progress = await ring_with_everyone_away(site, connect_timeout_s=0.5)
    await wait_for(lambda: call.waits_for("phone"), "the door waiting for the phone")
    phone = await come_online(site, "phone")
    phone_call, _phone_progress = await phone.next_call()
    await progress.wait_status(S.RINGING)
    assert S.UNREACHABLE not in progress.statuses
    await phone_call.answer()
    await progress.wait_status(S.CONNECTED)
    assert progress.statuses == [S.INPROGRESS, S.RINGING, S.ANSWER, S.CONNECTED]
    await call.hangup()


async def test_with_nobody_online_and_nobody_to_wake_the_call_ends_offline(
    flat: SimSite,
) -> None:
    site = flat
    await go_offline(site, "indoor1")
    await go_offline(site, "phone")
    _call, progress = await door_rings(site, "indoor1", "phone", wakes=set())
    await progress.wait_until(lambda: bool(progress.hangups))
    assert progress.statuses == [S.INPROGRESS, S.OFFLINE]
    assert progress.hangups == [HangupReason.ERROR]


async def test_a_woken_phone_that_never_connects_ends_as_no_answer_at_the_ring_timeout(
    flat: SimSite,
) -> None:
    site = flat
    _, progress = await ring_with_everyone_away(site, ring_timeout_s=1.0, connect_timeout_s=0.2)
    await progress.wait_until(lambda: bool(progress.hangups))
    assert progress.statuses == [S.INPROGRESS, S.NOANSWER]


async def test_a_unit_that_declines_does_not_end_the_ring_while_a_phone_is_being_woken(
    flat: SimSite,
) -> None:
    site = flat
    call, progress, kitchen = await ring_with_the_phone_away(site)
    kitchen_call, _ = await kitchen.next_call()
    await progress.wait_status(S.RINGING)
    await kitchen_call.hangup()  # declines
    await wait_for(lambda: call.legs["indoor1"].outcome is not None, "the kitchen's decline")
    assert not call.is_ended()
    phone = await come_online(site, "phone")
    phone_call, _ = await phone.next_call()
    await phone_call.answer()
    await progress.wait_status(S.CONNECTED)
    assert call.peer.address == "phone"
    await call.hangup()


async def test_a_phone_that_comes_online_after_the_answer_is_not_invited(
    flat: SimSite,
) -> None:
    site = flat
    call, progress, kitchen = await ring_with_the_phone_away(site)
    kitchen_call, _ = await kitchen.next_call()
    await kitchen_call.answer()
    await progress.wait_status(S.CONNECTED)
    phone = await come_online(site, "phone")
    await site["phone"].signaling.wait_presence("door", True, 10)
    await wait_for(lambda: site["door"].signaling.is_online("phone"), "the phone online")
    assert not call.waits_for("phone")
    assert list(call.legs) == ["indoor1"]
    assert phone.calls == []
    await call.hangup()
