"""A staged ring group end to end: indoor units first, then phones; the exit button stops all.

Real parts: mosquitto from the generated config (websockets for the pages), a door station
and two indoor units built by ``DeviceApp`` from callbox.toml files on simulated boards
(their GPIO pins are gpiozero MockFactory pins, their displays in memory), two browser phones
in Chromium (a fresh profile each), real WebRTC on loopback.

The door's bell "flat12" (its own push button) rings ``flat1`` and ``flat2`` (indoor units)
and ``phone1`` and ``phone2`` (browser phones) with ``[panel] phones_after_s`` short: the
indoor units ring at the press, the phones only after that (docs/operations.md,
"Escalation"). Then the door's exit button (``[inputs.door_release]``) opens the door: the
relay pulses once and every unit and phone stops ringing with the reason "door-opened",
which they show as "Door opened", not as a missed call. Both kinds of callee show the
bell's label while they ring.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_asyncio
from harness.phonesite import PRESS_S, new_phone, snapshot_text, wait_snapshot
from playwright.async_api import Browser, BrowserContext, Page
from support import wait_for

from device.config import load_or_create_identity
from device.daemon import DeviceApp
from device.phone import Pairing, PairingPeer, WebServer
from device.simulator import PRESENCE_TIMEOUT_S, Unit, config_text, contact_toml, write_unit_config
from hal.io_devices import SIM_PINS
from services.callapi import DOOR_OPENED, Call, CallStatus
from services.intercom.calllog import CallRecord
from services.intercom.door import DoorStation
from services.signaling.broker import MosquittoBroker, start_loopback_broker
from services.signaling.identity import PublicKeys
from services.ui import DefaultCallUi

_log = logging.getLogger(__name__)

SITE = "panel"
DOOR = "door"
UNITS = ("flat1", "flat2")
PHONES = ("phone1", "phone2")
BELL_PIN = "GPIO20"  # the bell's own push button (not one of SIM_PINS)
LABEL = "Flat 12 - Smith"
PHONES_AFTER_S = 1.5
TIMEOUT_S = 20.0
RING_TIMEOUT_S = 120
ENDED_SHOW_S = 15.0  # the units keep their "Door opened" screen while the test looks
STOP_WITHIN_S = 2.0  # the design's target is 200 ms: the figure is logged, the bound loose
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "browser" / "staged-ring"

DOOR_TOML = f"""
[panel]
phones_after_s = {PHONES_AFTER_S}

