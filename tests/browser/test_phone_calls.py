"""The browser phone (web/) answering and calling a simulated door station.

Everything a resident and a visitor would notice is checked end to end: the page in
Debian's Chromium (fake camera and microphone) talks to a door station built from a
callbox.toml on a simulated board, over a real mosquitto (websockets for the page) and
real WebRTC on loopback. The door is driven through its GPIO pins (doorbell, relay).
"""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiomqtt
import av
import numpy as np
import pytest
from harness.phonesite import PHONE, PhoneSite, snapshot_text
from playwright.async_api import Page
from support import wait_for

from services.callapi import Call, CallStatus
from services.media.session import MediaSession
from services.signaling.broker import free_port
from services.signaling.envelope import seal
from services.signaling.errors import RejectReason, SignalingError
from services.signaling.identity import Identity, safety_number
from services.signaling.profile import read_profile

TIMEOUT_S = 15.0
VIDEO_BOX = "#remote-video"
H264_TOML = 'codec = "H264"'


# helpers ------------------------------------------------------------------------------------


async def snapshot(page: Page) -> dict[str, Any]:
    """The page's state as ``window.callbox.snapshot()`` reports it."""
    result: dict[str, Any] = await page.evaluate("() => window.callbox.snapshot()")
    return result


async def wait_page(page: Page, condition: str, what: str, timeout: float = TIMEOUT_S) -> None:
    """Wait until the JS expression ``condition`` over the snapshot ``s`` holds."""
    script = f"() => {{ const s = window.callbox.snapshot(); return Boolean({condition}); }}"
    try:
        await page.wait_for_function(script, timeout=timeout * 1000, polling=50)
    except Exception as err:
        raise AssertionError(
            f"timed out waiting for the page: {what}; page: {snapshot_text(await snapshot(page))}"
        ) from err


def door_call(site: PhoneSite) -> Call | None:
    """The door's call in progress, if any."""
    assert site.door is not None and site.door.endpoint is not None
    return site.door.endpoint.calls.active_call


def door_rejections(site: PhoneSite) -> dict[RejectReason, int]:
    """What the door's signaling endpoint refused, by reason."""
    assert site.door is not None and site.door.endpoint is not None
    return dict(site.door.endpoint.signaling.rejected)


async def door_idle(site: PhoneSite) -> None:
    """Wait until the door has no call in progress."""
    assert site.door is not None and site.door.endpoint is not None
    calls = site.door.endpoint.calls
    await wait_for(lambda: not calls.is_call_in_progress(), "the door to be idle", TIMEOUT_S)


async def media_at_the_door(
    call: Call, what: str, *, audio: int | None = None, video: int | None = None
) -> None:
    """Wait until the door has received more than ``audio`` and ``video`` frames (those given).

    Counted on the call's media session from when the wait starts; a reoffer (a busy machine
    can stall the media long enough for one) replaces the session, and the frames then count
    on the new one from when it is first seen.
    """
    starts: list[tuple[MediaSession, int, int]] = []

    def arrived() -> bool:
        session = call.session
        if session is None:
            return False
        stats = session.stats
        start = next((s for s in starts if s[0] is session), None)
        if start is None:
            start = (session, stats.audio_frames, stats.video_frames)
            starts.append(start)
        return (audio is None or stats.audio_frames - start[1] > audio) and (
            video is None or stats.video_frames - start[2] > video
        )

    await wait_for(arrived, what, TIMEOUT_S)


async def ring_the_page(site: PhoneSite, page: Page) -> Call:
    """A visitor presses the doorbell; the page rings and shows the visitor's video."""
    await site.press_doorbell()
    await wait_page(page, "s.call && s.call.status === 'INCOMING'", "an incoming call")
    call = door_call(site)
    assert call is not None
    return call


async def frames_advance(page: Page, what: str) -> int:
    """Wait until the page's remote video frame count grows by 10; returns the new count."""
    start = (await snapshot(page))["call"]["remoteVideoFrames"]
    await wait_page(page, f"s.call && s.call.remoteVideoFrames >= {start + 10}", what)
    return int((await snapshot(page))["call"]["remoteVideoFrames"])


