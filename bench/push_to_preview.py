"""A phone woken by a push: doorbell pin -> push -> notification -> Answer -> first preview frame.

Run: ``unshare -rn sh -c 'ip link set lo up && .venv/bin/python bench/push_to_preview.py'``
(a network namespace with loopback only: Chromium offers candidates on every interface).
Prints one JSON object.

One site (tests/harness/phonesite.py): mosquitto with its websockets listener, a door station
with ``[push]`` on a simulated board, the page of ``web/`` in Debian's Chromium subscribed with
the door as the browser test of the whole path does (tests/harness/push_page.py: the page's
real ``push_subscribe``; the one stand-in is the browser's push service, a local one that
checks VAPID and decrypts, tests/harness/push_endpoint.py, whose payload is delivered to the
page's real service worker through the DevTools protocol). Per run, the phone in a pocket (no
page, offline on the broker):

- **pin -> push sent**: the door's doorbell pin driven low -> the push request's headers
  written (``PushResult.sent_at``); also pin -> the push service has decrypted it;
- **delivered -> notification shown**: ``ServiceWorker.deliverPushMessage`` sent -> the
  notification in ``registration.getNotifications()`` (polled every 5 ms);
- **notification -> page opened**: the worker's Answer click handler run (no test can click a
  notification) and the page opened at the URL it asks for;
- **opened -> navigation / loaded**: the page opened (playwright's ``new_page`` + ``goto``,
  standing in for Chromium opening a window on the click) -> the navigation starts
  (``performance.timeOrigin``) / its ``DOMContentLoaded`` handlers are done, before it connects;
- **opened -> online**: the page opened -> the door sees the phone online on the broker;
- **opened -> first preview frame**: the page opened -> the first frame of the door's video
  presented in ``#remote-video`` (``requestVideoFrameCallback``: the door's invite to the late
  joiner, then the media);
- **delivered -> first preview frame**, the headline: all of the above after the push service.

A run whose notification the worker reports shown but Chromium never lists is counted in
``notifications_lost`` with what the worker did, its call ended, and left out of the figures
(it happened when ``getNotifications()`` was polled while the worker showed it; the harness
now waits for the worker's record first: see ``PushDelivery.shown_at``).

Baseline, same run, same page: that page, now open and online, and the doorbell rings again:
pin -> first preview frame, what a phone with the page open sees. The cost of waking is the
ratio of the two pin -> first preview frame medians. Wall-clock ms on both sides (the page's
``performance.timeOrigin`` + presentation time; one machine).
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
from audio_latency import summary
from browser_call import WATCH_FIRST_FRAME as WATCH_REMOTE_VIDEO
from harness.phonesite import PHONE, PhoneSite, only_loopback, open_browser, start_phone_site
from harness.push_endpoint import PushEndpoint, Subscriber
from harness.push_page import (
    TIMEOUT_S,
    PushDelivery,
    click,
    pocket,
    subscribe_with_the_door,
    wait_page,
)
from harness.push_site import vapid_on_disk
from playwright.async_api import BrowserContext, Page, async_playwright
from support import wait_for

from device.phone import WebServer
from services.callapi import Call
from services.intercom.door import DoorStation

WEB_ROOT = Path(__file__).resolve().parents[1] / "web"
TARGETS_MS = {"delivered_to_preview_ms": 1000}
WOKEN = (
    "pin_to_push_sent_ms",
    "pin_to_push_received_ms",
    "delivered_to_notification_ms",
    "notification_to_opened_ms",
    "opened_to_navigation_ms",
    "opened_to_loaded_ms",
    "opened_to_online_ms",
    "opened_to_preview_ms",
    "delivered_to_preview_ms",
    "pin_to_preview_ms",
)

# In every document of the phone page: window.__watchFirstFrame() (run once loaded) keeps, in
# window.__bench.first, the wall time of the next frame presented in #remote-video.
WATCH_FIRST_FRAME = f"""
window.__watchFirstFrame = {WATCH_REMOTE_VIDEO};
addEventListener('DOMContentLoaded', () => {{
  if (document.querySelector('#remote-video')) window.__watchFirstFrame();
}});
"""


class NotificationLost(Exception):
    """The worker did not show the ring's notification, or Chromium shows none (see the doc)."""


def wall_ms() -> float:
    """Now, wall clock, in ms (the page's clock)."""
    return time.time() * 1000


def mono_to_wall_ms(at: float) -> float:
    """A ``time.monotonic()`` instant as wall-clock ms."""
    return (at - time.monotonic()) * 1000 + wall_ms()


async def first_frame(page: Page) -> float:
    """The wall time of the first frame presented since the watch started."""
    handle = await page.wait_for_function(
        "() => window.__bench && window.__bench.first", timeout=TIMEOUT_S * 1000, polling=10
    )
    return float(await handle.json_value())


async def press(site: PhoneSite) -> float:
    """Press the doorbell; the wall time the pin went low."""
    pressed = wall_ms()
    await site.press_doorbell()
    return pressed


def door_station(site: PhoneSite) -> DoorStation:
    """The door's call service."""
    assert site.door is not None and site.door.endpoint is not None
    service = site.door.endpoint.service
    assert isinstance(service, DoorStation) and service.push is not None
    return service


async def end_call(site: PhoneSite, call: Call, page: Page) -> None:
    """The door hangs up; wait for both sides to be idle."""
    await call.hangup()
    async with asyncio.timeout(TIMEOUT_S):
        await call.ended.wait()
    await wait_page(page, "s.call === null", "the page to be idle again")


