"""Web Push on the phone page (issue 16, part 2, client side) in Debian's Chromium.

- The real service worker (web/src/sw.js) receives a push through the DevTools protocol
  (``ServiceWorker.deliverPushMessage``: Chromium cannot reach a push service here) in the
  payload format of docs/protocol.md ("Web Push") and shows the notification: the door's name
  (with the bell's label when the push names one), "Someone is at the door" with the time, the
  snapshot, Answer and Decline; "Missed visitor" once the ring timeout has passed. The door's
  second push of the call, with the visitor's picture, replaces the notification without
  alerting again and never brings back one that was clicked. The test reads what Chromium
  shows through ``registration.getNotifications()``.
- A click: neither playwright nor the DevTools protocol can click a notification, so the test
  calls the worker's own click handler (``self.callboxWorker.onNotificationClick``, the
  function its ``notificationclick`` listener runs) inside the worker with a notification
  Chromium shows; the page opens at ``./?ring=<call id>&action=answer``, or an open page is told,
  and it answers (or declines) the real door's call after showing the visitor's preview.
- Subscribing: ``pushManager.subscribe`` needs a real push service, so an init script replaces
  it with one that returns a subscription whose endpoint is a local URL and whose keys this
  test generated; that is the one stand-in. Everything after it is real: the page's signed,
  encrypted ``push_subscribe`` reaches the door's inbox on the real mosquitto (read there on
  the door's own login and opened with the door's key), the door's signed ``push_status`` comes
  back, and turning notifications off sends ``push_unsubscribe``.
- The whole path: doorbell pin -> the real door station's push (to a local push service that
  checks VAPID and decrypts) -> the worker's notification -> Answer -> the page joins the call
  that still rings -> preview -> answer -> door release -> hang up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from harness.phonesite import DOOR, PHONE, SITE, PhoneSite, page_snapshot
from harness.push_endpoint import PushEndpoint
from harness.push_page import (
    CLICK,
    TIMEOUT_S,
    PushDelivery,
    click,
    close_the_page,
    fake_push_service,
    open_worker_page,
    pocket,
    subscribe_with_the_door,
    wait_for_worker,
    wait_page,
    worker_of,
)
from harness.push_site import vapid_on_disk
from playwright.async_api import Page, Worker
from support import wait_for

from device.config import load_or_create_identity
from device.phone import WebServer
from services.signaling.envelope import parse, seal, verify_and_open
from services.signaling.identity import b64u_encode
from services.signaling.profile import signed_profile

_log = logging.getLogger("browser")
SNAPSHOT = "data:image/jpeg;base64,/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAP//////////////////////////2Q=="


def p256_public_b64u() -> str:
    """A fresh P-256 public key, uncompressed, base64url (a VAPID key or a p256dh)."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return b64u_encode(key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


def ring_payload(
    call_id: str, *, at_ms: int | None = None, snapshot: bool = True
) -> dict[str, Any]:
    """The push payload a door sends on a doorbell press (docs/protocol.md, "Web Push")."""
    payload: dict[str, Any] = {
        "v": 1,
        "type": "ring",
        "door": DOOR,
        "name": "Front door",
        "call_id": call_id,
        "at_ms": int(time.time() * 1000) if at_ms is None else at_ms,
        "ring_timeout_ms": 30000,
    }
    if snapshot:
        payload["snapshot"] = SNAPSHOT
    return payload


# the notification ---------------------------------------------------------------------------