async def click(page: Page, selector: str) -> None:
    """A person taps a button (it must be visible and enabled)."""
    await page.click(selector, timeout=TIMEOUT_S * 1000)


async def video_shot(page: Page, path: Path) -> np.ndarray:
    """Screenshot the page into ``path``; returns the pixels (RGB) of the remote video's box."""
    box = await page.locator(VIDEO_BOX).bounding_box()
    assert box is not None, "the remote video is not on the page"
    data = await page.screenshot(path=str(path))
    with av.open(io.BytesIO(data), mode="r") as container:
        frame = next(container.decode(video=0))
    pixels = np.asarray(frame.to_ndarray(format="rgb24"))
    top, left = int(box["y"]), int(box["x"])
    return pixels[top : top + int(box["height"]), left : left + int(box["width"])]


def shows_video(pixels: np.ndarray) -> bool:
    """True when an image is not one flat colour (a playing video, not a black box)."""
    return bool(pixels.std() > 5.0 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50)


def differ(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two screenshots of the same box differ (the video moved)."""
    return a.shape == b.shape and bool(np.abs(a.astype(int) - b.astype(int)).mean() > 0.5)


def door_login(site: PhoneSite, identifier: str) -> aiomqtt.Client:
    """A second MQTT client on the door's broker account (anyone holding that password)."""
    broker = site.broker
    return aiomqtt.Client(
        "127.0.0.1",
        broker.settings.port,
        username="door",
        password=broker.files.passwords["door"],
        identifier=identifier,
    )


async def open_phone_and_door(
    phone_site: PhoneSite, page: Page, codec: str = "VP8", call_toml: str = ""
) -> None:
    """Pair the page, then start the door trusting it; both see each other online."""
    await phone_site.open_phone(page, codec=codec)
    await phone_site.start_door(call_toml=call_toml)
    await wait_page(page, "s.peers.door && s.peers.door.online && s.peers.door.pinned", "door")


# the doorbell -------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_doorbell_preview_answer_open_door_hang_up(
    phone_site: PhoneSite, page: Page, codec: str
) -> None:
    """Ring with the visitor's video before answering; answer; open the door once; hang up."""
    await open_phone_and_door(
        phone_site, page, codec, call_toml=H264_TOML if codec == "H264" else ""
    )
    call = await ring_the_page(phone_site, page)

    # early media: the visitor's video plays while it rings, the page sends nothing yet
    await frames_advance(page, "the visitor's video while ringing")
    ringing_session = next(iter(call.legs.values())).session
    assert ringing_session.stats.video_frames == 0 and ringing_session.stats.audio_frames == 0
    shots = phone_site.screenshot_dir
    ringing_a = await video_shot(page, shots / "ringing-1.png")
    await frames_advance(page, "more of the visitor's video")
    ringing_b = await video_shot(page, shots / "ringing-2.png")
    assert shows_video(ringing_a) and shows_video(ringing_b) and differ(ringing_a, ringing_b)

    await click(page, "#answer-video")
    await wait_page(page, "s.call && s.call.status === 'CONNECTED'", "the call to connect")
    await wait_for(lambda: call.status == CallStatus.CONNECTED, "door connected", TIMEOUT_S)
    await media_at_the_door(call, "the page's video and audio at the door", audio=10, video=10)
    await frames_advance(page, "the visitor's video in the call")
    state = await snapshot(page)
    assert state["call"]["codec"].lower() == f"video/{codec.lower()}", snapshot_text(state)
    sent = await page.evaluate("() => window.callbox.test.outbound()")
    assert sent["videoCodec"].lower() == f"video/{codec.lower()}" and sent["framesSent"] > 0
    in_call_a = await video_shot(page, shots / "in-call-1.png")
    await frames_advance(page, "more video in the call")
    in_call_b = await video_shot(page, shots / "in-call-2.png")
    assert shows_video(in_call_a) and differ(in_call_a, in_call_b)

    await click(page, "#open-door")
    await wait_page(page, "s.call.lastUnlock && s.call.lastUnlock.opened", "the door to open")
    await wait_for(lambda: phone_site.relay_pulses() == 1, "one relay pulse", TIMEOUT_S)
    await wait_page(page, "s.call.canUnlock", "a fresh challenge for the next release")

    await click(page, "#hangup")
    await wait_page(page, "!s.call && s.lastCall.status === 'COMPLETE'", "the page idle")
    await door_idle(phone_site)
    assert call.status == CallStatus.COMPLETE
    assert phone_site.relay_pulses() == 1
    log = (await snapshot(page))["log"]
    assert log[0]["status"] == "COMPLETE" and log[0]["direction"] == "in"


