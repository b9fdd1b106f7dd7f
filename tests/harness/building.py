"""A building of signaling endpoints on one site broker, for the scale test and benchmark.

:func:`building` lays out N addresses as a building is: door stations, one per entrance of
about :data:`PER_ENTRANCE` endpoints, and flats of :data:`FLAT_SIZE` (an indoor unit and two
phones). Each flat member's contacts are its flatmates and its entrance's door; a door's
contacts are the members of its entrance's flats. So what one endpoint needs does not grow
with the building, as on a real site.

:func:`building_endpoint` builds the real :class:`SignalingEndpoint` of one address: real
Ed25519/X25519 keys (derived from the address, so that every process of a benchmark knows
every public key without passing them around), the generated broker's password, its own
MQTT connection from its own loopback source address (on a site every unit is a device with
an address of its own; the broker's fronts limit connections per source).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.signaling.base import Inbound
from services.signaling.contacts import Contact, ContactBook
from services.signaling.endpoint import InviteRateLimit, SignalingEndpoint
from services.signaling.identity import Identity
from services.signaling.transport import BrokerAddress, mqtt_transport


def unit_toml(
    site: str, address: str, role: str, port: int, password: str, state: Path, admin_key: str
) -> str:
    """callbox.toml of a building's unit on the loopback broker, with no ``[[contacts]]``.

    The site directory's admin key is pinned; a door station rings flat 12.
    """
    targets = '["flat:12"]' if role == "door" else "[]"
    return f"""
role = "{role}"
address = "{address}"
site = "{site}"
board = "sim"
state_dir = "{state}"
targets = {targets}

[broker]
host = "127.0.0.1"
port = {port}
password = "{password}"

[network]
addresses = ["127.0.0.1"]

[directory]
admin_key = "{admin_key}"
"""


FLAT_SIZE = 3
"""Endpoints per flat: an indoor unit and two phones."""
PER_ENTRANCE = 100
"""Endpoints per door station (an entrance of about 33 flats)."""


@dataclass(frozen=True)
class Building:
    """Who is in the building and whom each one needs (its contacts)."""

    site: str
    doors: tuple[str, ...]
    needs: dict[str, tuple[str, ...]] = field(hash=False)

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every endpoint, doors first."""
        return tuple(self.needs)

    def members(self) -> tuple[str, ...]:
        """Every endpoint that is not a door station."""
        return tuple(a for a in self.needs if a not in self.doors)


def building(endpoints: int, site: str = "tower") -> Building:
    """A building of ``endpoints`` addresses (see the module's docstring)."""
    doors = tuple(f"door-{d}" for d in range(max(1, endpoints // PER_ENTRANCE)))
    members = [f"flat-{i // FLAT_SIZE}-{i % FLAT_SIZE}" for i in range(endpoints - len(doors))]
    needs: dict[str, list[str]] = {door: [] for door in doors}
    for start in range(0, len(members), FLAT_SIZE):
        flat = members[start : start + FLAT_SIZE]
        door = doors[(start // FLAT_SIZE) % len(doors)]
        needs[door].extend(flat)
        for member in flat:
            needs[member] = [*(m for m in flat if m != member), door]
    return Building(site, doors, {a: tuple(n) for a, n in needs.items()})


def identity_of(address: str) -> Identity:
    """The endpoint's keys, derived from its address (every process derives the same)."""
    return Identity.from_private_bytes(
        hashlib.sha256(b"sign:" + address.encode()).digest(),
        hashlib.sha256(b"dh:" + address.encode()).digest(),
    )


def source_address(index: int) -> str:
    """A loopback address of its own for endpoint number ``index`` (127.1.0.1 onwards)."""
    return f"127.1.{index // 250}.{1 + index % 250}"


@dataclass
class Announcements:
    """Presence and profile messages one endpoint received, per connection."""

    counts: list[int] = field(default_factory=list)

    def connecting(self) -> None:
        """A new connection: count from zero."""
        self.counts.append(0)

    def saw(self, inbound: Inbound) -> None:
        """One message arrived."""
        if inbound.kind != "inbox" and self.counts:
            self.counts[-1] += 1


def building_endpoint(
    layout: Building,
    address: str,
    broker: BrokerAddress,
    announcements: Announcements | None = None,
) -> SignalingEndpoint:
    """The real signaling endpoint of ``address``, its contacts pinned (not started)."""
    contacts = ContactBook()
    for peer in layout.needs[address]:
        contacts.add(Contact(address=peer, keys=identity_of(peer).public_keys))
    transport = mqtt_transport(site=layout.site, address=address, broker=broker)
    endpoint = SignalingEndpoint(
        transport=transport,
        identity=identity_of(address),
        contacts=contacts,
        role="door" if address in layout.doors else "indoor",
        invite_limit=InviteRateLimit(count=1000),
    )
    if announcements is not None:
        _count(endpoint, announcements)
    return endpoint


def _count(endpoint: SignalingEndpoint, announcements: Announcements) -> None:
    transport = endpoint.transport
    admit = transport.admit
    connecting = transport.on_connecting
    assert admit is not None and connecting is not None

    def counted(inbound: Inbound) -> bool:
        announcements.saw(inbound)
        return admit(inbound)

    def on_connecting() -> None:
        announcements.connecting()
        connecting()

    transport.admit = counted
    transport.on_connecting = on_connecting


def present(endpoint: SignalingEndpoint) -> bool:
    """True when the endpoint is connected and sees every address it needs online."""
    return endpoint.transport.connected.is_set() and all(
        endpoint.is_online(peer) for peer in endpoint.needs()
    )


Check = Callable[[SignalingEndpoint], bool]