async def test_push_shows_the_ring_notification_and_missed_visitor_later(
    page: Page, web_server: WebServer
) -> None:
    """A ring push: name, time, snapshot, Answer/Decline; an old one: Missed visitor."""
    await open_worker_page(page, f"{web_server.url}/")
    delivery = PushDelivery(page.context, web_server.url)
    await delivery.start()
    await close_the_page(page, web_server.url)

    await delivery.push(ring_payload("call-1"))
    shown = await delivery.wait_notification("call-1")
    assert shown["title"] == "Front door"
    assert shown["body"].startswith("Someone is at the door (")
    assert shown["actions"] == ["answer:Answer", "decline:Decline"]
    assert shown["image"] == SNAPSHOT
    assert shown["requireInteraction"] is True and shown["renotify"] is True
    assert shown["icon"] == f"{web_server.url}/icons/icon-192.png"
    assert shown["data"]["callId"] == "call-1" and shown["data"]["missed"] is False

    # delivered after the ring timeout (the phone was off the network): no actions
    late = int(time.time() * 1000) - 60000
    await delivery.push(ring_payload("call-2", at_ms=late, snapshot=False))
    missed = await delivery.wait_notification("call-2")
    assert missed["title"] == "Front door"
    assert missed["body"].startswith("Missed visitor at ")
    assert missed["actions"] == [] and missed["requireInteraction"] is False
    assert missed["image"] == ""

    # an entrance panel's bell: its label in the title; a malformed one left out, still rung
    await delivery.push({**ring_payload("call-3", snapshot=False), "bell": "Flat 12 - Smith"})
    named = await delivery.wait_notification("call-3")
    assert named["title"] == "Front door · Flat 12 - Smith"
    assert named["actions"] == ["answer:Answer", "decline:Decline"]
    await delivery.push({**ring_payload("call-4", snapshot=False), "bell": "x" * 65})
    assert (await delivery.wait_notification("call-4"))["title"] == "Front door"

    # a push that is not a ring still shows something (userVisibleOnly), naming the problem
    await delivery.push("not json")
    await delivery.shown_at("-")  # the worker's record of a push it could not read
    deadline = time.monotonic() + TIMEOUT_S
    while not [n for n in await delivery.notifications() if n["title"] == "callbox"]:
        assert time.monotonic() < deadline, await delivery.notifications()
        await asyncio.sleep(0.05)


async def wait_outcome(worker: Worker, what: str) -> None:
    """Wait until the worker has recorded ``what`` ("<call id>: <outcome>")."""
    await wait_for_worker(worker, f"self.callboxWorker.outcomes().includes({what!r})", what)


async def test_the_picture_push_updates_the_one_notification_of_the_call(
    page: Page, web_server: WebServer
) -> None:
    """Ring, then the same ring with the picture: one notification, the picture, no new alert.

    A picture push after the notification was clicked shows nothing; one after the ring timed
    out stays "Missed visitor"; a picture that arrives before its ring is kept by the ring.
    """
    await open_worker_page(page, f"{web_server.url}/")
    delivery = PushDelivery(page.context, web_server.url)
    await delivery.start()
    await close_the_page(page, web_server.url)
    worker = await worker_of(page.context, web_server.url)

    ring = ring_payload("call-p", snapshot=False)
    await delivery.push(ring)
    first = await delivery.wait_notification("call-p")
    assert first["image"] == "" and first["renotify"] is True
    await delivery.push(ring | {"snapshot": SNAPSHOT})
    await wait_outcome(worker, "call-p: replaced")
    (shown,) = await delivery.notifications("call-p")
    assert shown["image"] == SNAPSHOT
    assert shown["renotify"] is False, "the picture does not ring the phone again"
    assert (shown["title"], shown["body"], shown["actions"]) == (
        first["title"],
        first["body"],
        first["actions"],
    )
    assert shown["requireInteraction"] is True and shown["data"]["missed"] is False
    assert [n["tag"] for n in await delivery.notifications()] == ["call-p"]

    # Answer was clicked (the notification closes): a late picture brings nothing back
    clicked = await click(page.context, web_server.url, "call-p", "answer")
    assert clicked["url"].endswith("/?ring=call-p&action=answer")
    assert await delivery.notifications("call-p") == []
    await delivery.push(ring | {"snapshot": SNAPSHOT})
    await wait_outcome(worker, "call-p: dropped: no longer shown")
    assert await delivery.notifications() == []

    # the ring timed out: the picture joins "Missed visitor", without actions or an alert
    late = ring_payload("call-m", at_ms=int(time.time() * 1000) - 60000, snapshot=False)
    await delivery.push(late)
    missed = await delivery.wait_notification("call-m")
    await delivery.push(late | {"snapshot": SNAPSHOT})
    await wait_outcome(worker, "call-m: replaced: missed")
    (shown,) = await delivery.notifications("call-m")
    assert shown["body"] == missed["body"] and shown["body"].startswith("Missed visitor at ")
    assert shown["image"] == SNAPSHOT and shown["actions"] == []
    assert shown["renotify"] is False and shown["data"]["missed"] is True

    # out of order (the push service kept the picture, the ring came late): the picture stays
    ring = ring_payload("call-o", snapshot=False)
    await delivery.push(ring | {"snapshot": SNAPSHOT})
    assert (await delivery.wait_notification("call-o"))["renotify"] is True
    await delivery.push(ring)
    await wait_outcome(worker, "call-o: replaced")
    (shown,) = await delivery.notifications("call-o")
    assert shown["image"] == SNAPSHOT and shown["renotify"] is False
    assert sorted(n["tag"] for n in await delivery.notifications()) == ["call-m", "call-o"]