async def test_page_declines(phone_site: PhoneSite, page: Page) -> None:
    """The resident declines: the door stops ringing at once and shows the refusal."""
    await open_phone_and_door(phone_site, page)
    call = await ring_the_page(phone_site, page)
    await click(page, "#decline")
    await wait_page(page, "!s.call && s.lastCall.status === 'CANCEL'", "the page idle")
    await door_idle(phone_site)
    assert call.status == CallStatus.BUSY  # "declined" shows as busy at the caller
    entry = (await snapshot(page))["log"][0]
    assert entry["direction"] == "in" and not entry["missed"]


async def test_door_cancels_while_ringing(phone_site: PhoneSite, page: Page) -> None:
    """The door gives up while the page rings: the page stops ringing, a missed call."""
    await open_phone_and_door(phone_site, page)
    call = await ring_the_page(phone_site, page)
    await frames_advance(page, "the visitor's video while ringing")
    await call.hangup()
    await wait_page(page, "!s.call && s.lastCall.status === 'CANCEL'", "the ringing to stop")
    entry = (await snapshot(page))["log"][0]
    assert entry["missed"] and entry["status"] == "CANCEL"
    assert await page.locator("#answer-video").is_hidden()
    await door_idle(phone_site)


async def test_view_door_monitor_call(phone_site: PhoneSite, page: Page) -> None:
    """View door: the door answers at once with its video; the microphone starts muted."""
    await open_phone_and_door(phone_site, page)
    await click(page, "#view-door")
    await wait_page(page, "s.call && s.call.status === 'CONNECTED'", "the door to answer")
    state = await snapshot(page)
    assert state["call"]["direction"] == "out" and state["call"]["muted"]["audio"]
    assert state["call"]["canUnlock"], "the door's answer carries an unlock challenge"
    await frames_advance(page, "the door's video")
    call = door_call(phone_site)
    assert call is not None and call.is_incoming()
    await wait_for(
        lambda: call.get_mute_status(True, False, remote=True),
        "the door to see the mute",
        TIMEOUT_S,
    )
    shot = await video_shot(page, phone_site.screenshot_dir / "monitor.png")
    assert shows_video(shot)

    await click(page, "#mute")  # unmute: the visitor hears the resident
    await wait_for(
        lambda: not call.get_mute_status(True, False, remote=True),
        "unmuted at the door",
        TIMEOUT_S,
    )
    await media_at_the_door(call, "audio at the door", audio=10)

    await click(page, "#hangup")
    await wait_page(page, "!s.call && s.lastCall.status === 'COMPLETE'", "the page idle")
    await door_idle(phone_site)
    assert call.status == CallStatus.COMPLETE


async def test_reload_mid_call_ends_the_call_at_the_door(phone_site: PhoneSite, page: Page) -> None:
    """A page reloaded during a call ends it at the door at once, not after a timeout."""
    await open_phone_and_door(phone_site, page)
    call = await ring_the_page(phone_site, page)
    await click(page, "#answer-audio")
    await wait_page(page, "s.call && s.call.status === 'CONNECTED'", "the call to connect")
    await wait_for(lambda: call.status == CallStatus.CONNECTED, "door connected", TIMEOUT_S)

    loop = asyncio.get_running_loop()
    reloaded = loop.time()
    await page.reload()
    await door_idle(phone_site)
    assert loop.time() - reloaded < 5.0, "ended by the page, not by the reconnect grace"
    assert call.status in (CallStatus.COMPLETE, CallStatus.NETWORKERROR), call.status.name

    await page.evaluate("() => window.callbox.ready")
    await wait_page(page, "!s.call && s.peers.door.online", "the reloaded page idle")
    state = await snapshot(page)
    assert state["connection"] == "online" and state["error"] is None, snapshot_text(state)


