"""Call-setup latency: callbox's doorbell call against bare aiortc over the same broker.

Run: ``.venv/bin/python bench/call_setup.py [--calls 20]``. Prints one JSON object.

callbox figures come from the scripted doorbell call (device/simulator/_scenario.py) repeated on
one simulated site. The baseline, in the same run and over the same mosquitto, is a
plain aiortc offer/answer exchanged as unsigned JSON over MQTT with no callbox layer:
the offer is made at the press, the answer at once, no gating, no prepared offers.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import av
import tests_path  # noqa: F401 - puts tests/ on sys.path for the harness imports
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from harness.bench_cli import run_and_print
from harness.simsite import EndpointSpec, SimSite, start_site

from device.simulator import Timeline, run_doorbell_call
from hal.camera import TestPatternCamera
from hal.media_types import VideoFormat
from services.media.ice import LOOPBACK, ice_policy

FIGURES = ("press_to_ringing_ms", "press_to_preview_ms", "answer_to_audio_ms", "hangup_to_idle_ms")
TARGETS_MS = {"press_to_ringing_ms": 10, "press_to_preview_ms": 60, "answer_to_audio_ms": 40}


class PatternTrack(MediaStreamTrack):
    """A bare aiortc video track on the same test-pattern camera callbox uses."""

    kind = "video"

    def __init__(self, camera: TestPatternCamera) -> None:
        super().__init__()
        self.camera = camera

    async def recv(self) -> av.VideoFrame:
        """The camera's next test-pattern frame."""
        return await self.camera.read()


def summary(values: list[float]) -> dict[str, float | None]:
    """Median and 95th percentile of ``values`` (None when empty)."""
    if not values:
        return {"median": None, "p95": None, "n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median": round(statistics.median(ordered), 1), "p95": round(p95, 1), "n": len(values)}


async def callbox_calls(site: SimSite, count: int) -> list[Timeline]:
    """``count`` scripted doorbell calls on ``site``."""
    timelines = []
    for _ in range(count):
        timelines.append(await run_doorbell_call(site["door"].calls, site["indoor1"].calls))
    return timelines


async def bare_call(site: SimSite) -> dict[str, float]:
    """One bare aiortc offer/answer over the site's broker; returns its latencies."""
    topic = f"callbox/v1/{site.site}/%s/inbox"
    cfg = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    camera = TestPatternCamera("bare")
    await camera.open(VideoFormat())
    caller, callee = RTCPeerConnection(cfg), RTCPeerConnection(cfg)
    first_frame = asyncio.get_running_loop().create_future()
    consumers: list[asyncio.Task[None]] = []

    @callee.on("track")
    def _track(track: MediaStreamTrack) -> None:
        async def consume() -> None:
            try:
                await track.recv()
            except MediaStreamError:
                return
            if not first_frame.done():
                first_frame.set_result(time.monotonic())

        consumers.append(asyncio.create_task(consume()))

    async with (
        aiomqtt.Client(**_login(site, "bench_a")) as a,
        aiomqtt.Client(**_login(site, "bench_b")) as b,
    ):
        await a.subscribe(topic % "bench_a")
        await b.subscribe(topic % "bench_b")
        pressed = time.monotonic()
        caller.addTransceiver(PatternTrack(camera), direction="sendrecv")
        with ice_policy(LOOPBACK):
            await caller.setLocalDescription(await caller.createOffer())
        await a.publish(topic % "bench_b", json.dumps({"sdp": caller.localDescription.sdp}))
        async for message in b.messages:
            await b.publish(topic % "bench_a", json.dumps({"type": "ringing"}))
            offer = json.loads(bytes(message.payload))
            await callee.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            with ice_policy(LOOPBACK):
                await callee.setLocalDescription(await callee.createAnswer())
            await b.publish(topic % "bench_a", json.dumps({"sdp": callee.localDescription.sdp}))
            break
        ringing_at = 0.0
        async for message in a.messages:
            reply = json.loads(bytes(message.payload))
            if reply.get("type") == "ringing":
                ringing_at = time.monotonic()
                continue
            await caller.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
            break
        preview_at = await asyncio.wait_for(first_frame, 10)
    await caller.close()
    await callee.close()
    await camera.close()
    return {
        "press_to_ringing_ms": (ringing_at - pressed) * 1000,
        "press_to_preview_ms": (preview_at - pressed) * 1000,
    }


def _login(site: SimSite, account: str) -> dict[str, Any]:
    broker = site.broker_address(account)
    return {
        "hostname": broker.host,
        "port": broker.port,
        "username": broker.username,
        "password": broker.password,
        "identifier": account,
    }


async def run(count: int) -> dict[str, Any]:
    """Measure both and build the JSON report."""
    with tempfile.TemporaryDirectory(prefix="callbox-bench-") as directory:
        site = await start_site(
            Path(directory),
            [EndpointSpec("door", role="door"), EndpointSpec("indoor1")],
            site="bench",
            extra_accounts=("bench_a", "bench_b"),
            invites_per_10s=10 * count,  # calls back to back, far above a doorbell's rate
        )
        try:
            timelines = await callbox_calls(site, count)
            bare = [await bare_call(site) for _ in range(count)]
        finally:
            await site.close()
    ours = {f: summary([getattr(t, f) for t in timelines if t.ok]) for f in FIGURES}
    base = {
        f: summary([b[f] for b in bare]) for f in ("press_to_ringing_ms", "press_to_preview_ms")
    }
    ratios = {
        f: round(ours[f]["median"] / base[f]["median"], 2)  # type: ignore[operator]
        for f in base
        if ours[f]["median"] and base[f]["median"]
    }
    return {
        "calls": count,
        "failed_calls": sum(not t.ok for t in timelines),
        "failures": sorted({t.error for t in timelines if not t.ok}),
        "callbox": ours,
        "baseline_bare_aiortc": base,
        "ratio_callbox_to_baseline_median": ratios,
        "targets_median_ms": TARGETS_MS,
    }


def main() -> None:
    """Parse arguments, run, print JSON."""
    run_and_print(__doc__, run, "calls", 20)


if __name__ == "__main__":
    main()
