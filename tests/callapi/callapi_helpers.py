"""Helpers for the Call API integration tests: place a call and wait for what a user notices.

Media counters have no event to wait on, so :func:`wait_for` polls a condition with a
timeout; :func:`stays_flat` is the one deliberate "nothing must happen in this window" check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
from harness.simsite import SimSite
from support import TIMEOUT, Answering, Progress, place_call, props_for

from hal.audio import RecordingSpeaker
from services.callapi import Call, CallProperties, CallStatus
from services.media.session import MediaSession

POLL_S = 0.02
SAMPLE_RATE = 48000


async def wait_for(
    predicate: Callable[[], bool], timeout: float = TIMEOUT, what: str = "condition"
) -> None:
    """Poll ``predicate`` until it holds; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(POLL_S)  # polling a condition, not a fixed wait


async def settle(read: Callable[[], int], quiet: float = 0.3, timeout: float = TIMEOUT) -> int:
    """Wait until ``read()`` has not changed for ``quiet`` s (frames in flight drained)."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise TimeoutError(f"value kept changing for {timeout} s (last {value})")
        await asyncio.sleep(POLL_S)
        current = read()
        if current != value:
            value, since = current, time.monotonic()
    return value


async def stays_flat(read: Callable[[], int], window: float = 0.5) -> bool:
    """True if ``read()`` does not change during ``window`` s (a "nothing happens" check)."""
    before = read()
    await asyncio.sleep(window)  # deliberate: nothing must arrive during this window
    return read() == before


async def grows(read: Callable[[], int], by: int, timeout: float = TIMEOUT, what: str = "") -> None:
    """Wait until ``read()`` exceeds its current value by ``by``."""
    start = read()
    await wait_for(lambda: read() >= start + by, timeout, what or f"{by} more")


def speaker(site: SimSite, address: str, name: str = "speaker") -> RecordingSpeaker:
    """The recording speaker ``name`` of endpoint ``address``."""
    device = site[address].board.speaker(name)
    assert isinstance(device, RecordingSpeaker)
    return device


def tone_level(samples: np.ndarray, frequency: float, width: float = 25.0) -> float:
    """Share of the spectral energy of ``samples`` within ``width`` Hz of ``frequency``."""
    mono = samples.astype(np.float64)
    if mono.size < 64 or not np.any(mono):
        return 0.0
    power = np.abs(np.fft.rfft(mono * np.hanning(mono.size))) ** 2
    freqs = np.fft.rfftfreq(mono.size, 1 / SAMPLE_RATE)
    band = (freqs > frequency - width) & (freqs < frequency + width)
    return float(power[band].sum() / power.sum())


def mean_chroma_u(frame: av.VideoFrame) -> float:
    """Mean U (blue-difference) of the lower half of ``frame``: the camera's hue, stamp excluded."""
    u = frame.reformat(format="yuv420p").to_ndarray()
    height = frame.height
    rows = u[height + height // 8 : height + height // 4]  # the U plane's lower half
    return float(rows.mean())


@dataclass
class CallPair:
    """A call between a caller and a callee, with both sides' listeners."""

    caller: Call
    caller_progress: Progress
    callee_app: Answering
    callee: Call
    callee_progress: Progress

    @property
    def caller_session(self) -> MediaSession:
        """The caller's media session with the callee."""
        assert self.caller.session is not None
        return self.caller.session

    @property
    def callee_session(self) -> MediaSession:
        """The callee's media session with the caller."""
        assert self.callee.session is not None
        return self.callee.session


async def ring(
    site: SimSite,
    caller: str,
    callee: str,
    *,
    video: bool = True,
    props: CallProperties | None = None,
    app: Answering | None = None,
) -> CallPair:
    """``caller`` calls ``callee`` and waits until the callee's app has the ringing call."""
    callee_calls = site[callee].calls
    app = app or Answering(callee_calls)
    callee_calls.set_listener(app)
    calls = site[caller].calls
    props = props or props_for(calls, callee, video=video)
    call, progress = await place_call(calls, props)
    incoming, incoming_progress = await app.next_call()
    await incoming_progress.wait_status(CallStatus.INCOMING)
    await progress.wait_status(CallStatus.RINGING)
    return CallPair(call, progress, app, incoming, incoming_progress)


async def connect(
    site: SimSite,
    caller: str,
    callee: str,
    *,
    video: bool = True,
    answer_video: bool = True,
    props: CallProperties | None = None,
) -> CallPair:
    """A call from ``caller`` answered by ``callee``, CONNECTED at both ends."""
    pair = await ring(site, caller, callee, video=video, props=props)
    await pair.callee.answer(answer_video)
    await pair.caller_progress.wait_status(CallStatus.CONNECTED)
    await pair.callee_progress.wait_status(CallStatus.CONNECTED)
    return pair


async def hang_up(pair: CallPair) -> None:
    """The caller hangs up and both sides see the end."""
    await pair.caller.hangup()
    await asyncio.wait_for(pair.callee.ended.wait(), TIMEOUT)
