"""The browser phone uses the relay credentials of the door's signed invite (Chromium).

The door station holds the site's TURN secret (``[turn]``) and mints credentials for the
phone into each invite; the page puts them into its RTCPeerConnection. With the page's
``iceTransportPolicy: "relay"`` the call can only flow through coturn: getStats' nominated
candidate pair has a relayed local candidate, and media flows both ways. With a wrong secret
the page's log names the TURN server and says the credentials were refused. Chromium and the
door share this namespace's loopback, so this coturn may relay to loopback (test-only lines,
harness.turnrelay.LOOPBACK_PEERS); tests/netns/ has the across-namespaces call (aiortc).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from harness.page_ice import RECORD_PEER_CONNECTIONS, selected_pair
from harness.phonesite import PhoneSite, wait_snapshot
from harness.turnrelay import LOOPBACK_PEERS, TurnRelay, start_turnserver, turnserver_path
from playwright.async_api import ConsoleMessage, Page
from support import need, wait_for

from services.callapi import CallStatus
from services.media.turn import new_secret

TIMEOUT_S = 20.0


RELAY_ONLY = """
async () => {
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open("callbox", 1);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const tx = db.transaction("kv", "readwrite");
  const kv = tx.objectStore("kv");
  const current = await new Promise((resolve) => {
    const get = kv.get("settings");
    get.onsuccess = () => resolve(get.result || {});
  });
  kv.put({ ...current, iceTransportPolicy: "relay" }, "settings");
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  });
  db.close();
}
"""
"""The phone's stored settings with ``iceTransportPolicy: "relay"`` (read when the page loads)."""


@pytest_asyncio.fixture(loop_scope="session")
async def relay(tmp_path: Path) -> AsyncIterator[TurnRelay]:
    """Coturn on loopback, requested before the door's site so it stops after the door.

    A session that closes deletes its allocation and waits ~30 s for a relay that is gone.
    """
    need(turnserver_path() is not None, "turnserver (Debian's coturn)")
    server = await start_turnserver(tmp_path / "turn", extra_lines=LOOPBACK_PEERS)
    yield server
    await server.close()


async def relay_only_phone(site: PhoneSite, page: Page) -> None:
    await page.add_init_script(RECORD_PEER_CONNECTIONS)
    await site.open_phone(page)
    await page.evaluate(RELAY_ONLY)
    await page.reload()
    await page.wait_for_function("() => window.callbox !== undefined")
    await page.evaluate("() => window.callbox.ready")


async def start_door_with(site: PhoneSite, relay: TurnRelay, secret: str) -> None:
    path = site.directory / "turn.secret"
    await asyncio.to_thread(path.write_text, secret + "\n")
    toml = f"[turn]\nurls = ['{relay.url}']\nsecret_file = '{path}'\n"
    await site.start_door(extra_toml=toml)


async def test_relay_only_phone_answers_through_the_relay(
    relay: TurnRelay, phone_site: PhoneSite, page: Page
) -> None:
    await relay_only_phone(phone_site, page)
    await start_door_with(phone_site, relay, relay.secret)
    await phone_site.press_doorbell()
    await wait_snapshot(
        page, "s.call && s.call.status === 'INCOMING'", "an incoming call", TIMEOUT_S
    )
    await wait_snapshot(
        page, "s.call && s.call.remoteVideoFrames > 5", "the visitor's video", TIMEOUT_S
    )
    await page.click("#answer-video", timeout=TIMEOUT_S * 1000)
    assert phone_site.door is not None and phone_site.door.endpoint is not None
    calls = phone_site.door.endpoint.calls
    await wait_for(
        lambda: calls.active_call is not None and calls.active_call.status >= CallStatus.ANSWER,
        "the door to see the answer",
        TIMEOUT_S,
    )
    door_call = calls.active_call
    assert door_call is not None and door_call.session is not None
    session = door_call.session
    await wait_for(
        lambda: session.stats.video_frames > 10, "the phone's video at the door", TIMEOUT_S
    )
    await wait_for(
        lambda: session.stats.audio_frames > 10, "the phone's audio at the door", TIMEOUT_S
    )
    seen = await selected_pair(page)
    assert seen["policy"] == "relay"
    assert seen["servers"][0]["urls"] == [relay.url]
    assert str(seen["servers"][0]["username"]).endswith(":phone")
    assert seen["nominated"] is True and seen["local"] == "relay", seen
    assert seen["inbound"].get("video", 0) > 0 and seen["inbound"].get("audio", 0) > 0, seen
    # the door sees the phone's relayed address as its peer (peer-reflexive or relay)
    assert session.selected_pair() is not None
    await door_call.hangup()


async def test_refused_credentials_are_named_in_the_page_log(
    relay: TurnRelay, phone_site: PhoneSite, page: Page, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", console)
    await relay_only_phone(phone_site, page)
    await start_door_with(phone_site, relay, new_secret())  # not the relay's secret
    caplog.set_level(logging.ERROR)
    await phone_site.press_doorbell()
    await wait_snapshot(page, "s.call", "an incoming call", TIMEOUT_S)
    server = f"127.0.0.1:{relay.port}"
    await wait_for(
        lambda: any(server in e and "credentials refused" in e for e in errors),
        "the page to log the refused credentials",
        TIMEOUT_S,
    )
    door_lines = [r.getMessage() for r in caplog.records]
    assert any(
        f"TURN server {server}" in line and "credentials refused" in line for line in door_lines
    )
