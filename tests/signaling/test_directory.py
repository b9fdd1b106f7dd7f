"""The signed site directory against a real mosquitto from the generated config.

Endpoints that list nobody in their own contacts learn every peer from the directory the
site admin signs; each kind of bad directory (tampered, wrong key, rolled back, other site,
unsigned) is refused with its own log line; only the broker's admin account may write it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from signaling_harness import eventually

from services.signaling.broker import (
    ADMIN_PASSWORD_FILE,
    ADMIN_USER,
    MosquittoBroker,
    start_loopback_broker,
)
from services.signaling.contacts import ContactBook, Right
from services.signaling.directory import (
    DIRECTORY_SIG_CONTEXT,
    MAX_DIRECTORY_BYTES,
    Directory,
    DirectoryEntry,
    DirectoryProblem,
    SiteDirectory,
)
from services.signaling.endpoint import SignalingEndpoint
from services.signaling.envelope import canonical
from services.signaling.errors import RejectReason, SignalingError
from services.signaling.identity import Identity, PublicKeys, b64u_decode, b64u_encode
from services.signaling.siteadmin import SiteBook, publish
from services.signaling.topics import SiteTopics
from services.signaling.transport import BrokerAddress, mqtt_transport

SITE = "block-7"
UNITS = ("door-a", "flat-12", "flat-13", "late")

# ------------------------------------------------------------------------- the test vector

VECTOR_ADMIN_SEED = "2853aa2ba549bbbb71ec8ea758e60f08c9125855f29d74721e328c274c79f79c"
VECTOR_ADMIN_PUBLIC = "FnrfvV8VsR_4RPufmgrP0-A1UKscw_KOkYaKhlls-uM"
VECTOR_SIGNED = (
    'callbox/v1 directory\n{"entries":[{"address":"door","flat":"","keys":{"dh":'
    '"D6e1g0f78k22fgi-uEUsPtEbxtCK_O6_sM_d62mTdFk","sign":"Re8Q6wNFzRfzfoLBwqMYMvHIYU86-F3cbexMrmrILaI"}'
    ',"name":"Haustür","rights":[],"role":"door"},{"address":"flat-12.kitchen","flat":"12","keys":'
    '{"dh":"mpcRvmHOoKOXv34c-w1UeBxM90_hi4SJTLepAEA8sxM","sign":"6vpaJgRxxa1qYOzvo-D3OOmsPbgDtq7XBrX1LjuJviA"}'
    ',"name":"Flat 12 kitchen","rights":["monitor","unlock"],"role":"indoor"}],'
    '"issued_at_ms":1767225600000,"site":"block-7","v":1,"version":3}'
)
VECTOR_SIG = (
    "oTM2jjBjoE2yWW0uErTVHO3UQcF4wE31sdK_3Dc_6Q7RP2uNxyavtm_zIdl1W6ZTA7YwPZDjUBkaJR-Yo9rzCQ"
)


def vector_directory() -> Directory:
    door = PublicKeys.from_json(
        {
            "dh": "D6e1g0f78k22fgi-uEUsPtEbxtCK_O6_sM_d62mTdFk",
            "sign": "Re8Q6wNFzRfzfoLBwqMYMvHIYU86-F3cbexMrmrILaI",
        }
    )
    kitchen = PublicKeys.from_json(
        {
            "dh": "mpcRvmHOoKOXv34c-w1UeBxM90_hi4SJTLepAEA8sxM",
            "sign": "6vpaJgRxxa1qYOzvo-D3OOmsPbgDtq7XBrX1LjuJviA",
        }
    )
    return Directory(
        site="block-7",
        version=3,
        issued_at_ms=1767225600000,
        entries=(
            DirectoryEntry("flat-12.kitchen", "Flat 12 kitchen", "indoor", "12", kitchen,
                           frozenset({Right.UNLOCK, Right.MONITOR})),
            DirectoryEntry("door", "Haustür", "door", "", door),
        ),
    )  # fmt: skip


def test_the_directory_vector_of_docs_protocol() -> None:
    """docs/protocol.md, "Site directory": the seed, the signed bytes, the signature."""
    seed = hashlib.sha256(b"callbox test vector: site admin").digest()
    assert seed.hex() == VECTOR_ADMIN_SEED
    admin = Ed25519PrivateKey.from_private_bytes(seed)
    assert b64u_encode(admin.public_key().public_bytes_raw()) == VECTOR_ADMIN_PUBLIC
    directory = vector_directory()
    assert directory.signed_bytes() == VECTOR_SIGNED.encode()
    # independently of Directory.sign: Ed25519 over the prefix and the canonical JSON
    assert b64u_encode(admin.sign(VECTOR_SIGNED.encode())) == VECTOR_SIG
    published = json.loads(directory.sign(admin))
    assert published["sig"] == VECTOR_SIG
    unsigned = {k: v for k, v in published.items() if k != "sig"}
    assert DIRECTORY_SIG_CONTEXT + canonical(unsigned) == VECTOR_SIGNED.encode()
    # a receiver accepts any member order
    shuffled = json.dumps(dict(reversed(list(published.items())))).encode()
    book = ContactBook()
    accepted = SiteDirectory(SITE, b64u_decode(VECTOR_ADMIN_PUBLIC), book).receive(shuffled)
    assert accepted == directory
    kitchen = book.get("flat-12.kitchen")
    assert kitchen is not None and kitchen.flat == "12" and kitchen.source == "directory"
    assert kitchen.rights == {Right.UNLOCK, Right.MONITOR}


def test_a_thousand_entries_fit_the_broker_packet() -> None:
    admin = Ed25519PrivateKey.generate()
    entries = tuple(
        DirectoryEntry(
            f"flat-{i:04d}.phone-1", f"Flat {i} phone", "web", f"{i:04d}",
            Identity.generate().public_keys, frozenset({Right.UNLOCK}),
        )
        for i in range(1000)
    )  # fmt: skip
    payload = Directory(SITE, 1, 0, entries).sign(admin)
    assert len(payload) < MAX_DIRECTORY_BYTES


# ------------------------------------------------------------------------- a real site


@dataclass
class Unit:
    """A signaling endpoint whose contacts come from the site directory only."""

    address: str
    identity: Identity
    endpoint: SignalingEndpoint
    directory: SiteDirectory


@dataclass
class Building:
    broker: MosquittoBroker
    admin: Ed25519PrivateKey
    state: Path
    identities: dict[str, Identity] = field(default_factory=dict)
    units: dict[str, Unit] = field(default_factory=dict)

    def login(self, address: str) -> BrokerAddress:
        settings = self.broker.settings
        if address == ADMIN_USER:
            password = (self.broker.files.directory / ADMIN_PASSWORD_FILE).read_text().strip()
        else:
            password = self.broker.files.passwords[address]
        return BrokerAddress(settings.host, settings.port, address, password)

    async def start_unit(self, address: str, admin_public: bytes | None = None) -> Unit:
        contacts = ContactBook()
        transport = mqtt_transport(site=SITE, address=address, broker=self.login(address))
        endpoint = SignalingEndpoint(
            transport=transport, identity=self.identities[address], contacts=contacts
        )
        directory = SiteDirectory(
            site=SITE,
            admin_key=admin_public or self.admin.public_key().public_bytes_raw(),
            contacts=contacts,
            state_file=self.state / address / "directory.json",
            own_address=address,
        )
        await asyncio.to_thread((self.state / address).mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(directory.load)
        endpoint.use_directory(directory)
        await endpoint.start()
        unit = Unit(address, self.identities[address], endpoint, directory)
        self.units[address] = unit
        return unit

    def entries(self, *addresses: str) -> tuple[DirectoryEntry, ...]:
        return tuple(
            DirectoryEntry(
                a, a.capitalize(), "door" if a.startswith("door") else "indoor",
                "" if a.startswith("door") else a.partition("-")[2], self.identities[a].public_keys,
            )
            for a in addresses
        )  # fmt: skip

    async def publish_raw(self, payload: bytes, as_user: str = ADMIN_USER) -> None:
        login = self.login(as_user)
        async with aiomqtt.Client(
            login.host,
            login.port,
            username=login.username,
            password=login.password,
            identifier=f"{as_user}-raw",
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as client:
            await client.publish(SiteTopics(SITE).directory(), payload, qos=1, retain=True)


@pytest.fixture
async def building(tmp_path: Path) -> AsyncIterator[Building]:
    broker = await start_loopback_broker(tmp_path, site=SITE, endpoints=UNITS)
    site = Building(broker, Ed25519PrivateKey.generate(), tmp_path / "state")
    site.identities = {a: Identity.generate() for a in UNITS}
    try:
        yield site
    finally:
        for unit in site.units.values():
            await unit.endpoint.close()
        await broker.close()


async def published(site: Building, *addresses: str, version: int = 1) -> bytes:
    payload = Directory(SITE, version, 1, site.entries(*addresses)).sign(site.admin)
    await site.publish_raw(payload)
    return payload


async def accepted(unit: Unit, version: int) -> None:
    await eventually(
        lambda: unit.directory.highest_version == version, f"{unit.address} at version {version}"
    )


async def refused(unit: Unit, problem: DirectoryProblem, count: int = 1) -> None:
    await eventually(
        lambda: unit.directory.refused.get(problem, 0) >= count,
        f"{unit.address} refusing a directory ({problem.value})",
    )


async def test_signed_directory_makes_contacts_and_a_late_unit_gets_it(
    building: Building, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "services.signaling.directory")
    door = await building.start_unit("door-a")
    flat = await building.start_unit("flat-12")
    assert door.endpoint.contacts.get("flat-12") is None
    await published(building, "door-a", "flat-12", "late")
    await accepted(door, 1)
    await accepted(flat, 1)
    contact = door.endpoint.contacts.get("flat-12")
    assert contact is not None and contact.source == "directory" and contact.flat == "12"
    assert contact.keys == building.identities["flat-12"].public_keys
    assert door.endpoint.contacts.get("door-a") is None  # not itself
    assert "site directory version 1 accepted: 3 entries" in caplog.text
    # a message between the two now verifies both ways
    received: list[str] = []

    async def got(message: object) -> None:
        received.append(getattr(message, "type", ""))

    flat.endpoint.on_message = got
    await door.endpoint.send("flat-12", "hangup", "c7Qm2xVd9LhZ-pR4_tNb0w", {})
    await eventually(lambda: received == ["hangup"], "flat-12 receiving door-a's message")
    # a unit that starts after the publish gets the retained directory
    late = await building.start_unit("late")
    await accepted(late, 1)
    assert late.endpoint.contacts.get("door-a") is not None


async def test_a_unit_follows_its_flat_and_the_doors_not_the_whole_directory(
    building: Building,
) -> None:
    flat = await building.start_unit("flat-12")
    door = await building.start_unit("door-a")
    neighbour = await building.start_unit("flat-13")
    await published(building, "door-a", "flat-12", "flat-13")
    for unit in (flat, door, neighbour):
        await accepted(unit, 1)
    assert flat.endpoint.contacts.get("flat-13") is not None  # trusted, but not followed
    assert flat.endpoint.needs() == {"door-a"}
    await eventually(lambda: flat.endpoint.presence.get("door-a") is True, "the door's presence")
    assert "flat-13" not in flat.endpoint.presence
    # a call to the neighbour follows it first: its retained presence arrives at once
    await flat.endpoint.follow(["flat-13"], timeout=5)
    assert flat.endpoint.is_online("flat-13") and "flat-13" in flat.endpoint.needs()
    # a newer directory puts flat-13 in flat 12: now it is followed
    moved = replace(building.entries("flat-13")[0], flat="12")
    entries = (*building.entries("door-a", "flat-12"), moved)
    await building.publish_raw(Directory(SITE, 2, 1, entries).sign(building.admin))
    await accepted(flat, 2)
    await eventually(lambda: flat.endpoint.presence.get("flat-13") is True, "the new flatmate")


async def test_each_bad_directory_is_refused_with_its_own_log_line(
    building: Building, caplog: pytest.LogCaptureFixture
) -> None:
    door = await building.start_unit("door-a")
    good = await published(building, "door-a", "flat-12", version=5)
    await accepted(door, 5)
    before = dict(door.endpoint.contacts.contacts)
    caplog.set_level(logging.WARNING, "services.signaling.directory")

    # tampered: flat-13 slipped into a signed document
    tampered = json.loads(good)
    tampered["version"] = 6
    tampered["entries"].append(building.entries("flat-13")[0].to_json())
    await building.publish_raw(json.dumps(tampered).encode())
    await refused(door, DirectoryProblem.BAD_SIGNATURE)
    # signed by another key
    other = Ed25519PrivateKey.generate()
    await building.publish_raw(Directory(SITE, 7, 1, building.entries("flat-13")).sign(other))
    await refused(door, DirectoryProblem.BAD_SIGNATURE, 2)
    # unsigned
    unsigned = Directory(SITE, 8, 1, building.entries("flat-13")).to_json()
    await building.publish_raw(json.dumps(unsigned).encode())
    await refused(door, DirectoryProblem.UNSIGNED)
    # another site's, signed by the right key
    foreign = Directory("block-8", 9, 1, building.entries("flat-13")).sign(building.admin)
    await building.publish_raw(foreign)
    await refused(door, DirectoryProblem.OTHER_SITE)
    # rolled back: an older and an equal version, both properly signed
    await published(building, "door-a", "flat-13", version=4)
    await refused(door, DirectoryProblem.ROLLBACK)
    equal = Directory(SITE, 5, 2, building.entries("door-a", "flat-13")).sign(building.admin)
    await building.publish_raw(equal)
    await refused(door, DirectoryProblem.ROLLBACK, 2)

    assert door.endpoint.contacts.contacts == before
    assert door.directory.highest_version == 5
    for line in (
        "directory refused (bad_signature): its signature does not verify",
        "directory refused (unsigned): it has no sig",
        "directory refused (other_site): it is for site 'block-8', this is 'block-7'",
        "directory refused (rollback): version 4 is not above the accepted 5",
        "directory refused (rollback): version 5 is not above the accepted 5",
    ):
        assert line in caplog.text


async def test_a_rollback_is_refused_after_a_restart_too(building: Building) -> None:
    door = await building.start_unit("door-a")
    old = await published(building, "door-a", "flat-12", "flat-13", version=1)
    await accepted(door, 1)
    await published(building, "door-a", "flat-12", version=2)
    await accepted(door, 2)
    await door.directory.flush()
    await door.endpoint.close()
    del building.units["door-a"]
    # the broker now holds the old directory again (someone replays it): refused at restart
    await building.publish_raw(old)
    door = await building.start_unit("door-a")
    assert door.directory.highest_version == 2  # restored from the state file
    assert door.endpoint.contacts.get("flat-12") is not None
    await refused(door, DirectoryProblem.ROLLBACK)
    assert door.endpoint.contacts.get("flat-13") is None


async def test_a_newer_directory_replaces_the_entries(
    building: Building, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "services.signaling")
    door = await building.start_unit("door-a")
    flat12 = await building.start_unit("flat-12")
    flat13 = await building.start_unit("flat-13")
    await published(building, "door-a", "flat-12")
    await accepted(door, 1)
    await accepted(flat13, 1)
    # flat-12 removed, flat-13 added
    await published(building, "door-a", "flat-13", version=2)
    await accepted(door, 2)
    assert door.endpoint.contacts.get("flat-12") is None
    assert door.endpoint.contacts.get("flat-13") is not None
    assert "flat-12 left the site directory: no longer a contact" in caplog.text
    # flat-12 still has the door (listed in version 2); its new call is refused by the door
    await accepted(flat12, 2)
    assert flat12.endpoint.contacts.get("door-a") is not None
    await flat12.endpoint.send("door-a", "invite", "c7Qm2xVd9LhZ-pR4_tNb0w", {})
    await eventually(
        lambda: door.endpoint.rejected[RejectReason.UNKNOWN_SENDER] >= 1,
        "door-a refusing the removed flat-12's invite",
    )
    # but a call in progress goes on: its call messages (no rights) both ways, for a while
    received: list[str] = []

    async def got(message: object) -> None:
        received.append(f"{getattr(message, 'sender', '')} {getattr(message, 'type', '')}")

    door.endpoint.on_message = got
    await flat12.endpoint.send("door-a", "hangup", "c7Qm2xVd9LhZ-pR4_tNb0w", {})
    await eventually(lambda: received == ["flat-12 hangup"], "door-a finishing the call")
    assert door.endpoint.contacts.get("flat-12") is None, "not pinned again by that message"
    await door.endpoint.send("flat-12", "hangup", "c7Qm2xVd9LhZ-pR4_tNb0w", {})
    with pytest.raises(SignalingError, match="not a pinned contact"):
        await door.endpoint.send("flat-12", "invite", "c7Qm2xVd9LhZ-pR4_tNb0x", {})
    leaving = door.endpoint.contacts.leaving("flat-12")
    assert leaving is not None and leaving.rights == frozenset()
    # and flat-13, newly listed, is trusted
    await flat13.endpoint.send("door-a", "hangup", "c7Qm2xVd9LhZ-pR4_tNb0w", {})
    await eventually(
        lambda: received == ["flat-12 hangup", "flat-13 hangup"], "door-a accepting flat-13"
    )


async def test_only_the_admin_account_may_write_the_directory(building: Building) -> None:
    door = await building.start_unit("door-a")
    book = SiteBook(SITE)
    for entry in building.entries("door-a", "flat-12"):
        book.add(entry)
    directory = await publish(building.login(ADMIN_USER), book, building.admin)
    assert directory.version == 1 and book.version == 1
    await accepted(door, 1)
    # an endpoint's account publishing a (well signed!) directory: the broker drops it
    forged = Directory(SITE, 2, 1, building.entries("door-a", "flat-13")).sign(building.admin)
    await building.publish_raw(forged, as_user="flat-12")
    # the admin's next publish goes through and is the next version: nothing got between
    book.add(building.entries("late")[0])
    directory = await publish(building.login(ADMIN_USER), book, building.admin)
    assert directory.version == 2
    await accepted(door, 2)
    assert door.endpoint.contacts.get("flat-13") is None
    assert door.endpoint.contacts.get("late") is not None
    assert door.directory.refused == {}


async def test_a_unit_pinning_another_admin_key_refuses_the_directory(building: Building) -> None:
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    door = await building.start_unit("door-a", admin_public=other)
    await published(building, "door-a", "flat-12")
    await refused(door, DirectoryProblem.BAD_SIGNATURE)
    assert door.endpoint.contacts.get("flat-12") is None


def test_config_contacts_win_over_the_directory() -> None:
    from services.signaling.contacts import Contact

    mine, theirs = Identity.generate().public_keys, Identity.generate().public_keys
    book = ContactBook()
    book.add(Contact("flat-12", mine, name="Pinned here"))
    entry = DirectoryEntry("flat-12", "From directory", "indoor", "12", theirs)
    book.use_directory([entry.contact()])
    contact = book.get("flat-12")
    assert contact is not None and contact.keys == mine and contact.source == "config"
    book.use_directory([])
    assert book.get("flat-12") is not None  # a config contact never leaves with the directory


def test_peers_of_grows_with_the_flat_and_the_doors_not_the_site() -> None:
    keys = iter(Identity.generate().public_keys for _ in range(8))
    directory = Directory(
        SITE,
        1,
        0,
        (
            DirectoryEntry("door-a", "A", "door", "", next(keys)),
            DirectoryEntry("door-b", "B", "door", "", next(keys)),
            DirectoryEntry("f12-hall", "H", "indoor", "12", next(keys)),
            DirectoryEntry("f12-phone", "P", "web", "12", next(keys)),
            DirectoryEntry("f13-hall", "H", "indoor", "13", next(keys)),
            DirectoryEntry("f13-phone", "P", "web", "13", next(keys)),
        ),
    )
    assert directory.peers_of("door-a", ["flat:12"]) == {"f12-hall", "f12-phone"}
    assert directory.peers_of("door-a", ["flat:12", "f13-hall"]) == {
        "f12-hall",
        "f12-phone",
        "f13-hall",
    }
    assert directory.peers_of("f12-phone") == {"door-a", "door-b", "f12-hall"}
    assert directory.peers_of("nobody") == frozenset()
    seen: list[int] = []
    site_directory = SiteDirectory(SITE, b"", ContactBook())
    site_directory.watch(lambda d: seen.append(d.version))
    site_directory._use(directory)
    assert seen == [1]