# forged and replayed messages ---------------------------------------------------------------


async def test_door_rejects_forged_and_replayed_messages_from_the_page(
    phone_site: PhoneSite, page: Page
) -> None:
    """A copy of an envelope the page sent, and one signed with another key, change nothing."""
    await open_phone_and_door(phone_site, page)
    call = await ring_the_page(phone_site, page)
    await click(page, "#decline")
    await door_idle(phone_site)
    sent: list[dict[str, str]] = await page.evaluate("() => window.callbox.test.sent()")
    ringing = next(s for s in sent if json.loads(s["payload"])["type"] == "ringing")
    before = door_rejections(phone_site)

    await page.evaluate("s => window.callbox.test.publish(s.topic, s.payload)", ringing)
    await wait_for(
        lambda: (
            door_rejections(phone_site).get(RejectReason.REPLAY, 0)
            == before.get(RejectReason.REPLAY, 0) + 1
        ),
        "the door to refuse the replayed envelope",
        TIMEOUT_S,
    )
    await page.evaluate(
        "id => window.callbox.test.forge({to: 'door', type: 'invite', callId: id, "
        "body: {sdp: 'v=0', video: true}})",
        "forged-call-1",
    )
    await wait_for(
        lambda: (
            door_rejections(phone_site).get(RejectReason.BAD_SIGNATURE, 0)
            == before.get(RejectReason.BAD_SIGNATURE, 0) + 1
        ),
        "the door to refuse the forged invite",
        TIMEOUT_S,
    )
    assert door_call(phone_site) is None and call.status == CallStatus.BUSY


async def test_page_rejects_forged_and_replayed_messages_from_the_door(
    phone_site: PhoneSite, page: Page
) -> None:
    """The page counts (and ignores) a replayed door envelope and one signed by a stranger."""
    await open_phone_and_door(phone_site, page)
    door = phone_site.door
    assert door is not None and door.endpoint is not None
    transport = door.endpoint.signaling.transport
    published: list[bytes] = []
    publish = transport.publish_inbox

    async def recording(recipient: str, payload: bytes, timeout: float = 5.0) -> None:
        published.append(payload)
        await publish(recipient, payload, timeout)

    transport.publish_inbox = recording  # type: ignore[method-assign]
    await ring_the_page(phone_site, page)
    await click(page, "#decline")
    await door_idle(phone_site)
    await wait_page(page, "!s.call", "the page idle")
    invite = next(p for p in published if json.loads(p)["type"] == "invite")

    await transport.publish_inbox(PHONE, invite)
    await wait_page(page, "s.rejections.replay === 1", "the replayed invite refused")
    assert phone_site.phone_keys is not None
    forged = seal(
        Identity.generate(),
        type="invite",
        call_id="forged-call-2",
        sender="door",
        recipient=PHONE,
        recipient_keys=phone_site.phone_keys,
        body={"sdp": "v=0", "video": True},
    )
    await transport.publish_inbox(PHONE, forged)
    await wait_page(page, "s.rejections.bad_signature === 1", "the forged invite refused")
    state = await snapshot(page)
    assert state["call"] is None and len(state["log"]) == 1, snapshot_text(state)


