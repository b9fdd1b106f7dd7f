"""The pairing link that puts a browser phone into a site (docs/operations.md, "Phones").

``callbox keys pair-web NAME`` prints it; the page reads it from the URL fragment (which
browsers never send to a server). It carries the site, the broker's WebSocket URL, the
browser's broker login, the fingerprints of the devices it may pin (the page pins a
device only when the keys its profile advertises have that fingerprint) and the SHA-256
fingerprint of the site CA, which the page shows so that the resident can compare it with the
CA installed on the phone (a page cannot pin a CA itself: the browser's trust store decides).
When the site has a VAPID key (``callbox push init``) the link carries its public key as
``push_key``: the ``applicationServerKey`` the page gives ``pushManager.subscribe``. When the
unit pins a site admin key (``[directory] admin_key``) the link carries it as ``admin_key``:
the page then trusts the door stations and flat members of the signed site directory it
verifies with that key. Both are optional members of version 1 (older links stay valid).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from hal.errors import CallboxError
from services.signaling.directory import admin_public_key
from services.signaling.envelope import canonical
from services.signaling.errors import SignalingError
from services.signaling.identity import b64u_decode, b64u_encode
from services.signaling.siteca import normalize_fingerprint
from services.signaling.topics import valid_name

PAIRING_VERSION = 1


class PairingError(CallboxError, ValueError):
    """A pairing link or payload that is not well formed."""


@dataclass(frozen=True)
class PairingPeer:
    """A device the phone may call and be called by, with its key fingerprint."""

    address: str
    name: str
    role: str
    fingerprint: str


@dataclass(frozen=True)
class Pairing:
    """Everything a browser phone needs to join a site."""

    site: str
    address: str
    name: str
    broker: str
    username: str
    password: str
    peers: tuple[PairingPeer, ...] = field(default_factory=tuple)
    ca: str = ""
    """The site CA's SHA-256 fingerprint ("AB:CD:..."), "" when the broker has a certificate
    of another authority."""
    push_key: str = ""
    """The site's VAPID public key (b64u of the 65-byte P-256 point), "" without Web Push."""
    admin_key: str = ""
    """The site admin's Ed25519 public key (b64u, ``[directory] admin_key``), "" without a
    site directory: with it the page follows the signed directory it verifies."""

    def __post_init__(self) -> None:
        valid_name("site", self.site)
        if self.ca and normalize_fingerprint(self.ca) != self.ca:
            raise PairingError(f"site CA fingerprint {self.ca!r} is not 32 hex pairs with ':'")
        valid_name("phone address", self.address)
        if not self.broker.startswith(("ws://", "wss://")):
            raise PairingError(f"broker URL {self.broker!r} must start with ws:// or wss://")
        for peer in self.peers:
            valid_name("peer address", peer.address)
        if self.push_key and not _is_p256_point(self.push_key):
            raise PairingError(f"push_key {self.push_key!r} is not a b64u P-256 public key")
        if self.admin_key:
            try:
                admin_public_key(self.admin_key)
            except SignalingError as err:
                raise PairingError(f"admin_key: {err}") from err

    def to_json(self) -> dict[str, Any]:
        """The payload object of the link."""
        return {
            "v": PAIRING_VERSION,
            "site": self.site,
            "address": self.address,
            "name": self.name,
            "broker": self.broker,
            "username": self.username,
            "password": self.password,
            "peers": [
                {"address": p.address, "name": p.name, "role": p.role, "fingerprint": p.fingerprint}
                for p in self.peers
            ],
            "ca": self.ca,
            **({"push_key": self.push_key} if self.push_key else {}),
            **({"admin_key": self.admin_key} if self.admin_key else {}),
        }

    def url(self, base: str) -> str:
        """``base`` (the page's URL) with the payload in the fragment."""
        return f"{base.rstrip('/')}/#pair={b64u_encode(canonical(self.to_json()))}"


def parse_pairing_url(url: str) -> Pairing:
    """The pairing in a link made by :meth:`Pairing.url`; PairingError names what is wrong."""
    _, marker, encoded = url.partition("#pair=")
    if not marker:
        raise PairingError("not a pairing link: no #pair= fragment")
    try:
        data = json.loads(b64u_decode(encoded))
        if data.get("v") != PAIRING_VERSION:
            raise PairingError(f"pairing version {data.get('v')!r} is not {PAIRING_VERSION}")
        peers = tuple(PairingPeer(**p) for p in data["peers"])
        return Pairing(
            site=data["site"],
            address=data["address"],
            name=data["name"],
            broker=data["broker"],
            username=data["username"],
            password=data["password"],
            peers=peers,
            ca=data.get("ca", ""),
            push_key=data.get("push_key", ""),
            admin_key=data.get("admin_key", ""),
        )
    except PairingError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise PairingError(f"bad pairing payload: {err}") from err


def _is_p256_point(text: str) -> bool:
    try:
        raw = b64u_decode(text)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        return False
    return len(raw) == 65
