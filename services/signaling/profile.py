"""The retained profile: name, role, public keys, and a signature by the keys it advertises.

Anyone who holds an endpoint's broker login can publish on that endpoint's profile topic, so
a profile proves nothing by being there. Its signature (Ed25519, by the signing key the
profile itself advertises, over the address and every other field) proves that whoever
published it holds the private key of what it advertises: only such a profile can tell a
receiver that a pinned contact now has another key ("key changed"). An unsigned profile
(from an older release) still names keys for first-use pinning and pairing by fingerprint,
whose own checks (a verified message, a person comparing fingerprints) do not rest on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.signaling.envelope import SIG_SIZE, canonical
from services.signaling.errors import SignalingError
from services.signaling.identity import Identity, PublicKeys, b64u_decode, b64u_encode

PROFILE_SIG_CONTEXT: Final = b"callbox/v1 profile\n"
"""Prefix of the bytes a profile's signature covers: then the address, a newline, and the
canonical JSON of the profile without ``sig``."""


@dataclass(frozen=True)
class Profile:
    """A profile as received: its fields, the keys it advertises, and how it is signed."""

    fields: dict[str, Any]
    keys: PublicKeys
    signed: bool
    """True when ``sig`` is present and verifies with the advertised signing key."""


def signed_bytes(address: str, fields: dict[str, Any]) -> bytes:
    """The bytes a profile's signature covers."""
    unsigned = {k: v for k, v in fields.items() if k != "sig"}
    return PROFILE_SIG_CONTEXT + address.encode() + b"\n" + canonical(unsigned)


def signed_profile(identity: Identity, address: str, name: str, role: str) -> dict[str, Any]:
    """The profile ``address`` publishes: name, role, keys, signed by ``identity``."""
    fields: dict[str, Any] = {"name": name, "role": role, "keys": identity.public_keys.to_json()}
    fields["sig"] = b64u_encode(identity.sign(signed_bytes(address, fields)))
    return fields


def read_profile(address: str, payload: bytes) -> Profile:
    """Parse ``address``'s profile; SignalingError names what is wrong with it.

    A profile with a ``sig`` that does not verify is refused (a forgery), one without ``sig``
    is returned with ``signed`` False.
    """
    try:
        fields = json.loads(payload)
    except (ValueError, RecursionError) as err:
        raise SignalingError(f"profile of {address} is not JSON: {err}") from err
    if not isinstance(fields, dict):
        raise SignalingError(f"profile of {address} is not a JSON object")
    if "keys" not in fields:
        raise SignalingError(f"profile of {address} advertises no keys")
    keys = PublicKeys.from_json(fields["keys"])
    if "sig" not in fields:
        return Profile(fields, keys, signed=False)
    sig = fields["sig"]
    try:
        raw = b64u_decode(sig) if isinstance(sig, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != SIG_SIZE:
        raise SignalingError(f"profile of {address}: sig is not {SIG_SIZE} base64url bytes")
    try:
        Ed25519PublicKey.from_public_bytes(keys.sign).verify(raw, signed_bytes(address, fields))
    except (InvalidSignature, ValueError) as err:
        raise SignalingError(
            f"profile of {address}: its signature does not verify with the key it advertises "
            f"({keys.fingerprint()}): a forgery"
        ) from err
    except SignalingError as err:  # canonical(): a value a browser could not reproduce
        raise SignalingError(f"profile of {address}: {err}") from err
    return Profile(fields, keys, signed=True)