[[bells]]
name = "flat12"
label = "{LABEL}"
targets = {[*UNITS, *PHONES]!r}
pin = "{BELL_PIN}"
"""


@dataclass
class Panel:
    """The broker, the phones' pages, and the door and indoor units once started."""

    root: Path
    broker: MosquittoBroker
    web_url: str
    door_keys: PublicKeys
    pages: dict[str, Page] = field(default_factory=dict)
    phone_keys: dict[str, PublicKeys] = field(default_factory=dict)
    apps: dict[str, DeviceApp] = field(default_factory=dict)

    def pairing(self, phone: str) -> Pairing:
        """What ``callbox keys pair-web <phone>`` prints on the door."""
        port = self.broker.settings.websockets_port
        return Pairing(
            site=SITE,
            address=phone,
            name=phone.capitalize(),
            broker=f"ws://127.0.0.1:{port}",
            username=phone,
            password=self.broker.files.passwords[phone],
            peers=(PairingPeer(DOOR, "Front door", "door", self.door_keys.fingerprint()),),
        )

    async def open_phone(self, phone: str, page: Page) -> None:
        """Open the phone's pairing link; the door trusts the keys the page shows."""
        await page.goto(self.pairing(phone).url(self.web_url))
        await page.wait_for_function("() => window.callbox !== undefined")
        await page.evaluate("() => window.callbox.ready")
        state = await page.evaluate("() => window.callbox.snapshot()")
        sign, _, dh = str(state["keyText"]).partition(".")
        self.pages[phone] = page
        self.phone_keys[phone] = PublicKeys.from_json({"sign": sign, "dh": dh})

    async def start(self, unit: Unit, contacts: str, targets: list[str]) -> DeviceApp:
        """Write ``unit``'s callbox.toml and start it as ``callbox run`` does."""
        password = self.broker.files.passwords[unit.address]
        text = config_text(unit, SITE, self.broker.settings.port, password, contacts, targets)
        text = text.replace("{state}", str(self.root / unit.address))
        # a loaded machine (a Chromium screenshot alone can take seconds) must not reach the
        # ring timeout before the exit button is pressed
        text = text.replace("ring_timeout_s = 30\n", f"ring_timeout_s = {RING_TIMEOUT_S}\n")
        path = self.root / unit.address / "callbox.toml"
        app = DeviceApp(await asyncio.to_thread(write_unit_config, path, text))
        assert app.config.call.ring_timeout_s == RING_TIMEOUT_S
        self.apps[unit.address] = app
        await app.start()
        return app

    async def start_units_and_door(self) -> None:
        """The indoor units (trusting the door), then the door trusting all four callees."""
        door_contact = contact_toml(DOOR, "door", self.door_keys)
        unit_keys = {}
        for unit in UNITS:
            identity = await asyncio.to_thread(load_or_create_identity, self.root / unit)
            unit_keys[unit] = identity.public_keys
            await self.start(Unit(unit, "indoor"), door_contact, [DOOR])
            self.ui(unit).ended_show_s = ENDED_SHOW_S
        contacts = "".join(
            [contact_toml(u, "indoor", unit_keys[u]) for u in UNITS]
            + [contact_toml(p, "web", self.phone_keys[p]) for p in PHONES]
        )
        door = await self.start(Unit(DOOR, "door", extra_toml=DOOR_TOML), contacts, [*UNITS])
        assert door.endpoint is not None
        for callee in (*UNITS, *PHONES):
            await door.endpoint.signaling.wait_presence(callee, True, timeout=PRESENCE_TIMEOUT_S)

    @property
    def station(self) -> DoorStation:
        endpoint = self.apps[DOOR].endpoint
        assert endpoint is not None and isinstance(endpoint.service, DoorStation)
        return endpoint.service

    def ui(self, unit: str) -> DefaultCallUi:
        endpoint = self.apps[unit].endpoint
        assert endpoint is not None and endpoint.ui is not None
        return endpoint.ui

    def unit_call(self, unit: str) -> Call | None:
        endpoint = self.apps[unit].endpoint
        assert endpoint is not None
        return endpoint.calls.active_call

    def door_pin(self, name: str) -> Any:
        """The door's MockFactory pin ``name`` (e.g. "GPIO20")."""
        endpoint = self.apps[DOOR].endpoint
        assert endpoint is not None
        return endpoint.board.io.pin_factory.pin(name)

    async def press(self, pin_name: str) -> None:
        """A person presses and releases the door's button on ``pin_name``."""
        pin = self.door_pin(pin_name)
        pin.drive_low()
        await asyncio.sleep(PRESS_S)  # holding the button is the input, not a wait
        pin.drive_high()

    def relay_pulses(self) -> int:
        """How many times the door relay went on."""
        states = [s.state for s in self.door_pin(SIM_PINS["relay"]).states]
        return sum(1 for before, after in itertools.pairwise(states) if after and not before)

    async def close(self) -> None:
        """Stop every app (the door first), then the broker."""
        for address in sorted(self.apps, key=lambda a: a != DOOR):
            await self.apps[address].close()
        await self.broker.close()


@pytest_asyncio.fixture(loop_scope="session")
async def panel(tmp_path: Path, web_server: WebServer, browser: Browser) -> AsyncIterator[Panel]:
    """The broker and two paired phone pages (the door and the units start in the test)."""
    broker = await start_loopback_broker(
        tmp_path, site=SITE, endpoints=(DOOR, *UNITS, *PHONES), websockets=True
    )
    contexts: list[BrowserContext] = []
    door_keys = (await asyncio.to_thread(load_or_create_identity, tmp_path / DOOR)).public_keys
    site = Panel(tmp_path, broker, web_server.url, door_keys)
    try:
        for phone in PHONES:
            context = await new_phone(browser)
            contexts.append(context)
            await site.open_phone(phone, await context.new_page())
        yield site
    finally:
        await site.close()
        for context in contexts:
            await context.close()


def ringing(panel: Panel, unit: str) -> Callable[[], bool]:
    """Whether ``unit`` shows its ringing screen."""
    return lambda: panel.ui(unit).screen == "incoming"


