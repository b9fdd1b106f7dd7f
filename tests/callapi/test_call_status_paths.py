"""What each side of a call reports, from the first ring to the end, on every path a call takes.

A real mosquitto and real aiortc peers on loopback; the apps are the recording listeners of
tests/support.py. Each test checks the statuses in order, one terminal status per side, the
hangup reason on each side and that both endpoints are free again afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from callapi_helpers import CallPair, connect, grows, ring, speaker, wait_for
from harness.simsite import EndpointSpec, SimSite
from support import TIMEOUT, Answering, MakeSite, Progress, place_call, props_for

from services.callapi import (
    Call,
    CallErrorCode,
    CallProperties,
    CallStatus,
    HangupReason,
    InCallSound,
    NotifyKind,
)

pytestmark = pytest.mark.site_broker("memory")  # the call state machine, not the broker

S = CallStatus
ANSWERED_CALLER = [S.INPROGRESS, S.RINGING, S.ANSWER, S.CONNECTED]
ANSWERED_CALLEE = [S.INCOMING, S.ANSWER, S.CONNECTED]


async def ended(progress: Progress) -> None:
    """Wait until ``progress`` heard the hangup (the terminal status comes first)."""
    await progress.wait_until(lambda: bool(progress.hangups))


def assert_free(site: SimSite, *addresses: str) -> None:
    """Nobody of ``addresses`` is in a call any more."""
    for address in addresses:
        calls = site[address].calls
        assert calls.active_call is None, address
        assert not calls.is_call_in_progress(), address


async def test_answered_call_reports_every_status_once_and_caller_hangs_up(
    door_and_indoor: SimSite,
) -> None:
    site = door_and_indoor
    pair = await connect(site, "door", "indoor1")
    assert pair.caller_progress.statuses == ANSWERED_CALLER
    assert pair.callee_progress.statuses == ANSWERED_CALLEE
    assert pair.caller.is_answered() and pair.callee.is_answered()
    assert pair.caller.is_link_up() and pair.callee.is_link_up()
    assert pair.callee.is_incoming() and not pair.caller.is_incoming()

    await pair.caller.hangup()
    await ended(pair.caller_progress)
    await ended(pair.callee_progress)

    assert pair.caller_progress.statuses == [*ANSWERED_CALLER, S.COMPLETE]
    assert pair.callee_progress.statuses == [*ANSWERED_CALLEE, S.COMPLETE]
    assert pair.caller_progress.hangups == [HangupReason.USER]
    assert pair.callee_progress.hangups == [HangupReason.REMOTE]
    assert pair.caller.duration() > 0 and pair.callee.duration() > 0
    assert not pair.caller.is_link_up()
    assert_free(site, "door", "indoor1")


async def test_callee_hangs_up(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    pair = await connect(site, "door", "indoor1")

    await pair.callee.hangup()
    await ended(pair.callee_progress)
    await ended(pair.caller_progress)

    assert pair.caller_progress.statuses == [*ANSWERED_CALLER, S.COMPLETE]
    assert pair.callee_progress.statuses == [*ANSWERED_CALLEE, S.COMPLETE]
    assert pair.callee_progress.hangups == [HangupReason.USER]
    assert pair.caller_progress.hangups == [HangupReason.REMOTE]
    assert_free(site, "door", "indoor1")


async def test_hangup_twice_reports_the_end_once(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    pair = await connect(site, "door", "indoor1")
    await asyncio.gather(pair.caller.hangup(), pair.callee.hangup(), pair.caller.hangup())
    await ended(pair.caller_progress)
    await ended(pair.callee_progress)
    assert pair.caller_progress.terminal() == [S.COMPLETE]
    assert pair.callee_progress.terminal() == [S.COMPLETE]
    assert len(pair.caller_progress.hangups) == 1
    assert len(pair.callee_progress.hangups) == 1
    assert_free(site, "door", "indoor1")


async def test_auto_answer_reports_answer_before_connected(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    app = Answering(site["indoor1"].calls, auto_answer=True)
    site["indoor1"].calls.set_listener(app)
    call, progress = await place_call(site["door"].calls, props_for(site["door"].calls, "indoor1"))
    await progress.wait_status(S.CONNECTED)
    _, callee_progress = await app.next_call()
    await callee_progress.wait_status(S.CONNECTED)
    assert progress.statuses == ANSWERED_CALLER
    assert callee_progress.statuses == ANSWERED_CALLEE
    await call.hangup()
    await ended(callee_progress)


async def test_answer_comes_before_connected_when_the_link_is_up_during_answer(
    door_and_indoor: SimSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker is slow with the callee's "accept": the link comes up meanwhile."""
    site = door_and_indoor
    app = Answering(site["indoor1"].calls, auto_answer=True)
    site["indoor1"].calls.set_listener(app)
    signaling = site["indoor1"].signaling
    send = signaling.send

    async def slow_accept(
        recipient: str, message_type: str, call_id: str, body: dict[str, Any]
    ) -> None:
        if message_type == "accept":
            call = site["indoor1"].calls.active_call
            assert call is not None and call.session is not None
            await asyncio.wait_for(call.session.connected.wait(), TIMEOUT)
            progress = app.progress[-1] if app.progress else None
            if progress is not None:  # give a wrong early CONNECTED the chance to show
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(progress.wait_status(S.CONNECTED), 0.3)
        await send(recipient, message_type, call_id, body)

    monkeypatch.setattr(signaling, "send", slow_accept)
    call, progress = await place_call(site["door"].calls, props_for(site["door"].calls, "indoor1"))
    await progress.wait_status(S.CONNECTED)
    _, callee_progress = await app.next_call()
    await callee_progress.wait_status(S.CONNECTED)
    assert callee_progress.statuses == ANSWERED_CALLEE
    assert progress.statuses == ANSWERED_CALLER
    await call.hangup()
    await ended(callee_progress)


