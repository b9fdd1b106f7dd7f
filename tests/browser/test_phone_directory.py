"""The browser phone reads the signed site directory (docs/operations.md, "A building").

Real parts: mosquitto from the generated config (websockets for the page, the ``admin``
account that alone writes the directory), the directory signed and published by the site
admin code ``callbox site`` uses (services/signaling/siteadmin.py), door stations built by
``DeviceApp`` from callbox.toml files that list no contact (they trust the phone through the
directory), and the page in Chromium. The phone is paired by ``callbox keys pair-web --flat 12``
on the first door before the second door existed: its link names the first door only and
carries the site admin key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest_asyncio
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from harness.building import unit_toml
from playwright.async_api import Page
from support import wait_for

from device.cli import main
from device.config import load_config, load_or_create_identity
from device.daemon import DeviceApp
from device.phone import Pairing, PairingPeer, WebServer
from device.phone._pairing import parse_pairing_url
from services.callapi import CallStatus
from services.intercom.door import DoorStation
from services.signaling.broker import (
    ADMIN_PASSWORD_FILE,
    ADMIN_USER,
    MosquittoBroker,
    start_loopback_broker,
)
from services.signaling.directory import Directory, DirectoryEntry
from services.signaling.identity import PublicKeys
from services.signaling.siteadmin import SiteBook, admin_public_text, publish
from services.signaling.topics import SiteTopics
from services.signaling.transport import BrokerAddress

SITE = "tower"
DOOR_A, DOOR_B = "door-a", "door-b"
PHONE = "flat12-phone"
TIMEOUT_S = 20.0


@dataclass
class Tower:
    """The broker, the installer's admin key and book, and the door stations started."""

    broker: MosquittoBroker
    root: Path
    admin: Ed25519PrivateKey
    book: SiteBook
    web_url: str
    apps: dict[str, DeviceApp] = field(default_factory=dict)

    @property
    def admin_login(self) -> BrokerAddress:
        password = (self.broker.files.directory / ADMIN_PASSWORD_FILE).read_text().strip()
        return BrokerAddress("127.0.0.1", self.broker.settings.port, ADMIN_USER, password)

    async def door_keys(self, address: str) -> PublicKeys:
        identity = await asyncio.to_thread(load_or_create_identity, self.root / address)
        return identity.public_keys

    async def add(self, address: str, role: str, keys: PublicKeys, flat: str = "") -> None:
        """``callbox site add`` then ``callbox site publish`` (the installer)."""
        self.book.add(DirectoryEntry(address, address, role, flat, keys))
        await publish(self.admin_login, self.book, self.admin)

    async def publish_raw(self, payload: bytes) -> None:
        """Publish anything on the directory topic as the admin account (a forger with it)."""
        async with aiomqtt.Client(
            "127.0.0.1",
            self.broker.settings.port,
            username=ADMIN_USER,
            password=self.admin_login.password,
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as client:
            await client.publish(SiteTopics(SITE).directory(), payload, qos=1, retain=True)

    async def door_config(self, address: str) -> Path:
        """Write the door station's callbox.toml (its keys made on first use)."""
        state = self.root / address
        await self.door_keys(address)
        text = unit_toml(
            SITE,
            address,
            "door",
            self.broker.settings.port,
            self.broker.files.passwords[address],
            state,
            admin_public_text(self.admin),
        )
        path = state / "callbox.toml"
        await asyncio.to_thread(path.write_text, text)
        return path

    async def start_door(self, address: str) -> DoorStation:
        path = await self.door_config(address)
        app = DeviceApp(await asyncio.to_thread(load_config, path))
        self.apps[address] = app
        await app.start()
        assert app.endpoint is not None and isinstance(app.endpoint.service, DoorStation)
        return app.endpoint.service

    async def pair_web(self) -> str:
        """``callbox keys pair-web flat12-phone --flat 12`` on door-a: the phone's link."""
        config = await self.door_config(DOOR_A)
        site_dir = self.root / "admin"
        await asyncio.to_thread(site_dir.mkdir, mode=0o700, exist_ok=True)
        await asyncio.to_thread(self.book.save, site_dir)
        ws_port = self.broker.settings.websockets_port
        args = [
            "keys", "--config", str(config), "pair-web", PHONE, "--name", "Flat 12 phone",
            "--url", self.web_url, "--broker-url", f"ws://127.0.0.1:{ws_port}",
            "--broker-config", str(self.broker.files.directory), "--no-qr",
            "--flat", "12", "--site-dir", str(site_dir),
        ]  # fmt: skip
        result = await asyncio.to_thread(CliRunner().invoke, main, args)
        assert result.exit_code == 0, result.output
        return next(line for line in result.stdout.splitlines() if "#pair=" in line)

    def pairing(self, door_a: PublicKeys) -> Pairing:
        """What ``pair-web flat12-phone --flat 12`` prints while door-a is the only door."""
        port = self.broker.settings.websockets_port
        return Pairing(
            site=SITE,
            address=PHONE,
            name="Flat 12 phone",
            broker=f"ws://127.0.0.1:{port}",
            username=PHONE,
            password=self.broker.files.passwords[PHONE],
            peers=(PairingPeer(DOOR_A, DOOR_A, "door", door_a.fingerprint()),),
            admin_key=admin_public_text(self.admin),
        )


@pytest_asyncio.fixture(loop_scope="session")
async def tower(tmp_path: Path, web_server: WebServer) -> AsyncIterator[Tower]:
    broker = await start_loopback_broker(
        tmp_path, site=SITE, endpoints=(DOOR_A, DOOR_B, PHONE), websockets=True
    )
    site = Tower(broker, tmp_path, Ed25519PrivateKey.generate(), SiteBook(SITE), web_server.url)
    try:
        yield site
    finally:
        for app in site.apps.values():
            await app.close()
        await broker.close()


async def snapshot(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("() => window.callbox.snapshot()")
    return result


async def wait_page(page: Page, condition: str, what: str) -> None:
    """Wait until the JS expression ``condition`` over the snapshot ``s`` holds."""
    script = f"() => {{ const s = window.callbox.snapshot(); return Boolean({condition}); }}"
    try:
        await page.wait_for_function(script, timeout=TIMEOUT_S * 1000, polling=50)
    except Exception as err:
        state = json.dumps(await snapshot(page), default=str)[:3000]
        raise AssertionError(f"timed out waiting for the page: {what}; page: {state}") from err


async def open_phone(page: Page, url: str) -> PublicKeys:
    await page.goto(url)
    await page.wait_for_function("() => window.callbox !== undefined")
    await page.evaluate("() => window.callbox.ready")
    state = await snapshot(page)
    sign, _, dh = str(state["keyText"]).partition(".")
    return PublicKeys.from_json({"sign": sign, "dh": dh})


async def ring_and_answer(station: DoorStation, page: Page) -> None:
    """The door rings the phone; the page answers, the call connects, the page hangs up."""
    call = await station.ring()
    assert call is not None
    await wait_page(page, "s.call && s.call.status === 'INCOMING'", "the phone rung")
    await page.evaluate("() => window.callbox.answer({video: false})")
    await wait_page(page, "s.call && s.call.status === 'CONNECTED'", "the call connected")
    await wait_for(lambda: call.status == CallStatus.CONNECTED, "door connected", TIMEOUT_S)
    await page.evaluate("() => window.callbox.hangup()")
    await wait_page(page, "!s.call", "the page idle")
    await wait_for(lambda: not station.calls.is_call_in_progress(), "door idle", TIMEOUT_S)


async def test_a_door_added_after_pairing_rings_the_phone(tower: Tower, page: Page) -> None:
    """Paired while door-a was the only door, the phone takes door-b's call once it is listed."""
    await tower.add(DOOR_A, "door", await tower.door_keys(DOOR_A))  # version 1
    link = await tower.pair_web()
    pairing = parse_pairing_url(link)
    assert [p.address for p in pairing.peers] == [DOOR_A]
    assert pairing.admin_key == admin_public_text(tower.admin)
    phone_keys = await open_phone(page, link)
    await wait_page(page, "s.directory && s.directory.version === 1", "directory version 1")
    # the installer adds the phone once (`callbox site add --fingerprint … --publish`)
    await tower.add(PHONE, "web", phone_keys, flat="12")  # version 2
    await wait_page(page, "s.directory.version === 2", "directory version 2")
    station_a = await tower.start_door(DOOR_A)
    await wait_for(lambda: station_a.reachable_targets() == [PHONE], "door-a ringing the phone")
    await ring_and_answer(station_a, page)

    # a second door station: added to the directory only, the phone is not paired again
    await tower.add(DOOR_B, "door", await tower.door_keys(DOOR_B))  # version 3
    await wait_page(page, "s.directory.version === 3", "directory version 3")
    state = await snapshot(page)
    assert state["peers"][DOOR_B]["pinned"] and state["peers"][DOOR_B]["fromDirectory"]
    assert not state["peers"][DOOR_A]["fromDirectory"], "the link's pin wins"
    station_b = await tower.start_door(DOOR_B)
    await wait_page(page, f"s.peers['{DOOR_B}'].online", "door-b's presence followed")
    await wait_for(lambda: station_b.reachable_targets() == [PHONE], "door-b ringing the phone")
    await ring_and_answer(station_b, page)
    state = await snapshot(page)
    assert state["rejections"] == {}, state["rejections"]

    # removed from the directory: no longer trusted (nor followed)
    tower.book.remove(DOOR_B)
    await publish(tower.admin_login, tower.book, tower.admin)  # version 4
    await wait_page(page, f"s.directory.version === 4 && !s.peers['{DOOR_B}']", "door-b gone")
    call = await station_b.ring()  # door-b still lists the phone: its invite is refused
    assert call is not None
    await wait_page(page, "s.rejections.unknown_sender >= 1 && !s.call", "door-b's call refused")
    await call.hangup()
    await wait_for(lambda: not station_b.calls.is_call_in_progress(), "door-b idle", TIMEOUT_S)


async def test_a_tampered_or_old_directory_is_refused(tower: Tower, page: Page) -> None:
    """Unsigned, wrongly signed, other-site, rolled-back documents: nothing new is trusted."""
    door_a_keys = await tower.door_keys(DOOR_A)
    await tower.add(DOOR_A, "door", door_a_keys)
    url = tower.pairing(door_a_keys).url(tower.web_url)
    phone_keys = await open_phone(page, url)
    await tower.add(PHONE, "web", phone_keys, flat="12")  # version 2
    await wait_page(page, "s.directory.version === 2", "directory version 2")
    intruder = await tower.door_keys("intruder")
    entries = (
        *tower.book.directory(3).entries,
        DirectoryEntry("intruder", "Intruder", "door", "", intruder),
    )
    forged = Directory(SITE, 9, 0, entries)
    tampered = json.loads(forged.sign(tower.admin))
    tampered["entries"][0]["flat"] = "12"  # changed after signing
    # signed by the admin key, but not above the accepted version 2 (an old document)
    rolled_back = Directory(SITE, 2, 12345, entries)
    cases = [
        ("unsigned", json.dumps(forged.to_json()).encode()),
        ("bad_signature", forged.sign(Ed25519PrivateKey.generate())),
        ("bad_signature", json.dumps(tampered).encode()),
        ("other_site", Directory("elsewhere", 9, 0, entries).sign(tower.admin)),
        ("rollback", rolled_back.sign(tower.admin)),
    ]
    for count, (problem, payload) in enumerate(cases, start=1):
        await tower.publish_raw(payload)
        total = f"Object.values(s.directory.refused).reduce((a, b) => a + b, 0) === {count}"
        await wait_page(page, total, f"the page refusing a {problem} directory")
        state = await snapshot(page)
        assert state["directory"]["refused"].get(problem), (problem, state["directory"])
        assert "intruder" not in state["peers"] and state["directory"]["version"] == 2
    # after a reload the floor stays: the same rollback is refused again
    await page.reload()
    await page.wait_for_function("() => window.callbox !== undefined")
    await page.evaluate("() => window.callbox.ready")
    await wait_page(
        page, "s.directory.version === 2 && s.directory.refused.rollback === 1", "floor"
    )
    state = await snapshot(page)
    assert "intruder" not in state["peers"] and state["peers"][DOOR_A]["role"] == "door"
