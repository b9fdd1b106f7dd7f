"""Envelope v1: test vectors, round trip and every rejection the envelope layer raises."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.signaling.envelope import (
    HKDF_INFO,
    MAX_ENVELOPE_SIZE,
    Envelope,
    canonical,
    is_valid_address,
    is_valid_call_id,
    parse,
    seal,
    verify_and_open,
)
from services.signaling.errors import RejectedMessage, RejectReason, SignalingError
from services.signaling.identity import Identity, PublicKeys, b64u_decode, b64u_encode

ROOT = Path(__file__).resolve().parents[2]
VECTORS_DIR = ROOT / "tests" / "vectors"
VECTORS_FILE = VECTORS_DIR / "envelope_v1.json"
PROTOCOL_MD = ROOT / "docs" / "protocol.md"

HEADER_FIELDS = ("type", "call_id", "from", "to", "ts", "nonce")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    return data


def _identity(party: dict[str, Any]) -> Identity:
    return Identity.from_private_bytes(
        bytes.fromhex(party["sign_private_hex"]), bytes.fromhex(party["dh_private_hex"])
    )


@pytest.fixture(scope="module")
def sender(vectors: dict[str, Any]) -> Identity:
    return _identity(vectors["sender"])


@pytest.fixture(scope="module")
def recipient(vectors: dict[str, Any]) -> Identity:
    return _identity(vectors["recipient"])


@pytest.fixture(scope="module")
def envelope_bytes(vectors: dict[str, Any]) -> bytes:
    text: str = vectors["envelope"]
    return text.encode("utf-8")


_DELETE: Any = object()


def _mutated(data: bytes, change: dict[str, Any], *, body: bool = False) -> bytes:
    """Return the envelope with `change` applied to its top level (or to its body)."""
    obj = json.loads(data)
    target = obj["body"] if body else obj
    for key, value in change.items():
        if value is _DELETE:
            del target[key]
        else:
            target[key] = value
    return json.dumps(obj).encode()


def _reason(excinfo: pytest.ExceptionInfo[RejectedMessage]) -> RejectReason:
    return excinfo.value.reason


# --------------------------------------------------------------------------- test vectors


def test_seal_reproduces_the_vector_byte_for_byte(
    vectors: dict[str, Any], sender: Identity, envelope_bytes: bytes
) -> None:
    inputs = vectors["inputs"]
    sealed = seal(
        sender,
        type=inputs["type"],
        call_id=inputs["call_id"],
        sender=inputs["from"],
        recipient=inputs["to"],
        recipient_keys=PublicKeys.from_json(vectors["recipient"]["public_keys"]),
        body=inputs["body"],
        ts_ms=inputs["ts"],
        nonce=bytes.fromhex(inputs["nonce_hex"]),
        ephemeral=X25519PrivateKey.from_private_bytes(
            bytes.fromhex(inputs["ephemeral_private_hex"])
        ),
        iv=bytes.fromhex(inputs["iv_hex"]),
    )
    assert sealed == envelope_bytes


def test_vector_intermediate_values(vectors: dict[str, Any], envelope_bytes: bytes) -> None:
    derived, inputs = vectors["derived"], vectors["inputs"]
    env = parse(envelope_bytes)
    assert env.header() == derived["header"]
    assert canonical(env.header()).decode() == derived["canonical_header"]
    assert env.aad().hex() == derived["aad_hex"]
    assert env.signed_bytes().hex() == derived["signed_bytes_hex"]
    assert env.signed_bytes() == b"callbox/v1 sig\n" + derived["canonical_signed"].encode()
    assert canonical(inputs["body"]).decode() == derived["canonical_body"]
    assert env.epk.hex() == derived["ephemeral_public_hex"]
    assert b64u_encode(env.ct) == derived["ct_b64u"]
    assert b64u_encode(env.sig) == derived["sig_b64u"]
    assert HKDF_INFO.hex() == derived["hkdf_info_hex"]
    assert env.to_bytes() == envelope_bytes


def test_vector_hkdf_key_and_shared_secret(
    vectors: dict[str, Any], recipient: Identity, envelope_bytes: bytes
) -> None:
    derived = vectors["derived"]
    env = parse(envelope_bytes)
    shared = recipient.dh(env.epk)
    assert shared.hex() == derived["shared_secret_hex"]
    salt = env.epk + recipient.public_keys.dh
    assert salt.hex() == derived["hkdf_salt_hex"]
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=HKDF_INFO).derive(shared)
    assert key.hex() == derived["body_key_hex"]


def test_verify_and_open_the_vector(
    vectors: dict[str, Any], recipient: Identity, envelope_bytes: bytes
) -> None:
    env = parse(envelope_bytes)
    sender_keys = PublicKeys.from_json(vectors["sender"]["public_keys"])
    body = verify_and_open(env, sender_keys=sender_keys, recipient=recipient)
    assert body == vectors["inputs"]["body"]
    assert (env.type, env.call_id, env.sender, env.recipient, env.ts) == (
        "invite",
        vectors["inputs"]["call_id"],
        "door",
        "flat-12.kitchen",
        vectors["inputs"]["ts"],
    )


def test_canonical_json_vectors(vectors: dict[str, Any]) -> None:
    for case in vectors["canonical_json"]["cases"]:
        assert canonical(json.loads(case["input"])) == case["canonical"].encode("utf-8")
    for text in vectors["canonical_json"]["refused"]:
        with pytest.raises(SignalingError):
            canonical(json.loads(text))


def test_generator_agrees_with_the_json_file() -> None:
    result = subprocess.run(
        [sys.executable, str(VECTORS_DIR / "generate.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _leaves(obj: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        return [leaf for key, value in obj.items() for leaf in _leaves(value, f"{path}.{key}")]
    if isinstance(obj, list):
        return [leaf for i, value in enumerate(obj) for leaf in _leaves(value, f"{path}[{i}]")]
    return [(path, obj)]


def test_protocol_md_contains_every_vector_value(vectors: dict[str, Any]) -> None:
    md = PROTOCOL_MD.read_text(encoding="utf-8")
    missing = []
    for path, value in _leaves(vectors):
        if isinstance(value, str):
            # Strings with control characters (the SDP) appear in their JSON-escaped form.
            text = value if value.isprintable() else json.dumps(value, ensure_ascii=False)[1:-1]
        else:
            text = json.dumps(value)
        if text not in md:
            missing.append(path)
    for key in ("header",):
        if canonical(vectors["derived"][key]).decode() not in md:
            missing.append(f"derived.{key} (canonical)")
    if canonical(vectors["inputs"]["body"]).decode() not in md:
        missing.append("inputs.body (canonical)")
    for party in ("sender", "recipient"):
        if canonical(vectors[party]["public_keys"]).decode() not in md:
            missing.append(f"{party}.public_keys (canonical)")
    assert not missing, f"docs/protocol.md lacks: {missing}"


def test_protocol_md_has_its_sections_in_order() -> None:
    md = PROTOCOL_MD.read_text(encoding="utf-8")
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    for name in (
        "## Envelope",
        "## Canonical JSON",
        "## Signature",
        "## Body encryption",
        "## Identity and fingerprints",
        "## Safety number",
        "## Rejection reasons",
        "## Messages",
        "## Test vectors",
    ):
        assert name in headings, name
    assert headings.index("## Messages") > headings.index("## Rejection reasons")
    assert headings.index("## Test vectors") > headings.index("## Messages")


# --------------------------------------------------------------------------- round trip


def test_round_trip_with_fresh_identities() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    body: dict[str, Any] = {"sdp": "v=0\r\n", "video": False, "n": [1, -2, None], "é": "ü"}
    data = seal(
        alice,
        type="answer",
        call_id="call_1",
        sender="alice",
        recipient="bob",
        recipient_keys=bob.public_keys,
        body=body,
    )
    env = parse(data)
    assert (env.v, env.type, env.call_id, env.sender, env.recipient) == (
        1,
        "answer",
        "call_1",
        "alice",
        "bob",
    )
    assert len(env.nonce) == 16 and len(env.iv) == 12 and len(env.epk) == 32
    assert verify_and_open(env, sender_keys=alice.public_keys, recipient=bob) == body


def test_every_seal_uses_fresh_nonce_iv_and_ephemeral_key() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    kwargs: dict[str, Any] = {
        "type": "ack",
        "call_id": "c",
        "sender": "a",
        "recipient": "b",
        "recipient_keys": bob.public_keys,
        "body": {},
        "ts_ms": 1,
    }
    one, two = parse(seal(alice, **kwargs)), parse(seal(alice, **kwargs))
    assert one.nonce != two.nonce and one.iv != two.iv and one.epk != two.epk


def test_default_timestamp_is_now_in_milliseconds() -> None:
    import time

    alice, bob = Identity.generate(), Identity.generate()
    before = time.time_ns() // 1_000_000
    data = seal(
        alice,
        type="ack",
        call_id="c",
        sender="a",
        recipient="b",
        recipient_keys=bob.public_keys,
        body={},
    )
    after = time.time_ns() // 1_000_000
    assert before <= parse(data).ts <= after


def test_any_json_serialization_of_the_envelope_is_accepted(
    vectors: dict[str, Any], recipient: Identity, envelope_bytes: bytes
) -> None:
    obj = json.loads(envelope_bytes)
    reordered = {key: obj[key] for key in reversed(list(obj))}
    data = json.dumps(reordered, indent=2).encode()
    sender_keys = PublicKeys.from_json(vectors["sender"]["public_keys"])
    body = verify_and_open(parse(data), sender_keys=sender_keys, recipient=recipient)
    assert body == vectors["inputs"]["body"]


# --------------------------------------------------------------------------- parse rejections


def test_oversize_is_checked_before_parsing(envelope_bytes: bytes) -> None:
    with pytest.raises(RejectedMessage) as excinfo:
        parse(b"{" * (MAX_ENVELOPE_SIZE + 1))
    assert _reason(excinfo) is RejectReason.OVERSIZE
    with pytest.raises(RejectedMessage) as excinfo:
        parse(envelope_bytes, max_size=len(envelope_bytes) - 1)
    assert _reason(excinfo) is RejectReason.OVERSIZE
    assert parse(envelope_bytes, max_size=len(envelope_bytes)).to_bytes() == envelope_bytes


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"\xff\xfe{}",
        b'{"v": 1,}',
        b'{"v": 1, "v": 1}',
        b'{"v": NaN}',
        b'{"v": Infinity}',
        b"[" * 100_000,
    ],
    ids=["empty", "truncated", "not-utf8", "trailing-comma", "dup-key", "nan", "inf", "deep"],
)
def test_bad_json(data: bytes) -> None:
    with pytest.raises(RejectedMessage) as excinfo:
        parse(data, max_size=len(data) + 1)
    assert _reason(excinfo) is RejectReason.BAD_JSON


def test_duplicate_key_inside_body_is_bad_json(envelope_bytes: bytes) -> None:
    text = envelope_bytes.decode().replace('"body":{', '"body":{"iv":"AAAAAAAAAAAAAAAA",', 1)
    with pytest.raises(RejectedMessage) as excinfo:
        parse(text.encode())
    assert _reason(excinfo) is RejectReason.BAD_JSON


@pytest.mark.parametrize("data", [b"[]", b"1", b'"v"', b"null", b"{}", b'{"v": "1"}'])
def test_not_an_envelope_object(data: bytes) -> None:
    with pytest.raises(RejectedMessage) as excinfo:
        parse(data)
    assert _reason(excinfo) is RejectReason.BAD_FORMAT


@pytest.mark.parametrize(
    "field", ["v", "type", "call_id", "from", "to", "ts", "nonce", "body", "sig"]
)
def test_missing_field(envelope_bytes: bytes, field: str) -> None:
    with pytest.raises(RejectedMessage) as excinfo:
        parse(_mutated(envelope_bytes, {field: _DELETE}))
    assert _reason(excinfo) is RejectReason.BAD_FORMAT
    assert repr(field) in str(excinfo.value)


@pytest.mark.parametrize("field", ["epk", "iv", "ct"])
def test_missing_body_field(envelope_bytes: bytes, field: str) -> None:
    with pytest.raises(RejectedMessage) as excinfo:
        parse(_mutated(envelope_bytes, {field: _DELETE}, body=True))
    assert _reason(excinfo) is RejectReason.BAD_FORMAT
    assert repr(field) in str(excinfo.value)


def test_unknown_fields_are_refused(envelope_bytes: bytes) -> None:
    for data in (
        _mutated(envelope_bytes, {"extra": 1}),
        _mutated(envelope_bytes, {"extra": "x"}, body=True),
    ):
        with pytest.raises(RejectedMessage) as excinfo:
            parse(data)
        assert _reason(excinfo) is RejectReason.BAD_FORMAT
        assert "'extra'" in str(excinfo.value)


BAD_VALUES: list[tuple[str, Any]] = [
    ("v", "1"),
    ("v", True),
    ("v", 1.0),
    ("type", 1),
    ("type", ""),
    ("type", "Invite"),
    ("type", "x" * 33),
    ("call_id", ""),
    ("call_id", "a b"),
    ("call_id", "a" * 65),
    ("call_id", "abc\n"),
    ("call_id", None),
    ("from", "Door"),
    ("from", "a/b"),
    ("from", "d" * 65),
    ("from", ["door"]),
    ("to", ""),
    ("to", "flat+1"),
    ("ts", "1767225600000"),
    ("ts", -1),
    ("ts", 1.5),
    ("ts", True),
    ("ts", 2**53),
    ("nonce", 5),
    ("nonce", b64u_encode(b"\x00" * 15)),
    ("nonce", b64u_encode(b"\x00" * 17)),
    ("nonce", "AAAAAAAAAAAAAAAAAAAAAA=="),
    ("nonce", "AAAAAAAAAAAAAAAAAAAAAB"),
    ("nonce", "AAAAAAAAAAAAAAAAAAAA+A"),
    ("nonce", "AAAAAAAAAAAAAAAAAAAA A"),
    ("body", []),
    ("body", "x"),
    ("sig", b64u_encode(b"\x00" * 63)),
    ("sig", 0),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_wrong_type_or_shape(envelope_bytes: bytes, field: str, value: Any) -> None:
    with pytest.raises(RejectedMessage) as excinfo:
        parse(_mutated(envelope_bytes, {field: value}))
    assert _reason(excinfo) is RejectReason.BAD_FORMAT
    assert repr(field) in str(excinfo.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epk", b64u_encode(b"\x01" * 31)),
        ("epk", 7),
        ("iv", b64u_encode(b"\x01" * 16)),
        ("ct", b64u_encode(b"\x01" * 15)),
        ("ct", "a"),
    ],
)
def test_wrong_body_field(envelope_bytes: bytes, field: str, value: Any) -> None:
    with pytest.raises(RejectedMessage) as excinfo:
        parse(_mutated(envelope_bytes, {field: value}, body=True))
    assert _reason(excinfo) is RejectReason.BAD_FORMAT
    assert repr(field) in str(excinfo.value)


@pytest.mark.parametrize("version", [0, 2, -1, 100])
def test_unknown_version(envelope_bytes: bytes, version: int) -> None:
    with pytest.raises(RejectedMessage) as excinfo:
        parse(_mutated(envelope_bytes, {"v": version}))
    assert _reason(excinfo) is RejectReason.UNKNOWN_VERSION


def test_unknown_version_wins_over_an_unknown_shape() -> None:
    with pytest.raises(RejectedMessage) as excinfo:
        parse(b'{"v": 2, "whatever": [1.5]}')
    assert _reason(excinfo) is RejectReason.UNKNOWN_VERSION


# --------------------------------------------------------------------------- verify / open


def _tampered_value(field: str, value: Any) -> Any:
    if field == "ts":
        return value + 1
    if field == "nonce":
        return b64u_encode(bytes(16))
    if field in ("from", "to"):
        return value + "x"
    if field == "type":
        return "hangup" if value != "hangup" else "ack"
    raw = bytearray(b64u_decode(value))
    raw[0] ^= 1
    return b64u_encode(bytes(raw))


@pytest.mark.parametrize("field", [*HEADER_FIELDS, "epk", "iv", "ct"])
def test_tampering_any_signed_field_breaks_the_signature(
    vectors: dict[str, Any], recipient: Identity, envelope_bytes: bytes, field: str
) -> None:
    obj = json.loads(envelope_bytes)
    target = obj["body"] if field in ("epk", "iv", "ct") else obj
    target[field] = _tampered_value(field, target[field])
    env = parse(json.dumps(obj).encode())
    sender_keys = PublicKeys.from_json(vectors["sender"]["public_keys"])
    with pytest.raises(RejectedMessage) as excinfo:
        verify_and_open(env, sender_keys=sender_keys, recipient=recipient)
    assert _reason(excinfo) is RejectReason.BAD_SIGNATURE


def test_flipping_one_ciphertext_bit_breaks_the_signature(
    vectors: dict[str, Any], recipient: Identity, envelope_bytes: bytes
) -> None:
    env = parse(envelope_bytes)
    ct = bytearray(env.ct)
    ct[0] ^= 1
    sender_keys = PublicKeys.from_json(vectors["sender"]["public_keys"])
    with pytest.raises(RejectedMessage) as excinfo:
        verify_and_open(
            dataclasses.replace(env, ct=bytes(ct)), sender_keys=sender_keys, recipient=recipient
        )
    assert _reason(excinfo) is RejectReason.BAD_SIGNATURE


def test_wrong_sender_key_or_bad_signature_bytes(
    vectors: dict[str, Any], recipient: Identity, envelope_bytes: bytes
) -> None:
    env = parse(envelope_bytes)
    with pytest.raises(RejectedMessage) as excinfo:
        verify_and_open(env, sender_keys=Identity.generate().public_keys, recipient=recipient)
    assert _reason(excinfo) is RejectReason.BAD_SIGNATURE
    sender_keys = PublicKeys.from_json(vectors["sender"]["public_keys"])
    with pytest.raises(RejectedMessage) as excinfo:
        verify_and_open(
            dataclasses.replace(env, sig=bytes(64)), sender_keys=sender_keys, recipient=recipient
        )
    assert _reason(excinfo) is RejectReason.BAD_SIGNATURE
    assert "'door'" in str(excinfo.value) and "bad_signature" in str(excinfo.value)


def test_wrong_recipient_key_fails_to_decrypt(
    vectors: dict[str, Any], envelope_bytes: bytes
) -> None:
    sender_keys = PublicKeys.from_json(vectors["sender"]["public_keys"])
    with pytest.raises(RejectedMessage) as excinfo:
        verify_and_open(
            parse(envelope_bytes), sender_keys=sender_keys, recipient=Identity.generate()
        )
    assert _reason(excinfo) is RejectReason.DECRYPT_FAILED


def test_signature_is_checked_before_decryption(
    vectors: dict[str, Any], envelope_bytes: bytes
) -> None:
    env = dataclasses.replace(parse(envelope_bytes), sig=bytes(64))
    sender_keys = PublicKeys.from_json(vectors["sender"]["public_keys"])
    with pytest.raises(RejectedMessage) as excinfo:
        verify_and_open(env, sender_keys=sender_keys, recipient=Identity.generate())
    assert _reason(excinfo) is RejectReason.BAD_SIGNATURE


def _resigned(env: Envelope, signer: Identity) -> Envelope:
    return dataclasses.replace(env, sig=signer.sign(env.signed_bytes()))


def test_validly_signed_but_altered_ciphertext_fails_to_decrypt(
    sender: Identity, recipient: Identity, envelope_bytes: bytes
) -> None:
    env = parse(envelope_bytes)
    ct = bytearray(env.ct)
    ct[-1] ^= 0x80
    forged = _resigned(dataclasses.replace(env, ct=bytes(ct)), sender)
    with pytest.raises(RejectedMessage) as excinfo:
        verify_and_open(forged, sender_keys=sender.public_keys, recipient=recipient)
    assert _reason(excinfo) is RejectReason.DECRYPT_FAILED


def test_validly_signed_low_order_ephemeral_key_fails_to_decrypt(
    sender: Identity, recipient: Identity, envelope_bytes: bytes
) -> None:
    forged = _resigned(dataclasses.replace(parse(envelope_bytes), epk=bytes(32)), sender)
    with pytest.raises(RejectedMessage) as excinfo:
        verify_and_open(forged, sender_keys=sender.public_keys, recipient=recipient)
    assert _reason(excinfo) is RejectReason.DECRYPT_FAILED


def _seal_plaintext(sender: Identity, recipient: Identity, plaintext: bytes) -> Envelope:
    """An envelope whose body decrypts to arbitrary bytes, built by hand."""
    eph = X25519PrivateKey.generate()
    epk = eph.public_key().public_bytes_raw()
    env = Envelope(
        v=1,
        type="ack",
        call_id="c1",
        sender="a",
        recipient="b",
        ts=1,
        nonce=bytes(16),
        epk=epk,
        iv=bytes(12),
        ct=b"",
        sig=b"",
    )
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient.public_keys.dh))
    salt = epk + recipient.public_keys.dh
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=HKDF_INFO).derive(shared)
    env = dataclasses.replace(env, ct=AESGCM(key).encrypt(env.iv, plaintext, env.aad()))
    return parse(_resigned(env, sender).to_bytes())


@pytest.mark.parametrize(
    "plaintext",
    [
        b"[1]",
        b'"x"',
        b"null",
        b'{"a":1.5}',
        b'{"a":1,"a":2}',
        b"{",
        b"\xff",
        b'{"n":NaN}',
        b'{"n":9007199254740992}',
        b'{"s":"\\ud800"}',
        b"",
    ],
)
def test_plaintext_that_is_not_a_json_object_is_bad_format(plaintext: bytes) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    env = _seal_plaintext(alice, bob, plaintext)
    with pytest.raises(RejectedMessage) as excinfo:
        verify_and_open(env, sender_keys=alice.public_keys, recipient=bob)
    assert _reason(excinfo) is RejectReason.BAD_FORMAT


def test_non_canonical_plaintext_object_is_accepted() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    env = _seal_plaintext(alice, bob, b'{ "b" : 1 ,\n "a" : [true] }')
    assert verify_and_open(env, sender_keys=alice.public_keys, recipient=bob) == {
        "a": [True],
        "b": 1,
    }


# --------------------------------------------------------------------------- seal refusals


@pytest.mark.parametrize(
    "body",
    [
        {"f": 1.5},
        {"nested": {"list": [1, 2.0]}},
        {"big": 2**53},
        {"neg": -(2**53)},
        {1: "int key"},
        {"set": {1, 2}},
        {"tuple": (1, 2)},
        {"bytes": b"x"},
        {"s": "\ud800"},
    ],
)
def test_seal_refuses_what_canonical_json_cannot_carry(body: dict[Any, Any]) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    with pytest.raises(SignalingError, match="cannot seal: body"):
        seal(
            alice,
            type="ack",
            call_id="c",
            sender="a",
            recipient="b",
            recipient_keys=bob.public_keys,
            body=body,
        )


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"type": "Bad Type"}, "'type'"),
        ({"call_id": ""}, "'call_id'"),
        ({"sender": "Alice"}, "'from'"),
        ({"recipient": "b/c"}, "'to'"),
        ({"ts_ms": -1}, "ts"),
        ({"nonce": bytes(15)}, "nonce"),
        ({"iv": bytes(16)}, "iv"),
        ({"body": ["not", "an", "object"]}, "body"),
        ({"recipient_keys": PublicKeys(sign=bytes(32), dh=bytes(32))}, "X25519"),
        ({"body": {"big": "x" * 70_000}}, "over the limit"),
    ],
)
def test_seal_refuses_bad_arguments(overrides: dict[str, Any], match: str) -> None:
    alice, bob = Identity.generate(), Identity.generate()
    kwargs: dict[str, Any] = {
        "type": "ack",
        "call_id": "c",
        "sender": "a",
        "recipient": "b",
        "recipient_keys": bob.public_keys,
        "body": {},
    }
    kwargs.update(overrides)
    with pytest.raises(SignalingError, match=match):
        seal(alice, **kwargs)


# --------------------------------------------------------------------------- canonical JSON


def test_canonical_json_shape() -> None:
    assert canonical({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()
    assert canonical({}) == b"{}"
    assert canonical("\x00\x1f\x7f/") == b'"\\u0000\\u001f\x7f/"'


def test_canonical_json_refuses_floats_with_the_location() -> None:
    with pytest.raises(SignalingError, match=r"value\.a\[1\]: floats are not allowed"):
        canonical({"a": [1, 2.5]})


def test_canonical_json_refuses_absurd_nesting() -> None:
    value: Any = []
    for _ in range(100):
        value = [value]
    with pytest.raises(SignalingError, match="nested deeper"):
        canonical(value)


def test_address_and_call_id_syntax() -> None:
    assert is_valid_address("flat-12.kitchen") and is_valid_address("a" * 64)
    assert not is_valid_address("a" * 65) and not is_valid_address("door\n")
    assert not is_valid_address("") and not is_valid_address(3)
    assert is_valid_call_id("Ab-_9") and not is_valid_call_id("a.b")


# --------------------------------------------------------------------------- errors


def test_rejected_message_names_reason_and_detail() -> None:
    error = RejectedMessage(RejectReason.REPLAY, "nonce from door was already used")
    assert error.reason is RejectReason.REPLAY
    assert str(error) == "message rejected (replay): nonce from door was already used"
    assert isinstance(error, SignalingError)


def test_reject_reason_values() -> None:
    assert {reason.value for reason in RejectReason} == {
        "bad_json",
        "bad_format",
        "unknown_version",
        "wrong_recipient",
        "unknown_sender",
        "bad_signature",
        "decrypt_failed",
        "replay",
        "stale",
        "oversize",
        "unknown_type",
        "key_changed",
        "wrong_call",
        "rate_limited",
    }
    assert all(reason.name.lower() == reason.value for reason in RejectReason)
