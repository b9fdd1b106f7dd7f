"""The phone page's side of Web Push in Chromium, for the browser tests and the benchmark.

``tests/browser/test_push_page.py`` and ``bench/push_to_preview.py`` drive the same path with
these: the one stand-in for the browser's push service (an init script whose
``pushManager.subscribe`` returns a subscription with a local endpoint and keys the caller
made), pushes delivered to the page's real service worker through the DevTools protocol
(``ServiceWorker.deliverPushMessage``: Chromium cannot reach a push service here), what
Chromium shows (``registration.getNotifications()``), the worker's own click handler run
inside the worker (neither playwright nor the DevTools protocol can click a notification),
and the page closed like a phone put in a pocket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from support import wait_for

from harness.phonesite import PHONE, PhoneSite, wait_snapshot
from harness.push_endpoint import PushEndpoint, Subscriber
from harness.push_site import push_toml

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, Worker

TIMEOUT_S = 15.0
_log = logging.getLogger("browser")

# The one stand-in: the browser's push service. The subscription it returns has a local
# endpoint (ENDPOINT) and keys the caller made (KEYS); the page's code above it (the button,
# the permission, the signed messages) is the real one.
FAKE_PUSH_SERVICE = """
(() => {
  const made = { subscription: null, unsubscribed: 0, options: null };
  window.__pushService = made;
  PushManager.prototype.subscribe = async function (options) {
    made.options = {
      userVisibleOnly: options.userVisibleOnly,
      key: Array.from(new Uint8Array(options.applicationServerKey)),
    };
    const json = { endpoint: ENDPOINT, expirationTime: null, keys: KEYS };
    made.subscription = {
      endpoint: json.endpoint,
      expirationTime: null,
      options,
      toJSON: () => json,
      unsubscribe: async () => {
        made.unsubscribed += 1;
        made.subscription = null;
        return true;
      },
    };
    return made.subscription;
  };
  PushManager.prototype.getSubscription = async function () {
    return made.subscription;
  };
})();
"""

# Runs the worker's notificationclick handler on the notification ``tag`` shows, with
# ``action``: the URL it opens (or the open page it tells) and what became of it.
CLICK = """async ([tag, action]) => {
    const [n] = await self.registration.getNotifications({ tag });
    if (!n) return { error: "no notification " + tag };
    const url = self.callboxWorker.clickUrl(n.data, action);
    try {
        const client = await self.callboxWorker.onNotificationClick(n, action);
        return { url, client: client ? client.url : null };
    } catch (err) {
        return { url, error: String(err) };
    }
}"""


async def fake_push_service(page: Page, endpoint: str, keys: dict[str, str]) -> None:
    """Make ``page``'s ``pushManager.subscribe`` return ``endpoint`` and ``keys``."""
    script = FAKE_PUSH_SERVICE.replace("ENDPOINT", json.dumps(endpoint))
    await page.add_init_script(script.replace("KEYS", json.dumps(keys)))


async def wait_page(page: Page, condition: str, what: str) -> None:
    """Wait until the JS expression ``condition`` over the snapshot ``s`` holds (TIMEOUT_S)."""
    await wait_snapshot(page, condition, what, TIMEOUT_S)


async def worker_of(context: BrowserContext, origin: str) -> Worker:
    """The page's service worker (playwright's handle on the running worker)."""
    for worker in context.service_workers:
        if worker.url.startswith(origin):
            return worker
    started: Worker = await context.wait_for_event(
        "serviceworker", lambda w: w.url.startswith(origin), timeout=TIMEOUT_S * 1000
    )
    return started


async def click(context: BrowserContext, origin: str, tag: str, action: str) -> dict[str, Any]:
    """Run the worker's click handler on notification ``tag`` (see :data:`CLICK`)."""
    worker = await worker_of(context, origin)
    result: dict[str, Any] = await worker.evaluate(CLICK, [tag, action])
    return result


