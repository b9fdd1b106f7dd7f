"""A site with a simulated door station and a browser phone in headless Chromium.

The browser tests and ``bench/browser_call.py`` use it: a real mosquitto on loopback with
its websockets listener, the door station that ``callbox run`` builds on a simulated board
(its GPIO pins are gpiozero MockFactory pins), the page of ``web/`` served by
:class:`device.phone.WebServer`, and Debian's ``chromium`` driven by Python playwright
(fake camera and microphone, a fresh profile per page). The phone joins the way a person's
phone does: it opens the pairing link, generates its keys, and the door's administrator
trusts the keys the page shows.

Run it only inside a network namespace that has nothing but loopback (``make test`` runs
pytest under ``unshare -rn``): Chromium offers ICE candidates on every interface it sees.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.config import load_or_create_identity
from device.daemon import DeviceApp
from device.phone import Pairing, PairingPeer
from device.simulator import (
    PRESENCE_TIMEOUT_S,
    Unit,
    config_text,
    contact_toml,
    write_unit_config,
)
from hal.io_devices import SIM_PINS
from services.signaling.broker import MosquittoBroker, start_loopback_broker
from services.signaling.identity import PublicKeys

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Playwright

SITE = "test"
DOOR = "door"
PHONE = "phone"
PRESS_S = 0.1  # a person's doorbell press, above the 50 ms minimum
CHROMIUM_CANDIDATES = ("chromium", "/usr/bin/chromium")

# What every browser run here needs: fake media devices that need no prompt, loopback ICE
# candidates (Chromium drops them otherwise), real addresses instead of mDNS names (nothing
# answers multicast DNS in a namespace), and no background traffic to Google's services.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    # (one --disable-features: Chromium reads only the last one given) and notifications in
    # Chromium's own message center, never the desktop's over D-Bus, which the namespace lacks
    # (the D-Bus probe held the worker's notifications back, at random, for over 15 s)
    "--disable-features=WebRtcHideLocalIpsWithMdns,NativeNotifications,SystemNotifications",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
)


def chromium_path() -> str | None:
    """Debian's chromium, or None when it is not installed."""
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def only_loopback() -> bool:
    """True inside a network namespace whose only interface is ``lo``."""
    return {name for _, name in socket.if_nameindex()} <= {"lo"}


VIEWPORT = {"width": 720, "height": 900}


async def _executable() -> str:
    executable = await asyncio.to_thread(chromium_path)
    if executable is None:
        raise RuntimeError("Debian's chromium is not installed (apt install chromium)")
    return executable


async def open_browser(playwright: Playwright, profile: Path) -> BrowserContext:
    """Headless Chromium with a fresh profile in ``profile`` and every flag above."""
    return await playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=await _executable(),
        headless=True,
        args=list(CHROMIUM_ARGS),
        viewport={"width": VIEWPORT["width"], "height": VIEWPORT["height"]},
    )


async def launch_browser(playwright: Playwright) -> Browser:
    """Headless Chromium with every flag above, for many pages: see :func:`new_phone`."""
    return await playwright.chromium.launch(
        executable_path=await _executable(), headless=True, args=list(CHROMIUM_ARGS)
    )


async def new_phone(browser: Browser) -> BrowserContext:
    """A fresh profile in ``browser``: a phone of its own.

    A browser context shares nothing with the others: its storage (IndexedDB, caches), its
    service workers, its permissions and its notifications are its own and go with it.
    """
    return await browser.new_context(
        viewport={"width": VIEWPORT["width"], "height": VIEWPORT["height"]}
    )


