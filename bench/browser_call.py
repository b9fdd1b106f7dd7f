"""Doorbell calls to a browser phone in headless Chromium: press -> preview, answer -> audio.

Run: ``unshare -rn sh -c 'ip link set lo up && .venv/bin/python bench/browser_call.py'``
(a network namespace with loopback only: Chromium offers candidates on every interface).
Prints one JSON object.

One site (tests/harness/phonesite.py): mosquitto with its websockets listener, a door station on
a simulated board (test-pattern camera, tone microphone), and the page of ``web/`` in
Debian's Chromium with fake media devices, paired like a person's phone. Per call:

- **press -> first preview frame presented in the page**: from the moment the door's
  doorbell pin is driven (wall clock) to the ``presentationTime`` of the first frame of
  ``#remote-video`` that ``requestVideoFrameCallback`` reports (the page's
  ``performance.timeOrigin`` + that time, also wall clock, same machine);
- **answer -> two-way audio**: from the page's ``answer()`` call to the first audio sample
  from the phone at the door (the direction that starts with the answer: the door's audio
  reaches the page from the preview on and plays from the answer);
- the door then hangs up and the next call starts once both sides are idle.

Baseline, same run: a plain call from an aiortc peer to a plain ``RTCPeerConnection`` in
the same Chromium (offer/answer passed through playwright, no signaling, no gating): from
the moment aiortc starts ``createOffer`` to the first frame presented in the page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tests_path  # noqa: F401 - puts tests/ on sys.path for the harness imports
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from audio_latency import summary
from call_setup import PatternTrack
from harness.phonesite import PhoneSite, only_loopback, open_browser, start_phone_site
from playwright.async_api import Page, async_playwright

from device.phone import TEST_PAGES, WebServer
from hal.camera import TestPatternCamera
from hal.media_types import VideoFormat
from services.callapi import CallStatus
from services.media.ice import LOOPBACK, ice_policy

WEB_ROOT = Path(__file__).resolve().parents[1] / "web"
TIMEOUT_S = 15.0
# Receivers take at most 5 invites per 10 s from one sender (docs/protocol.md, rate_limited):
# calls start no closer than this.
CALL_SPACING_S = 2.1
TARGETS_MS = {"press_to_preview_ms": 150}

# Counts frames presented in #remote-video from now on and keeps the first one's wall time.
WATCH_FIRST_FRAME = """() => {
  const video = document.querySelector('#remote-video');
  window.__bench = {first: null};
  const tick = (now, meta) => {
    if (window.__bench.first === null) {
      window.__bench.first = performance.timeOrigin + meta.presentationTime;
    }
    video.requestVideoFrameCallback(tick);
  };
  video.requestVideoFrameCallback(tick);
}"""


async def wait_page(page: Page, expression: str, what: str) -> Any:
    """Wait until ``expression`` (a JS function) returns a truthy value; return it."""
    try:
        handle = await page.wait_for_function(expression, timeout=TIMEOUT_S * 1000)
    except Exception as err:
        raise AssertionError(f"timed out waiting for {what}: {err}") from err
    return await handle.json_value()


async def one_call(site: PhoneSite, page: Page) -> dict[str, Any]:
    """Press, wait for the preview, answer, wait for the phone's audio at the door, hang up."""
    assert site.door is not None and site.door.endpoint is not None
    calls = site.door.endpoint.calls
    await page.evaluate(WATCH_FIRST_FRAME)
    pressed = time.time() * 1000
    await site.press_doorbell()
    first = await wait_page(page, "() => window.__bench.first", "the first preview frame")
    codec = await wait_page(
        page, "() => window.callbox.snapshot().call?.codec", "the negotiated video codec"
    )
    call = calls.active_call
    assert call is not None, "the door has no call"
    answered = await page.evaluate(
        "async () => { const t = performance.timeOrigin + performance.now();"
        " await window.callbox.answer({video: true}); return t; }"
    )
    (leg,) = call.legs.values()  # the door's leg to the phone, before it hears the accept
    session = leg.session
    async with asyncio.timeout(TIMEOUT_S):
        await session.first_audio.wait()
    assert session.stats.first_audio_at is not None
    heard = (session.stats.first_audio_at - time.monotonic()) * 1000 + time.time() * 1000
    await call.hangup()
    async with asyncio.timeout(TIMEOUT_S):
        await call.ended.wait()
    await wait_page(
        page, "() => window.callbox.snapshot().call === null", "the page to be idle again"
    )
    assert call.status == CallStatus.COMPLETE, f"the call ended {call.status.name}"
    return {
        "press_to_preview_ms": first - pressed,
        "answer_to_audio_ms": heard - answered,
        "codec": codec,
    }