async def test_the_page_never_acts_on_a_retained_invite_and_clears_it(
    phone_site: PhoneSite, page: Page
) -> None:
    """Anyone with a broker login can leave a retained invite on the phone's inbox.

    The broker would hand it to the page at every connection: the page ignores such a
    delivery (no ringing), counts it and clears it, so the next connection gets nothing.
    """
    await open_phone_and_door(phone_site, page)
    door = phone_site.door
    assert door is not None and door.endpoint is not None and phone_site.phone_keys is not None
    signaling = door.endpoint.signaling
    url = page.url
    await page.goto("about:blank")
    await signaling.wait_presence(PHONE, False, timeout=TIMEOUT_S)
    invite = seal(
        signaling.identity,
        type="invite",
        call_id="retained-call-1",
        sender="door",
        recipient=PHONE,
        recipient_keys=phone_site.phone_keys,
        body={"sdp": "v=0", "video": True},
    )
    async with door_login(phone_site, "door-attacker") as client:
        await client.publish(f"callbox/v1/test/{PHONE}/inbox", invite, qos=1, retain=True)

    for retained in (1, 0):  # the second connection finds the inbox cleared
        await page.goto(url)
        await page.evaluate("() => window.callbox.ready")
        await wait_page(page, "s.connection === 'online' && s.peers.door.online", "online")
        await wait_page(page, f"s.dropped.retained_ignored === {retained}", "the count")
        state = await snapshot(page)
        assert state["call"] is None and not state["log"], snapshot_text(state)
        assert state["peers"]["door"]["pinned"], "the page kept its identity and pairing"
        await page.goto("about:blank")
        await signaling.wait_presence(PHONE, False, timeout=TIMEOUT_S)


async def test_the_pages_profile_is_signed_by_its_own_keys(
    phone_site: PhoneSite, page: Page
) -> None:
    """So a unit can tell the phone's real key change from a forged profile."""
    await open_phone_and_door(phone_site, page)
    async with door_login(phone_site, "door-reader") as client:
        await client.subscribe(f"callbox/v1/test/{PHONE}/profile", qos=1)
        async with asyncio.timeout(TIMEOUT_S):
            message = await anext(aiter(client.messages))
    profile = read_profile(PHONE, bytes(message.payload))
    assert profile.signed and profile.keys == phone_site.phone_keys
    with pytest.raises(SignalingError, match="does not verify"):
        read_profile("another-phone", bytes(message.payload))


async def test_forged_hangups_in_a_call_change_nothing(phone_site: PhoneSite, page: Page) -> None:
    """A hangup that fails its signature, either way, is dropped and counted; the call goes on."""
    await open_phone_and_door(phone_site, page)
    call = await ring_the_page(phone_site, page)
    await click(page, "#answer-video")
    await wait_page(page, "s.call && s.call.status === 'CONNECTED'", "the call to connect")
    await page.evaluate(
        "id => window.callbox.test.forge({to: 'door', type: 'hangup', callId: id, "
        "body: {reason: 'user'}})",
        call.call_id,
    )
    door = phone_site.door
    assert door is not None and door.endpoint is not None
    calls = door.endpoint.calls
    await wait_for(
        lambda: calls.dropped_messages().get("bad_signature") == 1, "the door's drop", TIMEOUT_S
    )
    assert phone_site.phone_keys is not None
    forged = seal(
        Identity.generate(),
        type="hangup",
        call_id=call.call_id,
        sender="door",
        recipient=PHONE,
        recipient_keys=phone_site.phone_keys,
        body={"reason": "user"},
    )
    await door.endpoint.signaling.transport.publish_inbox(PHONE, forged)
    await wait_page(page, "s.rejections.bad_signature === 1", "the page's drop")
    await frames_advance(page, "video after the forged hangups")
    assert call.status == CallStatus.CONNECTED
    await wait_page(page, "s.call && s.call.status === 'CONNECTED'", "the page still in the call")
    await call.hangup()
    await wait_page(page, "!s.call && s.lastCall.status === 'COMPLETE'", "the real hangup")


# reconnection -------------------------------------------------------------------------------