# the click ------------------------------------------------------------------------------------


async def test_answer_on_the_notification_opens_the_page_at_the_ringing_call(
    page: Page, phone_site: PhoneSite, web_server: WebServer
) -> None:
    """Answer with no page open: a page opens at ./?ring=X&action=answer, waiting for X.

    Chromium lets a worker open a window only while it handles a real click
    (``clients.openWindow`` answers "Not allowed to open a window" otherwise), and no test can
    click a notification: the handler runs here up to that call, and the test then opens the
    URL the handler asked for, as Chromium does on the click.
    """
    await open_worker_page(page, phone_site.pairing_url)
    await page.evaluate("() => window.callbox.ready")
    context = page.context
    delivery = PushDelivery(context, web_server.url)
    await delivery.start()
    await close_the_page(page, web_server.url)

    await delivery.push(ring_payload("call-x"))
    await delivery.wait_notification("call-x")
    worker = await worker_of(context, web_server.url)
    result = await worker.evaluate(CLICK, ["call-x", "answer"])
    assert result == {
        "url": f"{web_server.url}/?ring=call-x&action=answer",
        "error": "InvalidAccessError: Not allowed to open a window.",
    }
    assert await delivery.notifications("call-x") == [], "the notification closes on the click"

    phone = await context.new_page()
    await phone.goto(result["url"])
    await wait_page(phone, "s.ringRequest && s.connection === 'online'", "the page to connect")
    state = await page_snapshot(phone)
    assert state["ringRequest"] == {"callId": "call-x", "action": "answer", "state": "waiting"}
    assert phone.url == f"{web_server.url}/", (
        "the ring leaves the address bar (no answer on reload)"
    )
    # a missed visitor's notification leads to the page only
    decline_url = await worker.evaluate(
        "() => self.callboxWorker.clickUrl({ callId: 'call-x', missed: true }, 'answer')"
    )
    assert decline_url == f"{web_server.url}/"