async def woken_ring(
    site: PhoneSite,
    context: BrowserContext,
    origin: str,
    endpoint: PushEndpoint,
    subscriber: Subscriber,
    delivery: PushDelivery,
) -> tuple[dict[str, float], Page]:
    """A ring to the phone in a pocket, up to the preview; the figures and the opened page."""
    door = door_station(site)
    push = door.push
    assert push is not None
    before = len(endpoint.deliveries(subscriber))
    pressed = await press(site)
    await wait_for(lambda: len(endpoint.deliveries(subscriber)) > before, "the push", TIMEOUT_S)
    received = endpoint.deliveries(subscriber)[before]  # the ring (its picture follows)
    sent = push.notifier.results[-1].sent_at
    assert sent is not None
    call = door.calls.active_call
    assert call is not None and received.payload["call_id"] == call.call_id

    delivered = wall_ms()
    await delivery.push(received.payload)
    try:
        shown = await delivery.shown_at(call.call_id)
        await delivery.wait_notification(call.call_id)
    except AssertionError as err:
        if not call.is_ended():
            await call.hangup()
        async with asyncio.timeout(TIMEOUT_S):
            await call.ended.wait()
        raise NotificationLost(str(err)) from err
    clicked = await click(context, origin, call.call_id, "answer")
    assert clicked["url"] == f"{origin}/?ring={call.call_id}&action=answer", clicked
    signaling = site.door.endpoint.signaling if site.door and site.door.endpoint else None
    assert signaling is not None

    async def online() -> float:
        await signaling.wait_presence(PHONE, True, timeout=TIMEOUT_S)
        return wall_ms()

    opened = wall_ms()
    presence = asyncio.create_task(online())
    page = await context.new_page()
    await page.goto(clicked["url"])
    preview = await first_frame(page)
    online_at = await presence
    started, loaded = await page.evaluate(
        "() => [performance.timeOrigin, performance.timeOrigin"
        " + performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd]"
    )
    await wait_page(page, "s.call && s.call.status === 'CONNECTED'", "the page to answer")
    await end_call(site, call, page)
    return {
        "pin_to_push_sent_ms": mono_to_wall_ms(sent) - pressed,
        "pin_to_push_received_ms": mono_to_wall_ms(received.at) - pressed,
        "delivered_to_notification_ms": shown - delivered,
        "notification_to_opened_ms": opened - shown,
        "opened_to_navigation_ms": float(started) - opened,
        "opened_to_loaded_ms": float(loaded) - opened,
        "opened_to_online_ms": online_at - opened,
        "opened_to_preview_ms": preview - opened,
        "delivered_to_preview_ms": preview - delivered,
        "pin_to_preview_ms": preview - pressed,
    }, page


async def open_ring(site: PhoneSite, page: Page) -> float:
    """A ring to the page already open and online: pin -> first preview frame."""
    await page.evaluate("() => window.__watchFirstFrame()")
    pressed = await press(site)
    preview = await first_frame(page)
    await wait_page(page, "s.call && s.call.status === 'INCOMING'", "the page to ring")
    call = door_station(site).calls.active_call
    assert call is not None
    await end_call(site, call, page)
    return preview - pressed


async def run(count: int) -> dict[str, Any]:
    """``count`` rings to the phone in a pocket, each followed by one to the open page."""
    server = WebServer(WEB_ROOT)
    woken: list[dict[str, float]] = []
    open_page: list[float] = []
    lost: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="callbox-bench-") as name:
            directory = Path(name)
            site = await start_phone_site(directory / "site", server.url)
            vapid, key_path = await vapid_on_disk(directory)
            endpoint = PushEndpoint(vapid.application_server_key)
            await endpoint.start()
            try:
                async with async_playwright() as playwright:
                    context = await open_browser(playwright, directory / "profile")
                    await context.add_init_script(WATCH_FIRST_FRAME)
                    page = context.pages[0] if context.pages else await context.new_page()
                    key = (vapid.application_server_key, key_path)
                    subscriber = await subscribe_with_the_door(
                        page, site, server.url, endpoint, key
                    )
                    delivery = PushDelivery(context, server.url)
                    await delivery.start()
                    opened: Page | None = page
                    for _ in range(count):
                        if opened is not None:
                            await pocket(opened, site, server.url)
                        try:
                            figures, opened = await woken_ring(
                                site, context, server.url, endpoint, subscriber, delivery
                            )
                        except NotificationLost as err:
                            lost.append(str(err))  # no page opened: still in the pocket
                            opened = None
                            continue
                        woken.append(figures)
                        open_page.append(await open_ring(site, opened))
                    await context.close()
            finally:
                await site.close()
                await endpoint.close()
    finally:
        server.close()
    ours = {f: summary([r[f] for r in woken]) for f in WOKEN}
    base = summary(open_page)
    woke, stayed = ours["pin_to_preview_ms"]["median"], base["median"]
    headline = ours["delivered_to_preview_ms"]
    return {
        "runs": count,
        "woken_by_push": ours,
        "baseline_page_open": {"pin_to_preview_ms": base},
        "ratio_pin_to_preview_woken_to_open_median": (
            round(float(woke) / float(stayed), 2) if woke and stayed else None
        ),
        "notifications_lost": lost,
        "targets_ms": TARGETS_MS,
        "target_met_p95": (
            headline["p95"] is not None
            and float(headline["p95"]) <= TARGETS_MS["delivered_to_preview_ms"]
        ),
    }


def main() -> None:
    """Parse arguments, run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if not only_loopback():
        sys.exit("run inside a network namespace with loopback only: unshare -rn (see the doc)")
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(run(args.runs)), indent=2))


if __name__ == "__main__":
    main()
