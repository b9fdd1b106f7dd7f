"""Chromium with the default ICE policy, where only the relay connects it to the door.

Runs in the browser tests' namespace (``unshare -rn``, loopback only), which becomes the relay's
("the middle"): the test adds a dummy ``lan0`` (``10.16.1.1``, the site's LAN, where the door
station offers its only host candidate) and a namespace of the phone's own, joined by a veth
(middle ``10.16.2.1``, phone ``10.16.2.2``). Chromium runs in the phone's namespace
(``nsenter``); it reaches the middle's ``10.16.2.1`` (the page, the broker's WebSockets port,
coturn) and has no route to the LAN, so no direct path works in either direction. coturn runs
the configuration callbox generates as it is (the LAN allowed, loopback and every other
private range denied). The page keeps its default policy (``all``); ICE must pick the relay.
"""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import pytest_asyncio
from harness.netlab import _die_with_parent, forward_tcp, run
from harness.page_ice import RECORD_PEER_CONNECTIONS, selected_pair
from harness.phonesite import (
    CHROMIUM_ARGS,
    DOOR,
    PHONE,
    SITE,
    PhoneSite,
    chromium_path,
    only_loopback,
    wait_snapshot,
)
from harness.turnrelay import TurnRelay, start_turnserver, turnserver_path
from playwright.async_api import async_playwright
from support import need, wait_for

from device.daemon import DeviceApp
from device.simulator import Unit, config_text, contact_toml, write_unit_config
from services.callapi import CallStatus
from services.media.ice import IcePolicy

_log = logging.getLogger(__name__)
# it adds interfaces to the namespace the other browser tests share (their Chromium would offer
# candidates on them, and their fixtures require loopback only): it runs after them, alone
pytestmark = pytest.mark.alone
TIMEOUT_S = 30.0
MIDDLE, PHONE_ADDRESS, DOOR_LAN = "10.16.2.1", "10.16.2.2", "10.16.1.1"


@dataclass
class PhoneNamespace:
    """The phone's namespace, held by a sleeping process."""

    holder: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        return self.holder.pid