@pytest.mark.parametrize("action", ["answer", "decline"])
async def test_a_click_on_an_open_page_answers_the_doors_call_after_the_preview(
    page: Page, phone_site: PhoneSite, web_server: WebServer, action: str
) -> None:
    """The page is open and ringing: Answer (Decline) in the notification acts on that call.

    The worker's click handler tells the open page which call and action; the page shows the
    visitor's video first, then answers (declines) the real door's call.
    """
    await page.context.grant_permissions(["notifications"], origin=web_server.url)
    await phone_site.open_phone(page)
    await page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    await phone_site.start_door()
    await wait_page(page, "s.peers.door && s.peers.door.online && s.peers.door.pinned", "the door")
    worker = await worker_of(page.context, web_server.url)

    await phone_site.press_doorbell()
    await wait_page(page, "s.call && s.call.status === 'INCOMING'", "the door's call")
    assert phone_site.door is not None and phone_site.door.endpoint is not None
    call = phone_site.door.endpoint.calls.active_call
    assert call is not None
    # the push of this ring: the page is open and focused (it rings by itself): no notification
    delivery = PushDelivery(page.context, web_server.url)
    await delivery.start()
    await delivery.push(ring_payload(call.call_id))
    skipped = f"{call.call_id}: skipped: a focused page"
    condition = f"self.callboxWorker.outcomes().includes({skipped!r})"
    await wait_for_worker(worker, condition, "the push")
    assert await delivery.notifications() == []
    # had the page been in the background, the notification would be there: its click
    await worker.evaluate(
        """async (ring) => {
            const { title, options } = self.callboxWorker.ringNotification(
                self.callboxWorker.readPayload(ring), Date.now());
            await self.registration.showNotification(title, options);
        }""",
        ring_payload(call.call_id),
    )
    result = await worker.evaluate(CLICK, [call.call_id, action])
    assert result["client"].split("#")[0] == f"{web_server.url}/", result  # told; no new page

    if action == "answer":
        await wait_page(page, "s.call && s.call.status === 'CONNECTED'", "the page to answer")
        await wait_for(lambda: call.is_answered(), "the door's call answered", TIMEOUT_S)
    else:
        await wait_page(page, "!s.call && s.lastCall && s.lastCall.status === 'CANCEL'", "declined")
        await wait_for(lambda: call.status.value & 0x40, "the door's call to end", TIMEOUT_S)
    state = await page_snapshot(page)
    request = state["ringRequest"]
    assert request["callId"] == call.call_id and request["action"] == action
    assert request["state"] == ("answered" if action == "answer" else "declined")
    assert request["previewFrames"] > 0, "the visitor's video showed before acting"


# subscribing ----------------------------------------------------------------------------------


async def read_inbox_message(messages: aiomqtt.client.MessagesIterator, type_: str) -> Any:
    """The next envelope of ``type_`` arriving in the door's inbox (others are skipped)."""
    async with asyncio.timeout(TIMEOUT_S):
        async for message in messages:
            envelope = parse(bytes(message.payload))
            if envelope.type == type_:
                return envelope
    raise AssertionError(f"no {type_} in the door's inbox")