async def test_busy_callee_refuses_a_second_caller_without_disturbing_the_call(
    make_site: MakeSite,
) -> None:
    site = await make_site(
        EndpointSpec("door", role="door", tone_hz=440.0),
        EndpointSpec("indoor1", role="indoor", tone_hz=660.0),
        EndpointSpec("indoor2", role="indoor", tone_hz=550.0),
    )
    pair = await connect(site, "door", "indoor1")
    for address in ("door", "indoor1"):
        calls = site[address].calls
        assert calls.is_call_in_progress()
        assert calls.call(props_for(calls, "indoor2")) is None

    third = site["indoor2"].calls
    third_app = Answering(third)
    third.set_listener(third_app)
    _call, progress = await place_call(third, props_for(third, "indoor1"))
    await ended(progress)

    assert progress.statuses == [S.INPROGRESS, S.BUSY]
    assert progress.statuses[-1] == 0x43
    assert progress.hangups == [HangupReason.REMOTE]
    assert third_app.errors == [CallErrorCode.BUSY]
    assert (InCallSound.BUSY, True) in progress.sounds
    busy_speaker = speaker(site, "indoor2")
    await busy_speaker.wait_for_samples(48000, TIMEOUT)  # one second: 0.5 s of tone at least
    assert busy_speaker.dominant_frequency(1000) == pytest.approx(425.0, abs=10)
    assert not third.is_call_in_progress()

    # the call in progress goes on as if nothing happened
    assert pair.callee_app.incoming == [(pair.callee_app.incoming[0][0], True)]
    assert pair.caller.status == S.CONNECTED and pair.callee.status == S.CONNECTED
    assert pair.caller_progress.statuses == ANSWERED_CALLER
    assert pair.callee_progress.statuses == ANSWERED_CALLEE
    await grows(lambda: pair.callee_session.stats.video_frames, 10, what="video at indoor1")
    # half a second heard, measured over 400 ms: one concealed frame on a busy machine
    # must not move a 200 ms window's peak by more than the tolerance
    await grows(lambda: speaker(site, "door").samples_played, 24000, what="audio at the door")
    assert speaker(site, "door").dominant_frequency(400) == pytest.approx(660.0, abs=10)