async def test_door_reoffers_when_the_page_stops_sending(phone_site: PhoneSite, page: Page) -> None:
    """The page's media stops: the door reoffers, the page reanswers, the call goes on."""
    await open_phone_and_door(phone_site, page)
    call = await ring_the_page(phone_site, page)
    await click(page, "#answer-video")
    await wait_for(lambda: call.status == CallStatus.CONNECTED, "door connected", TIMEOUT_S)
    first = call.session
    assert first is not None
    await wait_for(lambda: first.stats.video_frames > 10, "the page's video", TIMEOUT_S)
    await page.evaluate("() => window.callbox.test.dropMedia()")
    await wait_for(
        lambda: CallStatus.RECONNECTING in call.statuses, "the door to notice", TIMEOUT_S
    )
    await wait_for(lambda: call.status == CallStatus.CONNECTED, "door reconnected", TIMEOUT_S)
    await wait_page(page, "s.call && s.call.status === 'CONNECTED'", "the page reconnected")
    session = call.session
    assert session is not None and session is not first
    await wait_for(lambda: session.stats.video_frames > 10, "the page's video again", TIMEOUT_S)
    await frames_advance(page, "the door's video after the reoffer")
    await click(page, "#hangup")
    await door_idle(phone_site)
    assert call.status == CallStatus.COMPLETE


async def test_page_reoffers_when_the_door_stops_sending(phone_site: PhoneSite, page: Page) -> None:
    """The door's media stops in a view-door call: the page (the caller) reoffers."""
    await open_phone_and_door(phone_site, page)
    await click(page, "#view-door")
    await wait_page(page, "s.call && s.call.status === 'CONNECTED'", "the door to answer")
    await frames_advance(page, "the door's video")
    call = door_call(phone_site)
    assert call is not None and call.session is not None
    call.session.set_sending(audio=False, video=False)
    await wait_page(page, "s.call && s.call.status === 'RECONNECTING'", "the page to notice")
    await wait_page(page, "s.call && s.call.status === 'CONNECTED'", "the page reconnected")
    await frames_advance(page, "the door's video after the reoffer")
    assert call.status == CallStatus.CONNECTED
    await click(page, "#hangup")
    await door_idle(phone_site)


# what the resident is told ------------------------------------------------------------------


async def test_key_mismatch_blocks_until_confirmed(phone_site: PhoneSite, page: Page) -> None:
    """A door whose keys are not the pairing's is not trusted until the safety number is confirmed.

    Once the safety number is compared and confirmed, it rings the page.
    """
    fake = Identity.generate().public_keys
    (door,) = phone_site.pairing.peers
    phone_site.pairing = replace(
        phone_site.pairing, peers=(replace(door, fingerprint=fake.fingerprint()),)
    )
    phone_keys = await phone_site.open_phone(page)
    await phone_site.start_door()
    await wait_page(page, "s.peers.door && s.peers.door.keyChanged", "the key change")
    state = await snapshot(page)
    expected = safety_number(phone_keys, phone_site.door_keys)
    assert state["peers"]["door"]["safetyNumber"] == expected
    assert not state["peers"]["door"]["pinned"]
    assert await page.locator("#key-change").is_visible()
    assert await page.locator("#safety-code").inner_text() == expected
    await click(page, "#view-door")
    await wait_page(page, "s.error && s.error.includes('safety number')", "the refusal shown")
    assert (await snapshot(page))["call"] is None

    await click(page, "#key-change-confirm")
    await wait_page(page, "s.peers.door.pinned && !s.peers.door.keyChanged", "the door pinned")
    await page.locator("#key-change").wait_for(state="hidden", timeout=TIMEOUT_S * 1000)
    await ring_the_page(phone_site, page)
    await click(page, "#decline")
    await door_idle(phone_site)


async def test_wrong_password_is_shown(phone_site: PhoneSite, page: Page) -> None:
    """A pairing whose broker password is wrong says so; the page does not retry forever."""
    phone_site.pairing = replace(phone_site.pairing, password="not-the-password")
    await page.goto(phone_site.pairing_url)
    refused = await page.evaluate(
        "() => window.callbox.ready.then(() => null, (err) => String(err.message))"
    )
    assert refused is not None and "wrong password" in refused
    state = await snapshot(page)
    assert state["connection"] == "error" and "wrong password" in state["error"]
    assert await page.locator("#error").is_visible()
    assert "#pair=" not in page.url, "the password must not stay in the address bar"


