"""A door station with Web Push, an indoor unit and a phone, for tests and the benchmark.

The door and the indoor unit are device apps built from callbox.toml files (``[push]`` names
the site's VAPID key and the local push service, tests/harness/push_endpoint.py) on simulated
boards whose doorbell is a gpiozero MockFactory pin; the phone is a real Call API endpoint
(aiortc media, MQTT over the same mosquitto) pinned on the door as a browser phone (role
``web``) and rung by it, as ``callbox keys trust phone <fp> --ring`` would make it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.daemon import compose_calls
from device.simulator import IntercomSite, Unit, start_intercom_site, write_unit_config
from hal.board import build_sim_board
from hal.io_devices import SIM_PINS
from harness.push_endpoint import PushEndpoint, Subscriber
from services.callapi.calls import Calls, new_call_id
from services.intercom.door import DoorStation
from services.media.ice import LOOPBACK
from services.push.service import PushService
from services.push.vapid import VapidKey, generate_vapid_key, save_vapid_key
from services.signaling.contacts import Contact, ContactBook
from services.signaling.endpoint import Message
from services.signaling.identity import Identity, PublicKeys
from services.signaling.transport import BrokerAddress, mqtt_transport

SUBJECT = "mailto:admin@example.org"
PRESS_S = 0.1  # a person's doorbell press, above the 50 ms minimum
DOOR, FLAT, PHONE = "door", "flat", "phone"
STRANGER = "stranger"
"""Pinned on the door as an indoor unit it does not ring: it may not subscribe."""
INTRUDER = "intruder"
"""A broker login the door has not pinned at all."""


async def vapid_on_disk(directory: Path) -> tuple[VapidKey, Path]:
    """A new site key in ``directory/vapid.key`` (0600)."""
    key = generate_vapid_key()
    path = directory / "vapid.key"
    await asyncio.to_thread(save_vapid_key, path, key)
    return key, path


@dataclass
class PushPhone:
    """A phone's Call API endpoint and the ``push_status`` answers it got."""

    address: str
    calls: Calls
    statuses: asyncio.Queue[Message] = field(default_factory=lambda: asyncio.Queue(100))

    @property
    def keys(self) -> PublicKeys:
        """Its public keys (what the door pins)."""
        return self.calls.signaling.identity.public_keys

    async def start(self) -> None:
        """Connect; ``push_status`` answers go to :attr:`statuses`."""
        self.calls.handle_messages(["push_status"], self._status)
        await self.calls.start()

    async def _status(self, message: Message) -> None:
        self.statuses.put_nowait(message)

    async def send(self, message_type: str, body: dict[str, Any]) -> None:
        """Sign and send ``message_type`` to the door."""
        await self.calls.signaling.send(DOOR, message_type, new_call_id(), body)

    async def request(self, message_type: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send ``message_type`` to the door and return the body of its ``push_status``."""
        await self.send(message_type, body)
        async with asyncio.timeout(10):
            answer = await self.statuses.get()
        assert answer.type == "push_status" and answer.sender == DOOR
        return answer.body

    async def subscribe(self, subscriber: Subscriber) -> dict[str, Any]:
        """Register ``subscriber``'s subscription with the door."""
        return await self.request("push_subscribe", subscriber.subscribe_body())


@dataclass
class PushSite:
    """The running site, the phones and the push service."""

    site: IntercomSite
    endpoint: PushEndpoint
    phones: dict[str, PushPhone]

    @property
    def door(self) -> DoorStation:
        """The door station's call service."""
        endpoint = self.site[DOOR].endpoint
        assert endpoint is not None and isinstance(endpoint.service, DoorStation)
        return endpoint.service

    @property
    def push(self) -> PushService:
        """The door's Web Push."""
        assert self.door.push is not None
        return self.door.push

    def flat_calls(self) -> Calls:
        """The indoor unit's Call API."""
        endpoint = self.site[FLAT].endpoint
        assert endpoint is not None
        return endpoint.calls

    async def press(self) -> float:
        """Press the doorbell like a person; returns when the pin went low (time.monotonic)."""
        pin = self.site.pin(DOOR, SIM_PINS["doorbell"])
        pressed = time.monotonic()
        pin.drive_low()
        await asyncio.sleep(PRESS_S)  # the press itself: the input, not a wait
        pin.drive_high()
        return pressed

    async def hang_up(self) -> None:
        """End the door's call, if any, and wait until the line is free."""
        call = self.door.calls.active_call
        if call is not None:
            await call.hangup()
            await asyncio.wait_for(call.ended.wait(), 10)

    async def reopen(self, address: str) -> PushPhone:
        """``address``'s page opened again (woken by a push): the same keys, a new endpoint.

        The old endpoint and its board are closed first (a board left to the garbage
        collector removes its files on whatever thread collects it). Not started yet.
        """
        old = self.phones[address]
        await close_phone(old)
        identity = old.calls.signaling.identity
        self.phones[address] = PushPhone(address, phone_calls(self.site, address, identity))
        return self.phones[address]

    async def close(self) -> None:
        """Phones, apps, broker."""
        for phone in self.phones.values():
            await close_phone(phone)
        await self.site.close()


async def close_phone(phone: PushPhone) -> None:
    """Close a phone's endpoint and its board (both idempotent)."""
    await phone.calls.close()
    await phone.calls.media.board.close()


def phone_calls(site: IntercomSite, address: str, identity: Identity) -> Calls:
    """A phone's Call API on the site's broker, with the door pinned."""
    door = site[DOOR].endpoint
    assert door is not None
    contacts = ContactBook()
    contacts.add(Contact(address=DOOR, keys=door.signaling.identity.public_keys, name="Door"))
    broker = BrokerAddress(
        host="127.0.0.1",
        port=site.settings.port,
        username=address,
        password=site.broker.files.passwords[address],
    )
    return compose_calls(
        role="web",
        name=address,
        transport=mqtt_transport(site=site.settings.site, address=address, broker=broker),
        identity=identity,
        contacts=contacts,
        board=build_sim_board(address),
        ice=LOOPBACK,
    )


def push_toml(key_path: Path, endpoint: PushEndpoint, timeout_s: float) -> str:
    """The door's ``[push]`` table."""
    return f"""
[push]
vapid_key = "{key_path}"
subject = "{SUBJECT}"
hosts = ["{endpoint.host_entry}"]
timeout_s = {timeout_s}
"""


def contact_entry(address: str, role: str, keys: PublicKeys) -> str:
    """A ``[[contacts]]`` table pinning ``address`` with ``role`` and no rights."""
    data = keys.to_json()
    return f"""
[[contacts]]
address = "{address}"
role = "{role}"
sign_key = "{data["sign"]}"
dh_key = "{data["dh"]}"
"""


async def start_push_site(
    directory: Path, key_path: Path, endpoint: PushEndpoint, *, timeout_s: float = 5.0
) -> PushSite:
    """The door (with ``[push]``), the indoor unit, the phone and two outsiders, all online.

    The door rings the indoor unit and the phone; it pins the phone as a browser phone and
    ``stranger`` as an indoor unit it does not ring; ``intruder`` has only a broker login.
    """
    site = await start_intercom_site(
        directory,
        [
            Unit(DOOR, "door", extra_toml=push_toml(key_path, endpoint, timeout_s)),
            Unit(FLAT, "indoor"),
        ],
        accounts=(PHONE, STRANGER, INTRUDER),
    )
    phones: dict[str, PushPhone] = {}
    running = PushSite(site, endpoint, phones)
    try:
        for address in (PHONE, STRANGER, INTRUDER):
            phones[address] = PushPhone(address, phone_calls(site, address, Identity.generate()))
            await phones[address].start()
        await _pin_on_door(running)
    except BaseException:
        await running.close()
        raise
    return running


async def _pin_on_door(running: PushSite) -> None:
    """Edit the door's callbox.toml as an installer would, and reload it (contacts, targets)."""
    site, phones = running.site, running.phones
    path = site.config_paths[DOOR]
    text = await asyncio.to_thread(path.read_text)
    targets = f"targets = {[FLAT]!r}"
    assert targets in text
    text = text.replace(targets, f"targets = {[FLAT, PHONE]!r}")
    text += contact_entry(PHONE, "web", phones[PHONE].keys)
    text += contact_entry(STRANGER, "indoor", phones[STRANGER].keys)
    config = await asyncio.to_thread(write_unit_config, path, text)
    await site[DOOR].apply(config)
    door = site[DOOR].endpoint
    assert door is not None
    # the door follows its contacts and targets only: not the intruder (issue 18)
    for address in (PHONE, STRANGER, FLAT):
        await door.signaling.wait_presence(address, True, timeout=10)