async def test_turning_push_on_registers_with_the_door_and_off_withdraws(
    page: Page, phone_site: PhoneSite, web_server: WebServer
) -> None:
    """On: a signed push_subscribe reaches the door; its push_status shows; off: unsubscribe."""
    vapid = p256_public_b64u()
    keys = {"p256dh": p256_public_b64u(), "auth": b64u_encode(os.urandom(16))}
    endpoint = "https://127.0.0.1:9/push/v1/phone-subscription"
    await fake_push_service(page, endpoint, keys)
    await page.context.grant_permissions(["notifications"], origin=web_server.url)
    phone_site.pairing = replace(phone_site.pairing, push_key=vapid)
    phone_keys = await phone_site.open_phone(page)

    # the door, played here on its own login to read the exact envelopes: its keys, its signed
    # profile and presence on the real broker, its inbox (the real door station's answers are
    # in test_doorbell_push_answer_preview_door_release_hang_up)
    door = await asyncio.to_thread(load_or_create_identity, phone_site.directory / DOOR)
    broker = phone_site.broker
    topic = f"callbox/v1/{SITE}/{DOOR}"
    async with aiomqtt.Client(
        "127.0.0.1",
        broker.settings.port,
        username=DOOR,
        password=broker.files.passwords[DOOR],
        identifier="door-push-test",
    ) as client:
        await client.subscribe(f"{topic}/inbox", qos=1)
        profile = signed_profile(door, DOOR, "Door", "door")
        await client.publish(f"{topic}/profile", json.dumps(profile), qos=1, retain=True)
        await client.publish(
            f"{topic}/presence", json.dumps({"state": "online"}), qos=1, retain=True
        )
        await wait_page(
            page, "s.peers.door && s.peers.door.online && s.peers.door.pinned", "the door"
        )
        await wait_page(page, "s.push && s.push.state === 'off'", "notifications off at first")
        assert await page.is_visible("#push-enable")

        await page.click("#push-enable")  # a tap: the permission prompt needs a user gesture
        envelope = await read_inbox_message(client.messages, "push_subscribe")
        assert envelope.sender == PHONE and envelope.recipient == DOOR
        body = verify_and_open(envelope, sender_keys=phone_keys, recipient=door)
        assert body == {"subscription": {"endpoint": endpoint, "keys": keys}, "expires_ms": None}
        options = await page.evaluate("() => window.__pushService.options")
        assert options["userVisibleOnly"] is True
        assert b64u_encode(bytes(options["key"])) == vapid, "the site's key from the pairing link"

        async def push_status(body: dict[str, Any]) -> None:
            """The door's reply, signed and encrypted to the phone."""
            reply = seal(
                door,
                type="push_status",
                call_id=envelope.call_id,
                sender=DOOR,
                recipient=PHONE,
                recipient_keys=phone_keys,
                body=body,
            )
            await client.publish(f"callbox/v1/{SITE}/{PHONE}/inbox", reply, qos=1)

        await push_status({"subscribed": True, "error": ""})
        await wait_page(page, "s.push.doors.door.subscribed === true", "the door's push_status")
        state = await page_snapshot(page)
        assert state["push"]["state"] == "on" and state["push"]["endpoint"] == endpoint
        assert await page.inner_text("#push-doors") == "Door: rings this phone"
        assert await page.is_visible("#push-disable") and not await page.is_visible("#push-enable")

        # a refusal is shown with the door's reason
        await push_status({"subscribed": False, "error": "phone is not a contact of this door"})
        await wait_page(page, "s.push.doors.door.subscribed === false", "the refusal")
        assert await page.inner_text("#push-doors") == (
            "Door: refused: phone is not a contact of this door"
        )

        await page.click("#push-disable")
        withdrawn = await read_inbox_message(client.messages, "push_unsubscribe")
        assert verify_and_open(withdrawn, sender_keys=phone_keys, recipient=door) == {}
        await wait_page(page, "s.push.state === 'off'", "notifications off")
        assert await page.evaluate("() => window.__pushService.unsubscribed") == 1
        await client.publish(f"{topic}/profile", b"", qos=1, retain=True)
        await client.publish(f"{topic}/presence", b"", qos=1, retain=True)


IPHONE_SAFARI = """
Object.defineProperty(Navigator.prototype, "userAgent", {
  get: () => "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 " +
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
});
"""


async def test_ios_safari_outside_the_home_screen_is_told_to_add_it_first(
    page: Page, phone_site: PhoneSite
) -> None:
    """On iOS, Web Push reaches only to a Home Screen web app (16.4+): the page says so."""
    await page.add_init_script(IPHONE_SAFARI)
    phone_site.pairing = replace(phone_site.pairing, push_key=p256_public_b64u())
    await phone_site.open_phone(page)
    await wait_page(page, "s.push && s.push.homeScreenFirst", "the iOS hint")
    hint = await page.inner_text("#push-hint")
    assert "Add to Home Screen" in hint and "16.4" in hint
    assert await page.is_disabled("#push-enable")


async def test_a_pairing_without_push_key_says_how_to_get_one(
    page: Page, phone_site: PhoneSite
) -> None:
    """A link from a site without a VAPID key: no button, the reason instead."""
    await phone_site.open_phone(page)
    await wait_page(page, "s.push && s.push.state === 'no-key'", "no push key")
    assert "pair it again with a new link" in await page.inner_text("#push-state")
    assert not await page.is_visible("#push-enable")


# the whole path -------------------------------------------------------------------------------