async def test_refused_by_the_app_is_notallowed(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    app = Answering(site["indoor1"].calls, accept=False)
    site["indoor1"].calls.set_listener(app)
    _call, progress = await place_call(site["door"].calls, props_for(site["door"].calls, "indoor1"))
    await ended(progress)

    assert progress.statuses == [S.INPROGRESS, S.NOTALLOWED]
    assert progress.hangups == [HangupReason.REMOTE]
    assert len(app.incoming) == 1 and app.incoming[0][0].address == "door"
    assert app.calls == []
    assert_free(site, "door", "indoor1")


async def test_blocked_contact_is_refused_before_the_app_hears_of_it(
    door_and_indoor: SimSite,
) -> None:
    site = door_and_indoor
    site["indoor1"].signaling.contacts.block("door")
    app = Answering(site["indoor1"].calls)
    site["indoor1"].calls.set_listener(app)
    _call, progress = await place_call(site["door"].calls, props_for(site["door"].calls, "indoor1"))
    await ended(progress)

    assert progress.statuses == [S.INPROGRESS, S.BLOCKED]
    assert app.incoming == [] and app.calls == [] and app.notified == []
    assert_free(site, "door", "indoor1")


async def test_ring_timeout_is_noanswer_at_both_ends_and_a_missed_call(
    door_and_indoor: SimSite,
) -> None:
    site = door_and_indoor
    props = props_for(site["door"].calls, "indoor1")
    props.ring_timeout_s = 1.0
    pair = await ring(site, "door", "indoor1", props=props)
    await ended(pair.caller_progress)
    await ended(pair.callee_progress)

    assert pair.caller_progress.statuses == [S.INPROGRESS, S.RINGING, S.NOANSWER]
    assert pair.callee_progress.statuses == [S.INCOMING, S.NOANSWER]
    assert pair.callee_app.notified == [(NotifyKind.MISSED, "door")]
    assert site["indoor1"].calls.missed_calls == 1
    assert pair.callee_progress.hangups == [HangupReason.REMOTE]
    assert not pair.caller.is_answered() and not pair.callee.is_answered()
    assert_free(site, "door", "indoor1")


async def test_caller_cancels_while_ringing(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    pair = await ring(site, "door", "indoor1")
    await pair.caller.hangup()
    await ended(pair.caller_progress)
    await ended(pair.callee_progress)

    assert pair.caller_progress.statuses == [S.INPROGRESS, S.RINGING, S.CANCEL]
    assert pair.caller_progress.hangups == [HangupReason.USER]
    assert pair.callee_progress.statuses == [S.INCOMING, S.CANCEL]
    assert pair.callee_progress.hangups == [HangupReason.REMOTE]
    assert pair.callee_app.notified == [(NotifyKind.MISSED, "door")]
    tones = site["indoor1"].calls.media.tones
    assert tones is not None and tones.playing is None  # the ringtone stopped
    assert_free(site, "door", "indoor1")


async def test_callee_declines_while_ringing_caller_hears_busy(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    caller_app = Answering(site["door"].calls)
    site["door"].calls.set_listener(caller_app)
    pair = await ring(site, "door", "indoor1")
    await pair.callee.hangup()
    await ended(pair.callee_progress)
    await ended(pair.caller_progress)

    # like a phone's "decline" button: the caller hears busy, the callee just stops ringing
    assert pair.callee_progress.statuses == [S.INCOMING, S.CANCEL]
    assert pair.callee_progress.hangups == [HangupReason.USER]
    assert pair.callee_app.notified == []  # declined on purpose: not a missed call
    assert pair.caller_progress.statuses == [S.INPROGRESS, S.RINGING, S.BUSY]
    assert pair.caller_progress.hangups == [HangupReason.REMOTE]
    assert (InCallSound.BUSY, True) in pair.caller_progress.sounds
    assert caller_app.errors == [CallErrorCode.BUSY]
    assert_free(site, "door", "indoor1")


async def test_offline_target_is_reported_at_once(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    await site["indoor1"].calls.close()
    await site["door"].signaling.wait_presence("indoor1", False, TIMEOUT)

    call = site["door"].calls.call(props_for(site["door"].calls, "indoor1"))
    assert call is not None
    progress = Progress()
    started = time.monotonic()
    await call.start(progress)
    assert call.is_ended()
    assert time.monotonic() - started < 1.0
    assert progress.statuses == [S.INPROGRESS, S.OFFLINE]
    assert progress.hangups == [HangupReason.ERROR]
    assert_free(site, "door")


class RaisingProgress(Progress):
    """An app listener with bugs: every status and the hangup raise after being recorded."""

    def on_status(self, call: Call, status: CallStatus, video: bool) -> None:
        super().on_status(call, status, video)
        raise RuntimeError(f"app bug on {status.name}")

    def on_hangup(self, call: Call, reason: HangupReason) -> None:
        super().on_hangup(call, reason)
        raise RuntimeError("app bug on hangup")


class AsyncProgress(Progress):
    """An app listener written with ``async def`` (Progress itself declares plain methods)."""

    async def on_status(  # type: ignore[override]
        self, call: Call, status: CallStatus, video: bool
    ) -> None:
        await asyncio.sleep(0)
        super().on_status(call, status, video)

    async def on_hangup(self, call: Call, reason: HangupReason) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().on_hangup(call, reason)


class AsyncAnswering(Answering):
    """An app whose in-call listener is async."""

    async def on_show_user_interface(self, call: Call, props: CallProperties) -> bool:
        progress = AsyncProgress()
        self.calls.append(call)
        self.progress.append(progress)
        await call.start(progress)
        self._touch()
        return True


async def test_raising_and_async_listeners_do_not_break_the_call(
    door_and_indoor: SimSite,
) -> None:
    site = door_and_indoor
    app = AsyncAnswering(site["indoor1"].calls)
    site["indoor1"].calls.set_listener(app)
    progress = RaisingProgress()
    call = site["door"].calls.call(props_for(site["door"].calls, "indoor1"))
    assert call is not None
    await call.start(progress)
    callee, callee_progress = await app.next_call()
    await callee_progress.wait_status(S.INCOMING)
    await progress.wait_status(S.RINGING)
    await callee.answer()
    await progress.wait_status(S.CONNECTED)
    await callee_progress.wait_status(S.CONNECTED)
    pair = CallPair(call, progress, app, callee, callee_progress)
    await grows(lambda: pair.callee_session.stats.video_frames, 5, what="video at indoor1")

    await call.hangup()
    await ended(progress)
    await ended(callee_progress)
    assert progress.statuses == [*ANSWERED_CALLER, S.COMPLETE]
    assert callee_progress.statuses == [*ANSWERED_CALLEE, S.COMPLETE]
    assert progress.hangups == [HangupReason.USER]
    assert callee_progress.hangups == [HangupReason.REMOTE]
    assert_free(site, "door", "indoor1")


async def test_max_duration_ends_the_call(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    props = props_for(site["door"].calls, "indoor1")
    props.max_duration_s = 1.0
    pair = await connect(site, "door", "indoor1", props=props)
    await ended(pair.caller_progress)
    await ended(pair.callee_progress)

    assert pair.caller_progress.statuses == [*ANSWERED_CALLER, S.DURATIONEXCEEDED]
    assert pair.caller_progress.hangups == [HangupReason.DURATION]
    assert pair.callee_progress.statuses == [*ANSWERED_CALLEE, S.COMPLETE]
    assert pair.callee_progress.hangups == [HangupReason.REMOTE]
    assert 0.99 <= pair.caller.duration() < 3.0
    assert_free(site, "door", "indoor1")


async def test_a_new_call_works_after_the_previous_one_ended(door_and_indoor: SimSite) -> None:
    site = door_and_indoor
    first = await connect(site, "door", "indoor1")
    await first.callee.hangup()
    await ended(first.caller_progress)
    second = await connect(site, "indoor1", "door")
    assert second.caller_progress.statuses == ANSWERED_CALLER
    await wait_for(lambda: second.callee_session.stats.video_frames > 5, what="video at the door")
    await second.caller.hangup()
    await ended(second.callee_progress)
    assert_free(site, "door", "indoor1")
