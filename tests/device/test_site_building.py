"""A building: two door stations ring flat 12 through the signed site directory.

Real parts: mosquitto from the generated config, ``callbox site`` run as its own process
(init, add, publish, and a phone added once by the fingerprint its profile advertises),
door stations and an indoor unit built by ``DeviceApp`` from callbox.toml files that list no
contact at all, and a phone endpoint. The phone, paired once, is rung by both doors, which
never listed it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from daemon_helpers import callbox
from harness.building import unit_toml
from support import Answering, wait_for

from device.config import CallboxConfig, load_config, load_or_create_identity
from device.daemon import DeviceApp, compose_calls
from hal.board import build_sim_board
from services.callapi import CallStatus
from services.callapi.calls import Calls
from services.intercom.door import DoorStation
from services.media.ice import LOOPBACK
from services.signaling.broker import MosquittoBroker, start_loopback_broker
from services.signaling.contacts import ContactBook
from services.signaling.directory import SiteDirectory, admin_public_key
from services.signaling.identity import Identity
from services.signaling.transport import BrokerAddress, mqtt_transport

SITE = "tower"
DOORS = ("door-a", "door-b")
INDOOR = "flat12-hall"
PHONE = "flat12-phone"
NEIGHBOUR = "flat13-hall"


def write_and_load(path: Path, text: str) -> CallboxConfig:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return load_config(path)


@dataclass
class Building:
    broker: MosquittoBroker
    site_dir: Path
    admin_key: str = ""
    apps: dict[str, DeviceApp] = field(default_factory=dict)

    def site_args(self, *args: str) -> list[str]:
        return ["site", "--dir", str(self.site_dir), *args]

    def broker_args(self) -> list[str]:
        return [
            "--broker-port",
            str(self.broker.settings.port),
            "--broker-config",
            str(self.broker.files.directory),
        ]

    def door(self, address: str) -> DoorStation:
        endpoint = self.apps[address].endpoint
        assert endpoint is not None
        assert isinstance(endpoint.service, DoorStation)
        return endpoint.service


def rings(station: DoorStation, addresses: list[str]) -> Callable[[], bool]:
    """True once ``station``'s doorbell rings exactly ``addresses``."""
    return lambda: station.reachable_targets() == addresses


def idle(station: DoorStation) -> Callable[[], bool]:
    """True once ``station`` has no call in progress."""
    return lambda: not station.calls.is_call_in_progress()


async def ok(*args: str) -> str:
    result = await callbox(*args)
    assert result.code == 0, result.stderr + result.stdout
    return result.stdout


@pytest.fixture
async def building(tmp_path: Path) -> AsyncIterator[Building]:
    broker = await start_loopback_broker(
        tmp_path, site=SITE, endpoints=(*DOORS, INDOOR, PHONE, NEIGHBOUR)
    )
    site = Building(broker, tmp_path / "admin")
    try:
        out = await ok(*site.site_args("init", "--site", SITE))
        site.admin_key = out.split('admin_key = "')[1].split('"')[0]
        units = (("door-a", "door", ""), ("door-b", "door", ""), (INDOOR, "indoor", "12"))
        for address, role, flat_number in (*units, (NEIGHBOUR, "indoor", "13")):
            state = tmp_path / address
            keys = (await asyncio.to_thread(load_or_create_identity, state)).public_keys
            key_text = f"{keys.to_json()['sign']}.{keys.to_json()['dh']}"
            flat = ["--flat", flat_number] if flat_number else []
            await ok(*site.site_args("add", address, "--role", role, "--key", key_text, *flat))
            text = unit_toml(
                SITE,
                address,
                role,
                broker.settings.port,
                broker.files.passwords[address],
                state,
                site.admin_key,
            )
            config = await asyncio.to_thread(write_and_load, state / "callbox.toml", text)
            site.apps[address] = DeviceApp(config)
        out = await ok(*site.site_args("publish", *site.broker_args()))
        assert "site directory version 1 published" in out
        for app in site.apps.values():
            await app.start()
        yield site
    finally:
        for app in site.apps.values():
            await app.close()
        await broker.close()


async def start_phone(site: Building) -> tuple[Calls, SiteDirectory, Answering]:
    """The flat's phone: its own keys, contacts only from the site directory."""
    identity = Identity.generate()
    contacts = ContactBook()
    login = BrokerAddress(
        "127.0.0.1", site.broker.settings.port, PHONE, site.broker.files.passwords[PHONE]
    )
    calls = compose_calls(
        role="indoor",
        name="Flat 12 phone",
        transport=mqtt_transport(site=SITE, address=PHONE, broker=login),
        identity=identity,
        contacts=contacts,
        board=build_sim_board(PHONE),
        ice=LOOPBACK,
    )
    directory = SiteDirectory(SITE, admin_public_key(site.admin_key), contacts, own_address=PHONE)
    calls.signaling.use_directory(directory)
    answering = Answering(calls, accept=True)
    calls.set_listener(answering)
    await calls.start()
    return calls, directory, answering