@pytest_asyncio.fixture(loop_scope="session")
async def phone_namespace() -> AsyncIterator[PhoneNamespace]:
    need(only_loopback(), "a network namespace with loopback only (unshare -rn)")
    holder = await asyncio.create_subprocess_exec(
        "unshare", "-n", "sleep", "infinity", preexec_fn=_die_with_parent
    )
    try:
        ours = (await asyncio.to_thread(Path("/proc/self/ns/net").stat)).st_ino
        await wait_for(
            lambda: Path(f"/proc/{holder.pid}/ns/net").stat().st_ino != ours,
            "the phone's namespace",
            10,
        )
        inside = ["nsenter", "-t", str(holder.pid), "-n"]
        # the site's LAN: a veth pair with both ends here (no dummy devices in every kernel)
        await run("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
        await run("ip", "addr", "add", f"{DOOR_LAN}/24", "dev", "lan0")
        await run("ip", "link", "set", "lan0", "up")
        await run("ip", "link", "set", "lan1", "up")
        await run("ip", "link", "add", "v-phone", "type", "veth", "peer", "name", "eth0",
                 "netns", str(holder.pid))  # fmt: skip
        await run("ip", "addr", "add", f"{MIDDLE}/24", "dev", "v-phone")
        await run("ip", "link", "set", "v-phone", "up")
        await run(*inside, "ip", "link", "set", "lo", "up")
        await run(*inside, "ip", "addr", "add", f"{PHONE_ADDRESS}/24", "dev", "eth0")
        await run(*inside, "ip", "link", "set", "eth0", "up")
        yield PhoneNamespace(holder)
    finally:
        holder.kill()
        await holder.wait()
        for link in ("lan0", "v-phone"):
            process = await asyncio.create_subprocess_exec(
                "ip", "link", "del", link, stderr=asyncio.subprocess.DEVNULL
            )
            await process.wait()


async def start_door(site: PhoneSite, relay: TurnRelay) -> DeviceApp:
    """The door station of ``site``, offering host candidates on the LAN only, with [turn]."""
    assert site.phone_keys is not None
    secret = site.directory / "turn.secret"
    await asyncio.to_thread(secret.write_text, relay.secret + "\n")
    turn = f"[turn]\nurls = ['{relay.url}']\nsecret_file = '{secret}'\n"
    unit = Unit(DOOR, "door", extra_toml=turn)
    contacts = contact_toml(PHONE, "web", site.phone_keys)
    password = site.broker.files.passwords[DOOR]
    text = config_text(unit, SITE, site.broker.settings.port, password, contacts, [PHONE])
    text = text.replace("{state}", str(site.directory / DOOR))
    path = site.directory / DOOR / "callbox.toml"
    config = await asyncio.to_thread(write_unit_config, path, text)
    app = DeviceApp(config, ice=IcePolicy(addresses=(DOOR_LAN,)))
    site.door = app
    await app.start()
    return app


async def test_default_policy_phone_reaches_the_door_only_through_the_relay(
    phone_site: PhoneSite, phone_namespace: PhoneNamespace, tmp_path: Path
) -> None:
    need(turnserver_path() is not None, "turnserver (Debian's coturn)")
    executable = await asyncio.to_thread(chromium_path)
    need(executable is not None, "Debian's chromium")
    relay = await start_turnserver(
        tmp_path / "turn", host=MIDDLE, listening_ips=(MIDDLE,), relay_ip=DOOR_LAN,
        lan=("10.16.1.0/24",),
    )  # fmt: skip
    web_port = int(phone_site.web_url.rsplit(":", 1)[1].rstrip("/"))
    ws_port = phone_site.broker.settings.websockets_port
    assert ws_port is not None
    servers = [await forward_tcp(MIDDLE, port, port) for port in (web_port, ws_port)]
    phone_site.web_url = f"http://{MIDDLE}:{web_port}"
    phone_site.pairing = replace(phone_site.pairing, broker=f"ws://{MIDDLE}:{ws_port}")
    origin = phone_site.web_url
    wrapper = tmp_path / "chromium-in-phone-ns"
    script = f'#!/bin/sh\nexec nsenter -t {phone_namespace.pid} -n "{executable}" "$@"\n'
    await asyncio.to_thread(wrapper.write_text, script)
    await asyncio.to_thread(wrapper.chmod, stat.S_IRWXU)
    try:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=str(wrapper),
                headless=True,
                args=[
                    *CHROMIUM_ARGS,
                    f"--unsafely-treat-insecure-origin-as-secure={origin}",
                ],
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                page.on("console", lambda m: _log.info("page %s: %s", m.type, m.text))
                await page.add_init_script(RECORD_PEER_CONNECTIONS)
                await phone_site.open_phone(page)
                door = await start_door(phone_site, relay)
                assert door.endpoint is not None
                await door.endpoint.signaling.wait_presence(PHONE, True, timeout=TIMEOUT_S)
                await phone_site.press_doorbell()
                incoming, video = "s.call.status === 'INCOMING'", "s.call.remoteVideoFrames > 5"
                await wait_snapshot(page, f"s.call && {incoming}", "an incoming call", TIMEOUT_S)
                await wait_snapshot(page, f"s.call && {video}", "the visitor's video", TIMEOUT_S)
                await page.click("#answer-video", timeout=TIMEOUT_S * 1000)
                calls = door.endpoint.calls
                await wait_for(
                    lambda: (
                        calls.active_call is not None
                        and calls.active_call.status >= CallStatus.ANSWER
                    ),
                    "the door to see the answer",
                    TIMEOUT_S,
                )
                call = calls.active_call
                assert call is not None and call.session is not None
                stats = call.session.stats
                await wait_for(lambda: stats.video_frames > 10, "the phone's video", TIMEOUT_S)
                await wait_for(lambda: stats.audio_frames > 10, "the phone's audio", TIMEOUT_S)
                seen = await selected_pair(page)
                assert seen["policy"] in (None, "all"), seen
                assert seen["nominated"] is True and seen["local"] == "relay", seen
                assert seen["inbound"].get("video", 0) > 0, seen
                assert seen["inbound"].get("audio", 0) > 0, seen
                await call.hangup()
            finally:
                await context.close()
    finally:
        if phone_site.door is not None:  # before the relay: closing deletes its allocations
            await phone_site.door.close()
        for server in servers:
            server.close()
        await relay.close()