@dataclass
class PhoneSite:
    """The broker, the door station (once started) and the phone's pairing."""

    directory: Path
    broker: MosquittoBroker
    web_url: str
    pairing: Pairing
    door_keys: PublicKeys
    door: DeviceApp | None = None
    phone_keys: PublicKeys | None = None
    screenshot_dir: Path = field(default_factory=Path)

    @property
    def pairing_url(self) -> str:
        """The link ``callbox keys pair-web`` would print for the phone."""
        return self.pairing.url(self.web_url)

    async def open_phone(self, page: Page, codec: str = "VP8") -> PublicKeys:
        """Open the pairing link in ``page``; returns the keys the page generated."""
        await page.goto(self.pairing_url)
        await page.wait_for_function("() => window.callbox !== undefined")
        await page.evaluate("() => window.callbox.ready")
        await page.evaluate("codec => window.callbox.setVideoCodec(codec)", codec)
        snapshot = await page.evaluate("() => window.callbox.snapshot()")
        sign, _, dh = str(snapshot["keyText"]).partition(".")
        self.phone_keys = PublicKeys.from_json({"sign": sign, "dh": dh})
        return self.phone_keys

    async def start_door(self, call_toml: str = "", extra_toml: str = "") -> DeviceApp:
        """Start the door station trusting the phone (unlock + monitor) and ringing it."""
        if self.phone_keys is None:
            raise RuntimeError("open the phone first: the door trusts the keys it shows")
        unit = Unit(DOOR, "door", extra_toml=extra_toml, call_toml=call_toml)
        contacts = contact_toml(PHONE, "web", self.phone_keys)
        password = self.broker.files.passwords[DOOR]
        text = config_text(unit, SITE, self.broker.settings.port, password, contacts, [PHONE])
        path = self.directory / DOOR / "callbox.toml"
        text = text.replace("{state}", str(self.directory / DOOR))
        app = DeviceApp(await asyncio.to_thread(write_unit_config, path, text))
        self.door = app
        await app.start()
        endpoint = app.endpoint
        assert endpoint is not None
        await endpoint.signaling.wait_presence(PHONE, True, timeout=PRESENCE_TIMEOUT_S)
        return app

    def door_pin(self, name: str) -> Any:
        """The door's MockFactory pin for ``name`` (a key of hal.io_devices.SIM_PINS)."""
        if self.door is None or self.door.endpoint is None:
            raise RuntimeError("the door is not running")
        return self.door.endpoint.board.io.pin_factory.pin(SIM_PINS[name])

    async def press_doorbell(self) -> None:
        """Press and release the door's doorbell button like a visitor."""
        pin = self.door_pin("doorbell")
        pin.drive_low()
        await asyncio.sleep(PRESS_S)  # holding the button is the input, not a wait
        pin.drive_high()

    def relay_pulses(self) -> int:
        """How many times the door relay went on."""
        states = [s.state for s in self.door_pin("relay").states]
        return sum(1 for before, after in itertools.pairwise(states) if after and not before)

    async def close(self) -> None:
        """Stop the door, then the broker."""
        if self.door is not None:
            await self.door.close()
        await self.broker.close()


async def start_phone_site(directory: Path, web_url: str) -> PhoneSite:
    """Start mosquitto (TCP + websockets) with logins for the door and the phone."""
    broker = await start_loopback_broker(
        directory, site=SITE, endpoints=(DOOR, PHONE), websockets=True
    )
    door_keys = (await asyncio.to_thread(load_or_create_identity, directory / DOOR)).public_keys
    ws_port = broker.settings.websockets_port
    assert ws_port is not None
    pairing = Pairing(
        site=SITE,
        address=PHONE,
        name="Phone",
        broker=f"ws://127.0.0.1:{ws_port}",
        username=PHONE,
        password=broker.files.passwords[PHONE],
        peers=(PairingPeer(DOOR, "Door", "door", door_keys.fingerprint()),),
    )
    return PhoneSite(directory, broker, web_url, pairing, door_keys)


async def page_snapshot(page: Page) -> dict[str, Any]:
    """``window.callbox.snapshot()``."""
    result: dict[str, Any] = await page.evaluate("() => window.callbox.snapshot()")
    return result


async def wait_snapshot(page: Page, condition: str, what: str, timeout_s: float) -> None:
    """Wait until the JS expression ``condition`` over the page's snapshot ``s`` holds.

    AssertionError naming ``what`` (and showing the snapshot) when it does not within
    ``timeout_s``.
    """
    script = (
        "() => { const s = window.callbox && window.callbox.snapshot(); "
        f"return Boolean(s && ({condition})); }}"
    )
    try:
        await page.wait_for_function(script, timeout=timeout_s * 1000, polling=50)
    except Exception as err:
        state = (
            snapshot_text(await page_snapshot(page))
            if await page.evaluate("() => !!window.callbox")
            else ""
        )
        raise AssertionError(f"timed out waiting for the page: {what}; page: {state}") from err


def snapshot_text(snapshot: dict[str, Any]) -> str:
    """A page snapshot as one readable line, for failure messages."""
    return json.dumps(snapshot, sort_keys=True)[:2000]