async def test_unreachable_broker_is_shown(phone_site: PhoneSite, page: Page) -> None:
    """A broker that does not answer is shown as such while the page keeps retrying."""
    port = free_port()  # nothing listens there
    phone_site.pairing = replace(phone_site.pairing, broker=f"ws://127.0.0.1:{port}")
    await page.goto(phone_site.pairing_url)
    await wait_page(page, "s.error && s.error.includes('Cannot reach')", "the error shown")
    assert (await snapshot(page))["connection"] == "connecting"


async def test_the_site_ca_of_the_link_is_shown(phone_site: PhoneSite, page: Page) -> None:
    """The link's site CA fingerprint is on the page, and named when wss:// cannot connect.

    A browser cannot pin a CA from a link: the resident compares this fingerprint with the
    CA installed on the phone, and a TLS failure (which a page is not told) points there.
    """
    site_ca = ":".join(["5E"] * 32)
    port = free_port()  # nothing listens there
    phone_site.pairing = replace(phone_site.pairing, broker=f"wss://127.0.0.1:{port}", ca=site_ca)
    await page.goto(phone_site.pairing_url)
    await wait_page(page, "s.error && s.error.includes('site CA')", "the site CA hint")
    state = await snapshot(page)
    assert state["siteCa"] == site_ca
    assert f"SHA-256 {site_ca}" in state["error"]
    assert await page.locator("#site-ca").text_content() == site_ca
    assert await page.locator("#site-ca-row").is_visible()


async def test_camera_denied_answers_audio_only(phone_site: PhoneSite, page: Page) -> None:
    """Without camera access the answer goes on audio-only and the resident is told why."""
    await page.add_init_script(
        """(() => {
          const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
          navigator.mediaDevices.getUserMedia = (c) => c && c.video
            ? Promise.reject(new DOMException("denied", "NotAllowedError"))
            : real(c);
        })()"""
    )
    await open_phone_and_door(phone_site, page)
    call = await ring_the_page(phone_site, page)
    await click(page, "#answer-video")
    await wait_page(page, "s.call && s.call.status === 'CONNECTED'", "the call to connect")
    state = await snapshot(page)
    assert "camera was denied" in state["error"], snapshot_text(state)
    session = call.session
    assert session is not None
    await wait_for(lambda: session.stats.audio_frames > 10, "the page's audio", TIMEOUT_S)
    assert session.stats.video_frames == 0
    await click(page, "#error-clear")
    await wait_page(page, "s.error === null", "the error cleared")
    await click(page, "#hangup")
    await door_idle(phone_site)


async def test_view_door_while_the_door_is_offline(phone_site: PhoneSite, page: Page) -> None:
    """Calling a door that went offline tells the resident at once."""
    await open_phone_and_door(phone_site, page)
    door = phone_site.door
    assert door is not None
    await door.close()
    await wait_page(page, "!s.peers.door.online", "the door offline")
    await page.evaluate("() => window.callbox.viewDoor()")
    await wait_page(page, "!s.call && s.lastCall.status === 'OFFLINE'", "OFFLINE")
    assert "offline" in (await snapshot(page))["error"]


async def test_second_call_on_the_same_page(phone_site: PhoneSite, page: Page) -> None:
    """A page that already took a call rings and shows the visitor again."""
    await open_phone_and_door(phone_site, page)
    for _ in range(2):
        call = await ring_the_page(phone_site, page)
        await frames_advance(page, "the visitor's video while ringing")
        await click(page, "#answer-audio")
        await wait_page(page, "s.call && s.call.status === 'CONNECTED'", "the call to connect")
        await call.hangup()
        await wait_page(page, "!s.call && s.lastCall.status === 'COMPLETE'", "the page idle")
        await door_idle(phone_site)