async def test_a_phone_paired_once_is_rung_by_two_doors_that_never_listed_it(
    building: Building,
) -> None:
    for door in DOORS:
        await wait_for(rings(building.door(door), [INDOOR]), f"{door} ringing the indoor unit")
    calls, directory, answering = await start_phone(building)
    try:
        await wait_for(lambda: directory.highest_version == 1, "the phone's directory")
        fingerprint = calls.signaling.identity.public_keys.fingerprint()
        # pairing in a building: added once, from the keys its profile advertises
        out = await ok(
            *building.site_args(
                "add", PHONE, "--role", "web", "--flat", "12", "--rights", "unlock",
                "--fingerprint", fingerprint, "--publish", *building.broker_args(),
            )
        )  # fmt: skip
        assert "site directory version 2 published" in out
        await wait_for(lambda: directory.highest_version == 2, "the phone's directory v2")
        for number, door in enumerate(DOORS, start=1):
            station = building.door(door)
            await wait_for(rings(station, [INDOOR, PHONE]), f"{door} ringing the phone too")
            contact = station.calls.signaling.contacts.get(PHONE)
            assert contact is not None and contact.source == "directory"
            call = await station.ring()
            assert call is not None
            await wait_for(lambda: len(answering.calls) >= number, "the phone rung")  # noqa: B023
            assert answering.incoming[-1][0].address == door
            incoming, progress = answering.calls[-1], answering.progress[-1]
            await incoming.answer(True)
            await progress.wait_status(CallStatus.CONNECTED)
            await incoming.hangup()
            await wait_for(progress.terminal, "the phone's call ended")
            await wait_for(idle(station), "door idle")
        status = building.apps["door-b"].status()["signaling"]["site_directory"]
        assert status == {"version": 2, "entries": 5, "refused": {}}
        listed = json.loads(await ok(*building.site_args("list", "--json")))
        assert listed["version"] == 2
        assert [e["address"] for e in listed["entries"]] == sorted(
            [*DOORS, INDOOR, PHONE, NEIGHBOUR]
        )
    finally:
        await calls.close()
        await calls.media.board.close()  # not left to a finalizer on a later test's loop


async def test_a_neighbour_it_does_not_follow_can_be_called(building: Building) -> None:
    hall = building.apps[INDOOR].endpoint
    neighbour = building.apps[NEIGHBOUR].endpoint
    assert hall is not None and neighbour is not None
    # flat 12 follows its flat and the doors, not flat 13
    await wait_for(lambda: hall.signaling.contacts.get(NEIGHBOUR) is not None, "the directory")
    assert NEIGHBOUR not in hall.signaling.needs()
    props = hall.calls.create_call_properties(video=False)
    props.user = hall.calls.profile_of(NEIGHBOUR)
    call = hall.calls.call(props)
    assert call is not None
    await call.start()
    await wait_for(lambda: neighbour.calls.active_call is not None, "the neighbour ringing")
    ringing = neighbour.calls.active_call
    assert ringing is not None
    await ringing.answer(False)
    await wait_for(lambda: call.status == CallStatus.CONNECTED, "the call to connect")
    await call.hangup()
    await wait_for(lambda: not neighbour.calls.is_call_in_progress(), "the neighbour idle")


async def test_site_commands_refuse_bad_input(building: Building) -> None:
    key = "not-a-key"
    result = await callbox(*building.site_args("add", "x", "--role", "door", "--key", key))
    assert result.code == 2 and "not a public key pair" in result.stderr
    result = await callbox(*building.site_args("add", "x", "--role", "door"))
    assert result.code == 2 and "give exactly one of --key" in result.stderr
    keys = Identity.generate().public_keys.to_json()
    text = f"{keys['sign']}.{keys['dh']}"
    result = await callbox(*building.site_args("add", INDOOR, "--role", "indoor", "--key", text))
    assert result.code == 2 and f"{INDOOR} is listed already" in result.stderr
    result = await callbox(
        *building.site_args("add", "y", "--role", "web", "--flat", "12/b", "--key", text)
    )
    assert result.code == 2 and "flat '12/b' must be" in result.stderr
    result = await callbox(*building.site_args("remove", "nobody"))
    assert result.code == 1 and "nobody is not in the site directory" in result.stderr
    result = await callbox(*building.site_args("init", "--site", "other"))
    assert result.code == 1 and "already holds site 'tower'" in result.stderr
    result = await callbox(
        "site", "--dir", str(building.site_dir.parent / "none"), "publish",
        *building.broker_args(),
    )  # fmt: skip
    assert result.code == 1 and "run `callbox site init --site NAME` first" in result.stderr
    result = await callbox(
        *building.site_args("publish", "--broker-port", str(building.broker.settings.port),
                            "--password-file", str(building.site_dir / "site.json"))
    )  # fmt: skip
    assert result.code == 1 and "not published" in result.stderr