class PushDelivery:
    """Delivers pushes to the page's worker through the DevTools protocol."""

    def __init__(self, context: BrowserContext, origin: str) -> None:
        self.context = context
        self.origin = origin
        self.registrations: dict[str, str] = {}  # scope URL -> registration id
        self.probe: Page | None = None

    async def start(self) -> None:
        """A document of the origin that is not the phone page, with a DevTools session on it."""
        self.context.on("console", lambda m: _log.info("context %s: %s", m.type, m.text))
        self.probe = await self.context.new_page()
        await self.probe.goto(f"{self.origin}/icons/icon-192.png")
        cdp = await self.context.new_cdp_session(self.probe)

        def updated(event: dict[str, Any]) -> None:
            for registration in event["registrations"]:
                if not registration.get("isDeleted"):
                    self.registrations[registration["scopeURL"]] = registration["registrationId"]

        cdp.on("ServiceWorker.workerRegistrationUpdated", updated)
        await cdp.send("ServiceWorker.enable")
        await wait_for(lambda: f"{self.origin}/" in self.registrations, "the worker's registration")
        self.cdp = cdp

    async def push(self, payload: dict[str, Any] | str) -> None:
        """Deliver ``payload`` (JSON unless already text) as the push service would."""
        data = payload if isinstance(payload, str) else json.dumps(payload)
        await self.cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": self.origin,
                "registrationId": self.registrations[f"{self.origin}/"],
                "data": data,
            },
        )

    async def notifications(self, tag: str = "") -> list[dict[str, Any]]:
        """What Chromium shows for the origin now (``registration.getNotifications()``)."""
        assert self.probe is not None
        shown: list[dict[str, Any]] = await self.probe.evaluate(
            """async (tag) => {
                const registration = await navigator.serviceWorker.getRegistration("/");
                const shown = await registration.getNotifications(tag ? { tag } : {});
                return shown.map((n) => ({
                    title: n.title, body: n.body, tag: n.tag, image: n.image, icon: n.icon,
                    renotify: n.renotify, requireInteraction: n.requireInteraction,
                    actions: n.actions.map((a) => a.action + ":" + a.title), data: n.data,
                }));
            }""",
            tag,
        )
        return shown

    async def shown_at(self, tag: str) -> float:
        """When the worker's ``showNotification`` for ``tag`` resolved: wall-clock ms.

        Read from the worker's own record (``self.callboxWorker.outcomes()``: "<tag>: shown",
        or "<tag>: shown: missed"), polled every 5 ms inside the worker. Never poll
        ``getNotifications()`` until then: Chromium drops from its notification database a
        notification that a concurrent ``getNotifications()`` finds written but not yet
        displayed, and it never shows (7 of 85 pushes polled every 5 ms, 2 of 85 every 50 ms;
        none of 85 read after this record).
        """
        worker = await worker_of(self.context, self.origin)
        at: float = await worker.evaluate(
            """async ([done, timeoutMs]) => {
                const until = Date.now() + timeoutMs;
                while (Date.now() < until) {
                    if (self.callboxWorker.outcomes().some((o) => o.startsWith(done))) {
                        return Date.now();
                    }
                    await new Promise((resolve) => setTimeout(resolve, 5));
                }
                return 0;
            }""",
            [f"{tag}: shown", TIMEOUT_S * 1000],
        )
        if not at:
            state = await worker.evaluate("() => self.callboxWorker.outcomes()")
            raise AssertionError(f"the worker did not show {tag!r}: {state}")
        return at

    async def wait_notification(self, tag: str) -> dict[str, Any]:
        """The notification with ``tag``, once the worker has shown it (see :meth:`shown_at`)."""
        await self.shown_at(tag)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            shown = await self.notifications(tag)
            if shown:
                return shown[0]
            await asyncio.sleep(0.05)
        worker = await worker_of(self.context, self.origin)
        state = await worker.evaluate(
            "async () => ({ outcomes: self.callboxWorker.outcomes(), "
            "permission: Notification.permission, "
            "inWorker: (await self.registration.getNotifications()).map((n) => n.tag) })"
        )
        raise AssertionError(
            f"no notification {tag!r}; worker: {state}; shown: {await self.notifications()}"
        )


async def wait_for_worker(worker: Worker, condition: str, what: str) -> None:
    """Wait until the JS expression ``condition`` holds in the worker."""
    deadline = time.monotonic() + TIMEOUT_S
    while not await worker.evaluate(f"() => Boolean({condition})"):
        assert time.monotonic() < deadline, f"timed out waiting in the worker for {what}"
        await asyncio.sleep(0.05)


async def close_the_page(page: Page, origin: str) -> None:
    """Close the phone page and wait until its worker no longer sees it (the phone in a pocket)."""
    context = page.context
    await page.close()
    worker = await worker_of(context, origin)
    deadline = time.monotonic() + TIMEOUT_S
    while await worker.evaluate(
        """async () => (await clients.matchAll({ type: "window", includeUncontrolled: true }))
            .some((c) => new URL(c.url).pathname === "/")"""
    ):
        assert time.monotonic() < deadline, "the worker still sees the closed page"
        await asyncio.sleep(0.05)


async def open_worker_page(page: Page, url: str) -> None:
    """Open ``url`` and wait until the worker controls the page and may notify."""
    await page.context.grant_permissions(["notifications"], origin=url.split("/#")[0].rstrip("/"))
    await page.goto(url)
    await page.wait_for_function(
        "() => navigator.serviceWorker && navigator.serviceWorker.controller !== null",
        timeout=TIMEOUT_S * 1000,
    )


async def subscribe_with_the_door(
    page: Page,
    site: PhoneSite,
    origin: str,
    endpoint: PushEndpoint,
    key: tuple[str, Path],
    call_toml: str = "",
) -> Subscriber:
    """Pair the page, start the door with ``[push]``, turn notifications on; the subscriber.

    ``key`` is the site's VAPID key (its application server key and its file): the pairing
    link carries the public half, the door's ``[push]`` names the file. The page subscribes
    through :data:`FAKE_PUSH_SERVICE` with a subscription of ``endpoint``; the real door
    keeps it and answers ``push_status``.
    """
    application_server_key, key_path = key
    subscriber = endpoint.new_subscriber()
    subscription = subscriber.subscription()
    await fake_push_service(page, subscription["endpoint"], subscription["keys"])
    await page.context.grant_permissions(["notifications"], origin=origin)
    site.pairing = replace(site.pairing, push_key=application_server_key)
    await site.open_phone(page)
    await page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    await site.start_door(call_toml=call_toml, extra_toml=push_toml(key_path, endpoint, 5.0))
    await wait_page(page, "s.peers.door && s.peers.door.online && s.peers.door.pinned", "door")
    await page.click("#push-enable")  # a tap: the permission prompt needs a user gesture
    await wait_page(page, "s.push.doors.door.subscribed === true", "the door's push_status")
    return subscriber


async def pocket(page: Page, site: PhoneSite, origin: str) -> None:
    """Close the phone page and wait until the door sees the phone offline on the broker."""
    await close_the_page(page, origin)
    door = site.door
    assert door is not None and door.endpoint is not None
    await door.endpoint.signaling.wait_presence(PHONE, False, timeout=TIMEOUT_S)
