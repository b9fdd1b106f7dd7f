"""A whole site on one machine: a broker and endpoints on simulated boards.

The site the tests and benchmarks share (``callbox demo`` runs ``DeviceApp`` units of
device/simulator instead): it generates the broker configuration, starts mosquitto on
loopback, gives every endpoint an identity, pins every endpoint's keys in every other's
contacts (as an installer does with ``callbox keys trust``) and wires each endpoint's
Call API with ``device.daemon.compose_calls``, the factory of ``callbox run``. Given a
transport factory instead (the tests' in-memory broker), it starts no mosquitto and the
endpoints talk through that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from device.daemon import compose_calls
from hal.board import Board, build_sim_board
from services.callapi.calls import Calls
from services.callapi.listeners import IncomingListener
from services.callapi.properties import CallProperties
from services.media.aec import make_echo_canceller
from services.media.ice import LOOPBACK, IcePolicy
from services.signaling.base import SignalingTransport
from services.signaling.broker import (
    BrokerSettings,
    MosquittoBroker,
    start_loopback_broker,
)
from services.signaling.contacts import Contact, ContactBook, Right
from services.signaling.endpoint import InviteRateLimit, SignalingEndpoint
from services.signaling.errors import SignalingError
from services.signaling.identity import Identity
from services.signaling.transport import BrokerAddress, mqtt_transport

TransportFactory = Callable[[str], SignalingTransport]
"""Builds the (not yet started) transport of the endpoint with the given address."""


@dataclass(frozen=True)
class EndpointSpec:
    """One endpoint of a simulated site."""

    address: str
    role: str = "indoor"
    name: str = ""
    tone_hz: float = 440.0
    ice: IcePolicy | None = None  # where its ICE host candidates come from (site default)
    echo_cancellation: bool = False


@dataclass
class SimEndpoint:
    """A running endpoint: its board, identity, signaling and Call API."""

    spec: EndpointSpec
    board: Board
    identity: Identity
    signaling: SignalingEndpoint
    calls: Calls


@dataclass
class SimSite:
    """A broker (or a transport factory) and endpoints on loopback, ready to call each other."""

    site: str
    directory: Path
    mosquitto: MosquittoBroker | None
    transports: TransportFactory | None = None  # instead of mosquitto
    endpoints: dict[str, SimEndpoint] = field(default_factory=dict)
    ice: IcePolicy = LOOPBACK
    invites_per_10s: int = 5

    def __getitem__(self, address: str) -> SimEndpoint:
        return self.endpoints[address]

    @property
    def broker(self) -> MosquittoBroker:
        """The site's mosquitto; SignalingError on a site built on another transport."""
        if self.mosquitto is None:
            raise SignalingError(f"site {self.site} runs without mosquitto")
        return self.mosquitto

    @property
    def broker_settings(self) -> BrokerSettings:
        """The configuration of the site's mosquitto."""
        return self.broker.settings

    def transport_for(self, address: str) -> SignalingTransport:
        """A new transport for ``address``: the site's factory's, or an MQTT login."""
        if self.transports is not None:
            return self.transports(address)
        broker = self.broker_address(address)
        return mqtt_transport(site=self.site, address=address, broker=broker)

    def broker_address(self, address: str, password: str | None = None) -> BrokerAddress:
        """How ``address`` logs in to this site's broker."""
        return BrokerAddress(
            host=self.broker_settings.host,
            port=self.broker_settings.port,
            username=address,
            password=password or self.broker.files.passwords[address],
        )

    def build_endpoint(
        self,
        spec: EndpointSpec,
        identities: dict[str, Identity],
        defaults: CallProperties | None = None,
    ) -> SimEndpoint:
        """Wire one endpoint (not started) with every other endpoint pinned as a contact."""
        identity = identities[spec.address]
        contacts = ContactBook()
        for address, other in identities.items():
            if address != spec.address:
                contacts.add(
                    Contact(
                        address=address,
                        keys=other.public_keys,
                        name=address,
                        rights=frozenset({Right.UNLOCK, Right.MONITOR}),
                    )
                )
        board = build_sim_board(spec.address, tone_hz=spec.tone_hz)
        calls = compose_calls(
            role=spec.role,
            name=spec.name or spec.address,
            transport=self.transport_for(spec.address),
            identity=identity,
            contacts=contacts,
            board=board,
            ice=spec.ice or self.ice,
            defaults=defaults,
            echo_canceller=make_echo_canceller(48000) if spec.echo_cancellation else None,
            invite_limit=InviteRateLimit(count=self.invites_per_10s, period_s=10.0),
        )
        return SimEndpoint(spec, board, identity, calls.signaling, calls)

    async def reconnect(
        self, address: str, listener: Callable[[Calls], IncomingListener] | None = None
    ) -> SimEndpoint:
        """Bring ``address`` back: a new endpoint with the same keys (a phone reopening its page).

        ``listener`` makes the app's listener, set before the endpoint goes online (an
        invite may be waiting for it).
        """
        old = self.endpoints[address]
        await old.calls.close()
        await old.board.close()
        identities = {a: e.identity for a, e in self.endpoints.items()}
        endpoint = self.build_endpoint(old.spec, identities)
        self.endpoints[address] = endpoint
        if listener is not None:
            endpoint.calls.set_listener(listener(endpoint.calls))
        await endpoint.calls.start()
        return endpoint

    async def close(self) -> None:
        """Stop every endpoint, then the broker; safe to call twice."""
        for endpoint in self.endpoints.values():
            await endpoint.calls.close()
            await endpoint.board.close()
        if self.mosquitto is not None:
            await self.mosquitto.close()


async def start_site(
    directory: Path,
    specs: list[EndpointSpec],
    *,
    site: str = "sim",
    extra_accounts: tuple[str, ...] = (),
    defaults: CallProperties | None = None,
    invites_per_10s: int = 5,
    transports: TransportFactory | None = None,
) -> SimSite:
    """Start a broker on a free loopback port and every endpoint of ``specs``.

    ``extra_accounts`` get broker passwords but no endpoint (tests use them as
    intruders or raw MQTT clients). ``invites_per_10s`` is each endpoint's per-sender
    invite limit (a benchmark that calls in a loop raises it). With ``transports``
    no mosquitto starts: every endpoint gets the transport it builds (the tests'
    in-memory broker), and there are no broker accounts to add.
    """
    broker = None
    if transports is None:
        accounts = tuple(s.address for s in specs) + extra_accounts
        broker = await start_loopback_broker(
            directory, site=site, endpoints=accounts, websockets=True
        )
    elif extra_accounts:
        raise SignalingError("extra broker accounts need mosquitto, not a transport factory")
    sim = SimSite(
        site=site,
        directory=directory,
        mosquitto=broker,
        transports=transports,
        invites_per_10s=invites_per_10s,
    )
    identities = {s.address: Identity.generate() for s in specs}
    try:
        for spec in specs:
            endpoint = sim.build_endpoint(spec, identities, defaults)
            sim.endpoints[spec.address] = endpoint
            await endpoint.calls.start()
        for endpoint in sim.endpoints.values():
            for other in sim.endpoints:
                if other != endpoint.spec.address:
                    await endpoint.signaling.wait_presence(other, True, timeout=5)
    except BaseException:
        await sim.close()
        raise
    return sim