async def page_state(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("() => window.callbox.snapshot()")
    return result


async def wait_phone(panel: Panel, phone: str, condition: str, what: str) -> None:
    await wait_snapshot(panel.pages[phone], condition, f"{phone}: {what}", TIMEOUT_S)


async def test_indoor_units_ring_first_then_phones_and_the_exit_button_stops_them_all(
    panel: Panel,
) -> None:
    await panel.start_units_and_door()
    for phone in PHONES:
        await wait_phone(panel, phone, "s.peers.door && s.peers.door.online", "the door online")

    pressed_at = time.time()
    await panel.press(BELL_PIN)
    for unit in UNITS:  # stage 1: the indoor units ring at the press
        await wait_for(ringing(panel, unit), f"{unit} rings")
    for phone in PHONES:  # stage 2: the phones, PHONES_AFTER_S later
        await wait_phone(panel, phone, "s.call && s.call.status === 'INCOMING'", "it rings")

    # the bell's label on an indoor unit and on a phone
    ui = panel.ui(UNITS[0])
    assert ui.state().bell == LABEL and ui.status_text == f"Door · {LABEL} is calling"
    for phone in PHONES:
        state = await page_state(panel.pages[phone])
        assert state["call"]["bell"] == {"name": "flat12", "label": LABEL, "via": "button"}
    page = panel.pages[PHONES[0]]
    assert (await page.locator("#bell").inner_text()) == LABEL
    assert await page.locator("#bell").is_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "phone-ringing.png"))

    door_call = panel.station.calls.active_call
    assert door_call is not None and not door_call.is_ended()
    unit_calls = {u: panel.unit_call(u) for u in UNITS}

    # the exit button inside opens the door while everyone rings
    await panel.press(SIM_PINS["door_release"])
    for unit, call in unit_calls.items():
        assert call is not None
        await wait_for(call.ended.is_set, f"{unit} to stop ringing", TIMEOUT_S)
    for phone in PHONES:
        await wait_phone(panel, phone, "!s.call && s.lastCall", "the ringing to stop")
    phones_seen_at = time.monotonic()
    await wait_for(door_call.ended.is_set, "the door's call to end", TIMEOUT_S)
    await panel.station.opener.wait_idle()
    assert panel.relay_pulses() == 1, "one pulse of the relay"
    (release,) = panel.station.opener.records
    assert release.opened and release.requester == "exit button"
    assert door_call.end_reason == DOOR_OPENED

    pulsed_at = release.monotonic_at
    stops = {u: c.ended_at - pulsed_at for u, c in unit_calls.items() if c and c.ended_at}
    for phone in PHONES:  # the page's own clock (Date.now()) against the record's unix time
        ended_at = (await page_state(panel.pages[phone]))["lastCall"]["endedAt"]
        stops[phone] = ended_at / 1000 - release.at
    _log.info(
        "stopped ringing after the relay pulse (s): %s", {a: round(s, 3) for a, s in stops.items()}
    )
    assert phones_seen_at - pulsed_at < STOP_WITHIN_S + 1.0  # seen by polling the pages
    assert all(s < STOP_WITHIN_S for s in stops.values()), stops
    for unit, call in unit_calls.items():
        assert call is not None
        assert call.status == CallStatus.CANCEL and call.end_reason == DOOR_OPENED, unit
        assert panel.ui(unit).screen == "ended" and panel.ui(unit).status_text == "Door opened"
        assert panel.ui(unit).missed == 0, "a door opened is no missed call"
    for phone in PHONES:
        state = await page_state(panel.pages[phone])
        last = state["lastCall"]
        assert last["status"] == "CANCEL" and last["endReason"] == DOOR_OPENED, snapshot_text(state)
        entry = state["log"][0]
        assert not entry["missed"] and entry["endReason"] == DOOR_OPENED
        # the order, from the clocks of the callees: phones invited PHONES_AFTER_S after the
        # press, after both indoor units
        assert entry["startedAt"] / 1000 >= pressed_at + PHONES_AFTER_S, (entry, pressed_at)
    assert (await page.locator("#status").inner_text()) == "Door opened"
    await page.screenshot(path=str(SCREENSHOTS / "phone-door-opened.png"))
    phone_started = min([(await page_state(panel.pages[p]))["log"][0]["startedAt"] for p in PHONES])
    for unit, call in unit_calls.items():
        assert call is not None
        record = await logged(panel, unit, call)
        assert not record.missed and record.started_at < phone_started / 1000, (unit, record)


async def logged(panel: Panel, unit: str, call: Call) -> CallRecord:
    """The record of ``call`` in ``unit``'s call log, once written."""
    endpoint = panel.apps[unit].endpoint
    assert endpoint is not None
    records: list[CallRecord] = []

    async def written() -> bool:
        records[:] = [r for r in await endpoint.call_log.recent(5) if r.call_id == call.call_id]
        return bool(records)

    deadline = time.monotonic() + TIMEOUT_S
    while not await written():
        assert time.monotonic() < deadline, f"{unit}: no call log record of {call.call_id}"
        await asyncio.sleep(0.05)  # polling the log's file, not a fixed wait
    return records[0]
