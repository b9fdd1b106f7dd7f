"""The signed profile: what it proves, what it refuses, and the vector in docs/protocol.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.signaling.envelope import canonical
from services.signaling.errors import SignalingError
from services.signaling.identity import Identity, b64u_encode
from services.signaling.profile import read_profile, signed_bytes, signed_profile

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors" / "envelope_v1.json"
PROTOCOL_MD = ROOT / "docs" / "protocol.md"


def vector_identity() -> Identity:
    """The sender of the protocol's test vectors."""
    sender = json.loads(VECTORS.read_text())["sender"]
    return Identity.from_private_bytes(
        bytes.fromhex(sender["sign_private_hex"]), bytes.fromhex(sender["dh_private_hex"])
    )


def test_protocol_md_holds_the_profile_vector() -> None:
    profile = signed_profile(vector_identity(), "door", "Haustür", "door")
    md = PROTOCOL_MD.read_text(encoding="utf-8")
    assert signed_bytes("door", profile).hex() in md
    assert canonical(profile).decode() in md
    assert read_profile("door", canonical(profile)).signed


def test_a_signed_profile_reads_back_signed_with_its_keys() -> None:
    identity = Identity.generate()
    profile = read_profile(
        "flat", json.dumps(signed_profile(identity, "flat", "F", "indoor")).encode()
    )
    assert profile.signed and profile.keys == identity.public_keys
    assert profile.fields["name"] == "F"


def test_an_unsigned_profile_reads_back_unsigned() -> None:
    keys = Identity.generate().public_keys
    profile = read_profile("phone", json.dumps({"name": "P", "keys": keys.to_json()}).encode())
    assert not profile.signed and profile.keys == keys


@pytest.mark.parametrize("change", ["address", "name", "signature", "garbage signature"])
def test_a_forged_profile_is_refused(change: str) -> None:
    identity = Identity.generate()
    profile = signed_profile(identity, "flat", "Flat", "indoor")
    address = "flat"
    if change == "address":
        address = "door"  # copied onto another endpoint's topic
    elif change == "name":
        profile["name"] = "Evil"
    elif change == "signature":
        profile["sig"] = b64u_encode(Identity.generate().sign(signed_bytes("flat", profile)))
    else:
        profile["sig"] = "not base64url!"
    with pytest.raises(SignalingError, match="profile of"):
        read_profile(address, json.dumps(profile).encode())