async def test_doorbell_push_answer_preview_door_release_hang_up(
    page: Page, phone_site: PhoneSite, web_server: WebServer, tmp_path: Path
) -> None:
    """Doorbell pin -> the door's push -> notification -> Answer -> the page joins -> release.

    The door station (``[push]`` with the site's key) pushes to a local push service
    (tests/harness/push_endpoint.py: it checks the VAPID signature and decrypts RFC 8291 with
    the subscription's keys, which this test made: the stand-in push service of the page's
    ``pushManager.subscribe``); what it decrypts is delivered to the page's worker through the
    DevTools protocol, as the browser's push service would. The page, opened at the URL the
    worker's Answer asks for, joins the call that still rings (a late joiner), shows the
    preview, answers, opens the door and hangs up.
    """
    vapid, key_path = await vapid_on_disk(tmp_path)
    endpoint = PushEndpoint(application_server_key=vapid.application_server_key)
    await endpoint.start()
    try:
        key = (vapid.application_server_key, key_path)
        subscriber = await subscribe_with_the_door(page, phone_site, web_server.url, endpoint, key)
        assert await page.inner_text("#push-doors") == "Door: rings this phone"

        # the phone goes into a pocket: no page, offline on the broker
        context = page.context
        delivery = PushDelivery(context, web_server.url)
        await delivery.start()
        await pocket(page, phone_site, web_server.url)
        door = phone_site.door
        assert door is not None and door.endpoint is not None

        # a visitor: the door pushes, the push service decrypts it for the phone's browser
        await phone_site.press_doorbell()
        # both pushes: the ring, then the ring with the visitor's picture from the door's camera
        await wait_for(
            lambda: len(endpoint.deliveries(subscriber)) == 2, "the door's two pushes", TIMEOUT_S
        )
        call = door.endpoint.calls.active_call
        assert call is not None
        push, with_picture = endpoint.deliveries(subscriber)
        assert push.payload["call_id"] == call.call_id and push.payload["door"] == DOOR
        assert "snapshot" not in push.payload
        assert with_picture.payload["snapshot"].startswith("data:image/jpeg;base64,")
        assert with_picture.headers["topic"] == push.headers["topic"]
        await delivery.push(push.payload)
        shown = await delivery.wait_notification(call.call_id)
        assert shown["title"] == "Door" and shown["body"].startswith("Someone is at the door")
        assert shown["actions"] == ["answer:Answer", "decline:Decline"]
        await delivery.push(with_picture.payload)
        await wait_outcome(await worker_of(context, web_server.url), f"{call.call_id}: replaced")
        (shown,) = await delivery.notifications(call.call_id)
        assert shown["image"] == with_picture.payload["snapshot"] and shown["renotify"] is False
        assert shown["actions"] == ["answer:Answer", "decline:Decline"]

        # Answer: Chromium would open this URL on the click (see the test above)
        clicked = await click(context, web_server.url, call.call_id, "answer")
        assert clicked["url"] == f"{web_server.url}/?ring={call.call_id}&action=answer"
        opened_at = time.perf_counter()
        phone = await context.new_page()
        phone.on("console", lambda m: _log.info("phone %s: %s", m.type, m.text))
        await phone.goto(clicked["url"])
        await wait_page(phone, "s.call && s.call.remoteVideoFrames > 0", "the visitor's video")
        preview_ms = (time.perf_counter() - opened_at) * 1000
        _log.info("page opened -> first preview frame: %.0f ms", preview_ms)
        await wait_page(phone, "s.call && s.call.status === 'CONNECTED'", "the page to answer")
        await wait_for(lambda: call.is_answered(), "the door's call answered", TIMEOUT_S)
        request = (await page_snapshot(phone))["ringRequest"]
        assert request["state"] == "answered" and request["previewFrames"] > 0

        await phone.click("#open-door")
        await wait_page(phone, "s.call.lastUnlock && s.call.lastUnlock.opened", "the door to open")
        assert phone_site.relay_pulses() == 1
        await phone.click("#hangup")
        await wait_page(phone, "!s.call && s.lastCall.status === 'COMPLETE'", "the hangup")
        calls = door.endpoint.calls
        await wait_for(lambda: not calls.is_call_in_progress(), "the door idle", TIMEOUT_S)
    finally:
        await endpoint.close()
