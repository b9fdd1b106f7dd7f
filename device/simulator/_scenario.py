"""The scripted doorbell call that ``callbox demo --scripted`` runs and the benchmark repeats.

Door station presses -> indoor unit rings and shows the preview -> answers -> media is
checked both ways -> hangs up. Each step is timed from the event that starts it to the
event that proves it happened, never by sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from services.callapi import (
    Call,
    CallProperties,
    Calls,
    CallStatus,
    IncomingListener,
    InProgressListener,
    UserProfile,
)
from services.media.session import MediaStats

STEP_TIMEOUT_S = 10.0
MEDIA_CHECK_FRAMES = 10


@dataclass
class Timeline:
    """Latencies of one scripted call, in milliseconds (None where a step failed)."""

    press_to_ringing_ms: float | None = None
    press_to_preview_ms: float | None = None
    answer_to_audio_ms: float | None = None
    hangup_to_idle_ms: float | None = None
    ok: bool = False
    error: str = ""
    step: str = field(default="", repr=False)

    def as_json(self) -> dict[str, object]:
        """The fields of ``callbox demo --json``."""
        fields = asdict(self)
        del fields["step"]
        return fields


class _RingingWatch(InProgressListener):
    def __init__(self) -> None:
        self.ringing = asyncio.Event()
        self.ringing_at = 0.0
        self.answered = asyncio.Event()

    def on_status(self, call: Call, status: CallStatus, video: bool) -> None:
        if status == CallStatus.RINGING and not self.ringing.is_set():
            self.ringing_at = time.monotonic()
            self.ringing.set()
        if status == CallStatus.ANSWER:
            self.answered.set()


class _IndoorApp(IncomingListener):
    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.call: Call | None = None
        self.arrived = asyncio.Event()

    def on_incoming(self, profile: UserProfile, video: bool) -> CallProperties | None:
        return self.calls.create_call_properties(video)

    def on_show_user_interface(self, call: Call, props: CallProperties) -> bool:
        self.call = call
        self.arrived.set()
        return True


def ms_between(start: float, end: float) -> float:
    """Milliseconds from ``start`` to ``end`` (monotonic seconds), to 0.1 ms."""
    return round((end - start) * 1000, 1)


async def run_doorbell_call(door: Calls, indoor: Calls) -> Timeline:
    """Ring ``indoor`` from ``door``, answer, check media both ways, hang up; time each step."""
    timeline = Timeline()
    app = _IndoorApp(indoor)
    indoor.set_listener(app)
    props = door.create_call_properties(video=True)
    props.user = door.profile_of(indoor.address)
    await door.prewarm(props)
    watch = _RingingWatch()
    await run_steps(timeline, _steps(door, props, app, watch, timeline))
    return timeline


class StepTimeline(Protocol):
    """What `run_steps` keeps of a timeline: the step under way, and how it ended."""

    ok: bool
    error: str
    step: str


async def run_steps(timeline: StepTimeline, steps: Coroutine[Any, Any, None]) -> None:
    """Run ``steps`` within the scenario's time limit; ``ok``, or the failed step in ``error``."""
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S * 4):
            await steps
        timeline.ok = True
    except TimeoutError:
        timeline.error = f"timed out waiting for: {timeline.step}"
    except AssertionError as err:
        timeline.error = str(err)


async def _steps(
    door: Calls, props: CallProperties, app: _IndoorApp, watch: _RingingWatch, timeline: Timeline
) -> None:
    pressed = time.monotonic()
    call = door.call(props)
    assert call is not None, "the door station is busy"
    await call.start(watch)
    timeline.step = "ringing at the door"
    await watch.ringing.wait()
    timeline.press_to_ringing_ms = ms_between(pressed, watch.ringing_at)
    timeline.step = "the call at the indoor unit"
    await app.arrived.wait()
    assert app.call is not None and app.call.session is not None, "no call reached the app"
    incoming = app.call
    preview = app.call.session
    timeline.step = "the first preview frame"
    await preview.first_video.wait()
    assert preview.stats.first_video_at is not None
    timeline.press_to_preview_ms = ms_between(pressed, preview.stats.first_video_at)
    assert preview.audio_frames_sent == 0, "the indoor unit sent audio before answering"

    answered = time.monotonic()
    await incoming.answer(video=True)
    timeline.step = "the answer at the door"
    await watch.answered.wait()
    assert call.session is not None, "the door has no media session after the answer"
    outgoing = call.session
    timeline.step = "audio both ways"
    await asyncio.gather(preview.first_audio.wait(), outgoing.first_audio.wait())
    assert outgoing.stats.first_audio_at and preview.stats.first_audio_at, "no audio"
    timeline.answer_to_audio_ms = ms_between(
        answered, max(outgoing.stats.first_audio_at, preview.stats.first_audio_at)
    )
    timeline.step = "media both ways"
    await _media_flows_both_ways(outgoing.stats, preview.stats)

    hung_up = time.monotonic()
    await incoming.hangup()
    timeline.step = "both sides idle"
    await asyncio.gather(call.ended.wait(), incoming.ended.wait())
    assert call.ended_at and incoming.ended_at, "a call did not end"
    timeline.hangup_to_idle_ms = ms_between(hung_up, max(call.ended_at, incoming.ended_at))
    assert call.status == incoming.status == CallStatus.COMPLETE, (
        f"calls ended {call.status.name} / {incoming.status.name}, not COMPLETE"
    )


async def _media_flows_both_ways(door_rx: MediaStats, indoor_rx: MediaStats) -> None:
    start = (
        door_rx.video_frames,
        indoor_rx.video_frames,
        door_rx.audio_samples,
        indoor_rx.audio_samples,
    )
    while True:
        grown = (
            door_rx.video_frames - start[0] >= MEDIA_CHECK_FRAMES,
            indoor_rx.video_frames - start[1] >= MEDIA_CHECK_FRAMES,
            door_rx.audio_samples > start[2],
            indoor_rx.audio_samples > start[3],
        )
        if all(grown):
            return
        await asyncio.sleep(0.02)  # polling counters that the media tasks update