BASELINE_PAGE = """async (offer) => {
  const pc = new RTCPeerConnection({iceServers: []});
  window.__baseline = pc;
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; document.body.appendChild(video);
  window.__bench = {first: null};
  video.requestVideoFrameCallback(function tick(now, meta) {
    if (window.__bench.first === null) {
      window.__bench.first = performance.timeOrigin + meta.presentationTime;
    }
  });
  pc.ontrack = (e) => { video.srcObject = new MediaStream([e.track]); };
  await pc.setRemoteDescription(offer);
  await pc.setLocalDescription();
  await new Promise((done) => {
    if (pc.iceGatheringState === 'complete') done();
    pc.addEventListener('icegatheringstatechange',
      () => pc.iceGatheringState === 'complete' && done());
  });
  return {type: 'answer', sdp: pc.localDescription.sdp};
}"""


async def baseline_call(page: Page) -> float:
    """A plain aiortc -> Chromium video call: createOffer -> first frame presented."""
    camera = TestPatternCamera("baseline")
    await camera.open(VideoFormat())
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        with ice_policy(LOOPBACK):
            started = time.time() * 1000
            pc.addTransceiver(PatternTrack(camera), direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            offer = {"type": "offer", "sdp": pc.localDescription.sdp}
            answer = await page.evaluate(BASELINE_PAGE, offer)
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            first = await wait_page(page, "() => window.__bench.first", "the baseline frame")
        return float(first) - started
    finally:
        await pc.close()
        await page.evaluate("() => window.__baseline.close()")
        await camera.close()


async def run(count: int, codec: str) -> dict[str, Any]:
    """``count`` callbox calls, then ``count`` baseline calls, in one Chromium."""
    server = WebServer(WEB_ROOT, extra_files=TEST_PAGES)  # test/vectors.html: a blank page
    results: list[dict[str, Any]] = []
    baseline: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as directory:
            site = await start_phone_site(Path(directory) / "site", server.url)
            try:
                async with async_playwright() as playwright:
                    context = await open_browser(playwright, Path(directory) / "profile")
                    page = context.pages[0] if context.pages else await context.new_page()
                    await site.open_phone(page, codec=codec)
                    await site.start_door(call_toml=f'codec = "{codec}"')
                    await wait_page(
                        page,
                        "() => window.callbox.snapshot().peers.door?.pinned",
                        "the page to pin the door",
                    )
                    for _ in range(count):
                        started = time.monotonic()
                        results.append(await one_call(site, page))
                        await asyncio.sleep(max(0.0, CALL_SPACING_S - time.monotonic() + started))
                    blank = await context.new_page()
                    await blank.goto(f"{server.url}/test/vectors.html")
                    for _ in range(count):
                        baseline.append(await baseline_call(blank))
                    await context.close()
            finally:
                await site.close()
    finally:
        server.close()
    preview = summary([r["press_to_preview_ms"] for r in results])
    base = summary(baseline)
    ratio = None
    if preview["median"] is not None and base["median"]:
        ratio = round(float(preview["median"]) / float(base["median"]), 2)
    return {
        "calls": count,
        "codec": codec,
        "negotiated": sorted({str(r["codec"]) for r in results}),
        "press_to_preview_ms": preview,
        "answer_to_audio_ms": summary([r["answer_to_audio_ms"] for r in results]),
        "baseline_offer_to_first_frame_ms": base,
        "preview_vs_baseline": ratio,
        "targets_ms": TARGETS_MS,
    }


def main() -> None:
    """Parse arguments, run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--codec", choices=("VP8", "H264"), default="VP8")
    args = parser.parse_args()
    if not only_loopback():
        sys.exit("run inside a network namespace with loopback only: unshare -rn (see the doc)")
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(run(args.calls, args.codec)), indent=2))


if __name__ == "__main__":
    main()
