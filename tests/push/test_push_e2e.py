"""A phone registers with the door in a signed message; the doorbell pin pushes it.

Real parts throughout: the door and indoor unit are device apps from callbox.toml files on
MockFactory pins, the phone a Call API endpoint, all on a real mosquitto; the pushes go over
HTTP to a local push service that checks the VAPID token and decrypts the body. Each ring is
two pushes: the ring at once, then the same ring with the visitor's picture (the door's camera).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import av
import numpy as np
from harness.push_endpoint import Delivery, Subscriber
from harness.push_site import (
    DOOR,
    FLAT,
    INTRUDER,
    PHONE,
    STRANGER,
    PushSite,
)
from support import wait_for

from device.simulator import write_unit_config
from services.callapi import CallProperties, Calls, IncomingListener, UserProfile
from services.push.payload import MAX_PAYLOAD_BYTES, push_topic
from services.push.sender import Outcome
from services.push.store import STORE_FILE
from services.signaling.errors import RejectReason

JPEG_URL = "data:image/jpeg;base64,"


def rings(push_site: PushSite, sub: Subscriber) -> list[Delivery]:
    """The first pushes of the rings ``sub`` received (not their pictures)."""
    return [d for d in push_site.endpoint.deliveries(sub) if "snapshot" not in d.payload]


def decode_jpeg(jpeg: bytes) -> av.VideoFrame:
    """``jpeg`` decoded by PyAV (FFmpeg's mjpeg decoder)."""
    codec = av.CodecContext.create("mjpeg", "r")
    (frame,) = codec.decode(av.Packet(jpeg))
    assert isinstance(frame, av.VideoFrame)
    return frame


async def test_a_subscribed_phone_gets_the_ring_online_or_not(push_site: PushSite) -> None:
    phone = push_site.phones[PHONE]
    sub = push_site.endpoint.new_subscriber()
    assert await phone.subscribe(sub) == {"subscribed": True, "error": ""}
    stored = json.loads((Path(push_site.site[DOOR].config.state_dir) / STORE_FILE).read_text())
    assert [s["address"] for s in stored["subscriptions"]] == [PHONE]

    pressed = await push_site.press()
    await wait_for(lambda: rings(push_site, sub), "the push")
    (delivery,) = rings(push_site, sub)
    call = push_site.door.calls.active_call
    assert call is not None
    assert delivery.payload == {
        "v": 1,
        "type": "ring",
        "door": DOOR,
        "name": "Door",
        "call_id": call.call_id,
        "at_ms": delivery.payload["at_ms"],
        "ring_timeout_ms": 30000,
    }
    assert abs(delivery.payload["at_ms"] / 1000 - time.time()) < 10
    assert (delivery.headers["urgency"], delivery.headers["ttl"]) == ("high", "30")
    (result,) = push_site.push.notifier.results
    assert result.outcome is Outcome.SENT
    assert result.sent_at is not None and pressed < result.sent_at < delivery.at
    assert push_site.door.status()["push"] == {  # what `callbox status` shows
        "subscribed": [PHONE],
        "refused_registrations": 0,
        "last_pushes": [{"to": PHONE, "outcome": "sent", "status": 201}],
    }

    # the phone's page closed: it is offline, and still woken
    await push_site.hang_up()
    await phone.calls.close()
    door_signaling = push_site.door.calls.signaling
    await door_signaling.wait_presence(PHONE, False, timeout=10)
    await push_site.press()
    await wait_for(lambda: len(rings(push_site, sub)) == 2, "the second ring's push")


async def test_the_visitors_picture_follows_in_a_second_push_of_the_same_topic(
    push_site: PushSite,
) -> None:
    """Pin -> the ring's push at once, then the same ring with a JPEG that fits one push."""
    sub = push_site.endpoint.new_subscriber()
    assert (await push_site.phones[PHONE].subscribe(sub))["subscribed"] is True
    pressed = await push_site.press()
    await wait_for(lambda: len(push_site.endpoint.deliveries(sub)) == 2, "both pushes")
    first, second = push_site.endpoint.deliveries(sub)
    call = push_site.door.calls.active_call
    assert call is not None and not call.is_answered()
    assert "snapshot" not in first.payload and first.payload["call_id"] == call.call_id
    snapshot = second.payload.pop("snapshot")
    assert second.payload == first.payload, "the same ring, the same call"
    assert second.plain_bytes <= MAX_PAYLOAD_BYTES
    assert snapshot.startswith(JPEG_URL)
    picture = await asyncio.to_thread(
        decode_jpeg, base64.b64decode(snapshot.removeprefix(JPEG_URL), validate=True)
    )
    assert (picture.width, picture.height) == (160, 120), "the door's 640x480, downscaled"
    topic = first.headers["topic"]
    assert second.headers["topic"] == topic == push_topic(call.call_id)
    assert call.call_id not in topic
    assert second.headers["urgency"] == "high" and 1 <= int(second.headers["ttl"]) <= 30
    (ring,) = push_site.push.notifier.results
    (with_picture,) = push_site.push.notifier.snapshot_results
    assert ring.outcome is Outcome.SENT and with_picture.outcome is Outcome.SENT
    assert ring.sent_at is not None and with_picture.sent_at is not None
    assert pressed < ring.sent_at < first.at < with_picture.sent_at < second.at
    await wait_for(lambda: push_site.push.notifier.snapshots == 1, "the door to count it")


async def test_a_named_bells_ring_pushes_its_label_in_both_pushes(push_site: PushSite) -> None:
    """An entrance panel's bell dialled on the keypad: the phone learns which flat rang."""
    path = push_site.site.config_paths[DOOR]
    text = await asyncio.to_thread(path.read_text)
    text += f"""
[[bells]]
name = "smith"
label = "Flat 12 - Smith"
targets = ["{FLAT}", "{PHONE}"]
code = "12"
"""
    config = await asyncio.to_thread(write_unit_config, path, text)
    door = push_site.site[DOOR]
    assert await door.apply(config) == ["bells"]
    # a bell has a pin: the door's devices and call service are rebuilt, in the background;
    # a subscription sent meanwhile would reach no handler
    await wait_for(lambda: door.pending_restart == [], "the door's devices rebuilt")
    sub = push_site.endpoint.new_subscriber()
    assert (await push_site.phones[PHONE].subscribe(sub))["subscribed"] is True

    assert await push_site.door.dial("12")  # what the keypad's "12#" does
    await wait_for(lambda: len(push_site.endpoint.deliveries(sub)) == 2, "both pushes")
    first, second = push_site.endpoint.deliveries(sub)
    call = push_site.door.calls.active_call
    assert call is not None and first.payload["call_id"] == call.call_id
    assert first.payload["bell"] == second.payload["bell"] == "Flat 12 - Smith"
    assert second.payload["snapshot"].startswith(JPEG_URL), "the label leaves room for it"
    assert second.plain_bytes <= MAX_PAYLOAD_BYTES
    await push_site.hang_up()

    # the door's own doorbell: its name says it all, no bell field
    await push_site.press()
    await wait_for(lambda: len(rings(push_site, sub)) == 2, "the doorbell's push")
    assert "bell" not in rings(push_site, sub)[-1].payload


async def test_no_picture_to_a_phone_the_ring_missed_nor_once_the_call_stops_ringing(
    push_site: PushSite,
) -> None:
    sub = push_site.endpoint.new_subscriber()
    assert (await push_site.phones[PHONE].subscribe(sub))["subscribed"] is True
    sub.status = 429  # the push service is busy: the first push did not reach the phone
    await push_site.press()
    await wait_for(lambda: push_site.push.notifier.snapshots == 1, "the picture push handled")
    assert push_site.endpoint.answered == [(sub.token, 429)], "one request, no picture"
    assert list(push_site.push.notifier.snapshot_results) == []
    await push_site.hang_up()

    # a picture that is ready only once the call no longer rings is not sent
    sub.status = 201
    notifier = push_site.push.notifier
    await notifier.ring("call-over", [PHONE], 30.0)
    (first,) = rings(push_site, sub)
    frame = av.VideoFrame.from_ndarray(np.zeros((480, 640, 3), np.uint8), format="rgb24")
    assert await notifier.snapshot("call-over", frame, lambda: False) == []
    assert push_site.endpoint.deliveries(sub) == [first]
    # a call this door did not push gets no picture either
    assert await notifier.snapshot("never-rung", frame, lambda: True) == []
    assert push_site.endpoint.deliveries(sub) == [first]


async def test_only_paired_phones_may_subscribe(push_site: PushSite) -> None:
    sub = push_site.endpoint.new_subscriber()
    answer = await push_site.phones[STRANGER].subscribe(sub)
    assert answer["subscribed"] is False
    assert "neither a browser phone" in answer["error"]

    rejected = push_site.door.calls.signaling.rejected
    before = rejected[RejectReason.UNKNOWN_SENDER]
    await push_site.phones[INTRUDER].send("push_subscribe", sub.subscribe_body())
    await wait_for(lambda: rejected[RejectReason.UNKNOWN_SENDER] > before, "the intruder refused")
    assert push_site.phones[INTRUDER].statuses.empty()
    assert push_site.push.store.addresses() == []


async def test_a_subscription_must_point_to_an_allowed_push_service(push_site: PushSite) -> None:
    phone = push_site.phones[PHONE]
    sub = push_site.endpoint.new_subscriber()
    cases = {
        "http://192.168.1.10/push/x": "only https://",
        "https://192.168.1.10/push/x": "not an allowed push service",
        "https://fcm.googleapis.com.evil.example/x": "not an allowed push service",
    }
    for url, why in cases.items():
        body = sub.subscribe_body()
        body["subscription"]["endpoint"] = url
        answer = await phone.request("push_subscribe", body)
        assert answer["subscribed"] is False and why in answer["error"], (url, answer)
    body = sub.subscribe_body()
    body["subscription"]["keys"]["auth"] = "AAAA"
    answer = await phone.request("push_subscribe", body)
    assert "auth must be 16 bytes" in answer["error"]
    assert push_site.push.store.addresses() == []


async def test_unsubscribe_withdraws_the_subscription(push_site: PushSite) -> None:
    phone = push_site.phones[PHONE]
    sub = push_site.endpoint.new_subscriber()
    assert (await phone.subscribe(sub))["subscribed"] is True
    assert await phone.request("push_unsubscribe", {}) == {"subscribed": False, "error": ""}
    await push_site.press()
    await wait_for(lambda: push_site.push.notifier.rings == 1, "the ring handled")
    assert push_site.endpoint.answered == []


async def test_a_gone_subscription_is_removed_and_not_pushed_again(push_site: PushSite) -> None:
    sub = push_site.endpoint.new_subscriber()
    assert (await push_site.phones[PHONE].subscribe(sub))["subscribed"] is True
    sub.status = 410
    await push_site.press()
    await wait_for(lambda: push_site.push.notifier.rings == 1, "the ring handled")
    assert push_site.endpoint.answered == [(sub.token, 410)]
    assert push_site.push.store.addresses() == []
    await push_site.hang_up()
    await push_site.press()
    await wait_for(lambda: push_site.push.notifier.rings == 2, "the second ring handled")
    assert push_site.endpoint.answered == [(sub.token, 410)]


async def test_a_slow_push_service_does_not_delay_the_invite(push_site: PushSite) -> None:
    sub = push_site.endpoint.new_subscriber()
    assert (await push_site.phones[PHONE].subscribe(sub))["subscribed"] is True
    sub.delay_s = 5.0  # longer than the door's 1 s per push
    flat = push_site.flat_calls()
    pressed = await push_site.press()
    await wait_for(lambda: flat.active_call is not None, "the indoor unit ringing")
    rang = time.monotonic()
    assert push_site.push.notifier.rings == 0, "the invite waited for the push"
    assert rang - pressed < 2.0
    await wait_for(lambda: push_site.endpoint.requests_started, "the push at the push service")
    await wait_for(lambda: push_site.push.notifier.rings == 1, "the push given up")
    (result,) = push_site.push.notifier.results
    assert result.outcome is Outcome.FAILED and "no answer within 1 s" in result.detail
    assert push_site.push.store.addresses() == [PHONE], "a slow service keeps the subscription"


async def test_registrations_are_rate_limited_per_phone(push_site: PushSite) -> None:
    phone = push_site.phones[PHONE]
    sub = push_site.endpoint.new_subscriber()
    answers = [await phone.subscribe(sub) for _ in range(6)]
    assert [a["subscribed"] for a in answers] == [True] * 6, "the kept one stays subscribed"
    assert [a["error"] for a in answers[:5]] == [""] * 5
    assert "more than 5 push registrations at once" in answers[5]["error"]
    assert push_site.push.registrar.refused == 1


class TakesCalls(IncomingListener):
    """A phone's page that rings for every call (the page's user then answers)."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_incoming(self, profile: UserProfile, video: bool) -> CallProperties:
        return self.calls.create_call_properties(video)


async def test_a_pushed_phone_that_comes_online_joins_the_ringing_call(
    push_site: PushSite,
) -> None:
    phone = push_site.phones[PHONE]
    sub = push_site.endpoint.new_subscriber()
    assert (await phone.subscribe(sub))["subscribed"] is True
    await phone.calls.close()  # the page closed
    await push_site.site[FLAT].close()  # and the indoor unit is off: only the phone can answer
    door = push_site.door.calls
    await door.signaling.wait_presence(PHONE, False, timeout=10)
    await door.signaling.wait_presence(FLAT, False, timeout=10)

    await push_site.press()
    await wait_for(lambda: rings(push_site, sub), "the push")
    delivery = rings(push_site, sub)[0]
    call = door.active_call
    assert call is not None and not call.is_ended(), "the door waits for the phone it woke"

    # the push opened the page: it connects with the same keys and gets the invite
    woken = await push_site.reopen(PHONE)
    woken.calls.set_listener(TakesCalls(woken.calls))
    await woken.start()
    await wait_for(lambda: woken.calls.active_call is not None, "the late invite")
    incoming = woken.calls.active_call
    assert incoming is not None and incoming.call_id == delivery.payload["call_id"]
