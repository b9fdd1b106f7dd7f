"""The signaling envelope, version 1: canonical JSON, Ed25519 signature, encrypted body.

Wire format (normative text and test vectors: docs/protocol.md)::

    {"v": 1, "type": str, "call_id": str, "from": address, "to": address, "ts": int ms,
     "nonce": b64u(16 bytes),
     "body": {"epk": b64u(32), "iv": b64u(12), "ct": b64u(AES-256-GCM ciphertext || tag)},
     "sig": b64u(64)}

The body is encrypted to the recipient's X25519 key with an ephemeral X25519 key, HKDF-SHA256 and
AES-256-GCM whose associated data is the header; the Ed25519 signature covers every field but
``sig``. `seal` builds an envelope, `parse` checks its structure, `verify_and_open` checks the
signature and then decrypts. Checks that need receiver state (recipient address, pinned keys,
clock window, replay cache, call state) belong to the receiver, not to this module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.signaling.errors import RejectedMessage, RejectReason, SignalingError
from services.signaling.identity import KEY_SIZE, Identity, PublicKeys, b64u_decode, b64u_encode

__all__ = [
    "AAD_CONTEXT",
    "ENVELOPE_VERSION",
    "HKDF_INFO",
    "IV_SIZE",
    "MAX_ENVELOPE_SIZE",
    "MAX_SAFE_INTEGER",
    "NONCE_SIZE",
    "SIG_CONTEXT",
    "SIG_SIZE",
    "TAG_SIZE",
    "Envelope",
    "canonical",
    "is_valid_address",
    "is_valid_call_id",
    "is_valid_type",
    "parse",
    "seal",
    "verify_and_open",
]

ENVELOPE_VERSION: Final = 1
"""The value of ``v`` this module writes and accepts."""

MAX_ENVELOPE_SIZE: Final = 65536
"""Default limit, in bytes, of an envelope on the wire (larger ones are OVERSIZE)."""

MAX_SAFE_INTEGER: Final = 2**53 - 1
"""Largest magnitude of an integer in canonical JSON (JavaScript's Number.MAX_SAFE_INTEGER)."""

SIG_CONTEXT: Final = b"callbox/v1 sig\n"
"""Prefix of the bytes the Ed25519 signature covers."""

AAD_CONTEXT: Final = b"callbox/v1 aad\n"
"""Prefix of the AES-GCM associated data."""

HKDF_INFO: Final = b"callbox/v1 body"
"""HKDF ``info`` of the body key."""

NONCE_SIZE: Final = 16
"""Size in bytes of the envelope nonce."""

IV_SIZE: Final = 12
"""Size in bytes of the AES-GCM IV."""

TAG_SIZE: Final = 16
"""Size in bytes of the AES-GCM tag appended to the ciphertext."""

SIG_SIZE: Final = 64
"""Size in bytes of an Ed25519 signature."""

_ENVELOPE_FIELDS: Final = ("v", "type", "call_id", "from", "to", "ts", "nonce", "body", "sig")
_BODY_FIELDS: Final = ("epk", "iv", "ct")
_MAX_DEPTH: Final = 32

_ADDRESS_RE: Final = re.compile(r"[a-z0-9_.-]{1,64}")
_CALL_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TYPE_RE: Final = re.compile(r"[a-z0-9_-]{1,32}")


def is_valid_address(value: object) -> bool:
    """Tell whether `value` is an endpoint address: 1..64 characters of ``[a-z0-9_.-]``."""
    return isinstance(value, str) and _ADDRESS_RE.fullmatch(value) is not None


def is_valid_call_id(value: object) -> bool:
    """Tell whether `value` is a call id: 1..64 characters of ``[A-Za-z0-9_-]``."""
    return isinstance(value, str) and _CALL_ID_RE.fullmatch(value) is not None


def is_valid_type(value: object) -> bool:
    """Tell whether `value` is a well-formed message type: 1..32 characters of ``[a-z0-9_-]``.

    Whether the type is known is the receiver's business (UNKNOWN_TYPE), not the envelope's.
    """
    return isinstance(value, str) and _TYPE_RE.fullmatch(value) is not None


# --------------------------------------------------------------------------- canonical JSON


def _check_json_value(value: object, where: str, depth: int = 0) -> None:
    """Refuse, with a SignalingError naming `where`, anything canonical JSON cannot carry."""
    if depth > _MAX_DEPTH:
        raise SignalingError(f"{where}: nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise SignalingError(
                f"{where}: integer {value} is outside ±(2**53 - 1); send it as a string"
            )
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SignalingError(f"{where}: string is not valid Unicode ({exc.reason})") from exc
        return
    if isinstance(value, float):
        raise SignalingError(f"{where}: floats are not allowed; use an integer or a string")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json_value(item, f"{where}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SignalingError(f"{where}: object key {key!r} is not a string")
            _check_json_value(key, f"{where} key {key!r}", depth + 1)
            _check_json_value(item, f"{where}.{key}", depth + 1)
        return
    raise SignalingError(f"{where}: {type(value).__name__} is not allowed in JSON")


def canonical(obj: object) -> bytes:
    """Return the canonical JSON bytes of `obj`.

    ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` encoded as
    UTF-8. Only dict (string keys), list, str, int (within ±(2**53 - 1)), bool and None are
    allowed, so that a browser can reproduce the bytes; anything else (notably float) raises
    SignalingError naming where it is.
    """
    _check_json_value(obj, "value")
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


class _StrictJSONError(ValueError):
    """Raised by the strict JSON hooks (duplicate keys, NaN / Infinity)."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook that refuses an object with a repeated key."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _StrictJSONError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> NoReturn:
    """parse_constant hook that refuses NaN, Infinity and -Infinity (they are not JSON)."""
    raise _StrictJSONError(f"{name} is not JSON")


def _loads_strict(data: bytes) -> Any:
    """Decode UTF-8 JSON, refusing duplicate keys and NaN / Infinity; raises ValueError."""
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


# --------------------------------------------------------------------------- envelope


@dataclass(frozen=True, slots=True)
class Envelope:
    """A structurally valid envelope, as returned by `parse` (signature not yet checked).

    Header fields keep their wire meaning (`sender` is ``from``, `recipient` is ``to``); the
    binary fields hold raw bytes (decoded from base64url).
    """

    v: int
    type: str
    call_id: str
    sender: str
    recipient: str
    ts: int
    nonce: bytes
    epk: bytes
    iv: bytes
    ct: bytes
    sig: bytes

    def header(self) -> dict[str, object]:
        """Return the header object ``{v, type, call_id, from, to, ts, nonce}`` (wire names)."""
        return {
            "v": self.v,
            "type": self.type,
            "call_id": self.call_id,
            "from": self.sender,
            "to": self.recipient,
            "ts": self.ts,
            "nonce": b64u_encode(self.nonce),
        }

    def body_json(self) -> dict[str, str]:
        """Return the encrypted body object ``{epk, iv, ct}`` (base64url fields)."""
        return {
            "epk": b64u_encode(self.epk),
            "iv": b64u_encode(self.iv),
            "ct": b64u_encode(self.ct),
        }

    def aad(self) -> bytes:
        r"""Return the AES-GCM associated data: ``b"callbox/v1 aad\n" + canonical(header)``."""
        return AAD_CONTEXT + canonical(self.header())

    def signed_bytes(self) -> bytes:
        r"""Return what the signature covers: ``b"callbox/v1 sig\n" + canonical(header + body)``."""
        unsigned = self.header()
        unsigned["body"] = self.body_json()
        return SIG_CONTEXT + canonical(unsigned)

    def to_json(self) -> dict[str, object]:
        """Return the complete wire object, ``sig`` included."""
        obj = self.header()
        obj["body"] = self.body_json()
        obj["sig"] = b64u_encode(self.sig)
        return obj

    def to_bytes(self) -> bytes:
        """Return the wire bytes: the canonical JSON of `to_json`."""
        return canonical(self.to_json())


def _body_key(shared: bytes, epk: bytes, recipient_dh: bytes) -> bytes:
    """HKDF-SHA256(ikm=shared, salt=epk || recipient_dh, info=HKDF_INFO), 32 bytes."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=epk + recipient_dh, info=HKDF_INFO)
    return hkdf.derive(shared)


def _header_problem(type_: object, call_id: object, sender: object, recipient: object) -> str:
    """Return what is wrong with the string header fields (wire names), or "" if nothing."""
    if not is_valid_type(type_):
        return "field 'type' must be 1..32 characters of [a-z0-9_-]"
    if not is_valid_call_id(call_id):
        return "field 'call_id' must be 1..64 characters of [A-Za-z0-9_-]"
    if not is_valid_address(sender):
        return "field 'from' must be an address: 1..64 characters of [a-z0-9_.-]"
    if not is_valid_address(recipient):
        return "field 'to' must be an address: 1..64 characters of [a-z0-9_.-]"
    return ""


def _is_ts(value: object) -> bool:
    """Tell whether `value` is a valid ``ts``: an integer in 0 .. 2**53 - 1."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SAFE_INTEGER


def seal(
    identity: Identity,
    *,
    type: str,  # noqa: A002 - the envelope's wire field "type", as the other header keywords
    call_id: str,
    sender: str,
    recipient: str,
    recipient_keys: PublicKeys,
    body: Mapping[str, object],
    ts_ms: int | None = None,
    nonce: bytes | None = None,
    ephemeral: X25519PrivateKey | None = None,
    iv: bytes | None = None,
    max_size: int = MAX_ENVELOPE_SIZE,
) -> bytes:
    """Encrypt `body` to `recipient_keys`, sign everything with `identity`, return wire bytes.

    `ts_ms` (default: now), `nonce` (16 bytes, default random), `ephemeral` (default fresh) and
    `iv` (12 bytes, default random) exist for deterministic test vectors; never reuse them in
    production. Raises SignalingError for a malformed header field, a body that canonical JSON
    cannot carry (e.g. a float), an unusable recipient key, or a result over `max_size` bytes.
    """
    problem = _header_problem(type, call_id, sender, recipient)
    if problem:
        raise SignalingError(f"cannot seal: {problem}")
    ts = time.time_ns() // 1_000_000 if ts_ms is None else ts_ms
    if not _is_ts(ts):
        raise SignalingError(f"cannot seal: ts must be an integer in 0..2**53-1, not {ts!r}")
    nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_SIZE:
        raise SignalingError(f"cannot seal: nonce must be {NONCE_SIZE} bytes")
    iv = os.urandom(IV_SIZE) if iv is None else iv
    if not isinstance(iv, bytes) or len(iv) != IV_SIZE:
        raise SignalingError(f"cannot seal: iv must be {IV_SIZE} bytes")
    if not isinstance(body, Mapping):
        raise SignalingError("cannot seal: body must be a JSON object (a dict)")
    try:
        plaintext = canonical(dict(body))
    except SignalingError as exc:
        raise SignalingError(f"cannot seal: body {exc}") from exc

    eph = X25519PrivateKey.generate() if ephemeral is None else ephemeral
    epk = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_keys.dh))
    except ValueError as exc:
        raise SignalingError(f"cannot seal: recipient X25519 key is unusable: {exc}") from exc

    unsigned = Envelope(
        v=ENVELOPE_VERSION,
        type=type,
        call_id=call_id,
        sender=sender,
        recipient=recipient,
        ts=ts,
        nonce=nonce,
        epk=epk,
        iv=iv,
        ct=b"",
        sig=b"",
    )
    key = _body_key(shared, epk, recipient_keys.dh)
    ct = AESGCM(key).encrypt(iv, plaintext, unsigned.aad())
    encrypted = dataclasses.replace(unsigned, ct=ct)
    signed = dataclasses.replace(encrypted, sig=identity.sign(encrypted.signed_bytes()))
    data = signed.to_bytes()
    if len(data) > max_size:
        raise SignalingError(
            f"cannot seal: {type!r} envelope is {len(data)} bytes, over the limit of {max_size}"
        )
    return data


def _bad_format(detail: str) -> RejectedMessage:
    """Build a BAD_FORMAT rejection."""
    return RejectedMessage(RejectReason.BAD_FORMAT, detail)


def _b64u_field(
    obj: Mapping[str, object], field: str, size: int, *, at_least: bool = False
) -> bytes:
    """Decode base64url field `field` of `obj` and check its length, or raise BAD_FORMAT."""
    value = obj[field]
    if not isinstance(value, str):
        raise _bad_format(f"field {field!r} must be a base64url string")
    try:
        raw = b64u_decode(value)
    except ValueError as exc:
        raise _bad_format(f"field {field!r}: {exc}") from exc
    if at_least and len(raw) < size:
        raise _bad_format(f"field {field!r} must decode to at least {size} bytes, not {len(raw)}")
    if not at_least and len(raw) != size:
        raise _bad_format(f"field {field!r} must decode to {size} bytes, not {len(raw)}")
    return raw


def _exact_fields(obj: Mapping[str, object], fields: tuple[str, ...], what: str) -> None:
    """Raise BAD_FORMAT naming missing or unknown fields of `obj`."""
    missing = [field for field in fields if field not in obj]
    if missing:
        raise _bad_format(f"{what}: missing field(s) {', '.join(map(repr, missing))}")
    extra = sorted(key for key in obj if key not in fields)
    if extra:
        raise _bad_format(f"{what}: unknown field(s) {', '.join(map(repr, extra))}")


def parse(data: bytes, *, max_size: int = MAX_ENVELOPE_SIZE) -> Envelope:
    """Check the structure of wire bytes and return the `Envelope`; nothing is verified yet.

    Raises RejectedMessage with OVERSIZE (more than `max_size` bytes, checked before parsing),
    BAD_JSON (not UTF-8 JSON, duplicate keys, NaN/Infinity), BAD_FORMAT (not an object, missing
    or unknown field, wrong type, bad base64url, wrong length) or UNKNOWN_VERSION (``v`` is an
    integer other than 1: checked before the other fields, whose shape may differ by version).
    """
    if len(data) > max_size:
        raise RejectedMessage(
            RejectReason.OVERSIZE, f"envelope is {len(data)} bytes, over the limit of {max_size}"
        )
    try:
        obj = _loads_strict(bytes(data))
    except ValueError as exc:
        raise RejectedMessage(RejectReason.BAD_JSON, f"envelope is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise _bad_format(f"envelope must be a JSON object, not {type(obj).__name__}")
    if "v" not in obj:
        raise _bad_format("envelope: missing field 'v'")
    version = obj["v"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise _bad_format("field 'v' must be an integer")
    if version != ENVELOPE_VERSION:
        raise RejectedMessage(
            RejectReason.UNKNOWN_VERSION,
            f"envelope version {version} is not supported (only {ENVELOPE_VERSION})",
        )
    _exact_fields(obj, _ENVELOPE_FIELDS, "envelope")
    problem = _header_problem(obj["type"], obj["call_id"], obj["from"], obj["to"])
    if problem:
        raise _bad_format(problem)
    if not _is_ts(obj["ts"]):
        raise _bad_format("field 'ts' must be an integer in 0..2**53-1 (milliseconds)")
    nonce = _b64u_field(obj, "nonce", NONCE_SIZE)
    body = obj["body"]
    if not isinstance(body, dict):
        raise _bad_format("field 'body' must be an object {epk, iv, ct}")
    _exact_fields(body, _BODY_FIELDS, "body")
    return Envelope(
        v=version,
        type=obj["type"],
        call_id=obj["call_id"],
        sender=obj["from"],
        recipient=obj["to"],
        ts=obj["ts"],
        nonce=nonce,
        epk=_b64u_field(body, "epk", KEY_SIZE),
        iv=_b64u_field(body, "iv", IV_SIZE),
        ct=_b64u_field(body, "ct", TAG_SIZE, at_least=True),
        sig=_b64u_field(obj, "sig", SIG_SIZE),
    )


def verify_and_open(
    env: Envelope, *, sender_keys: PublicKeys, recipient: Identity
) -> dict[str, Any]:
    """Verify the signature with `sender_keys`, then decrypt the body with `recipient`.

    The signature is checked first, over bytes recomputed from the parsed fields (never over the
    received text). Raises RejectedMessage with BAD_SIGNATURE, DECRYPT_FAILED (wrong recipient
    key, tampered ciphertext, low-order ephemeral key) or BAD_FORMAT (the plaintext is not a JSON
    object of canonical JSON types). Returns the body object.
    """
    try:
        Ed25519PublicKey.from_public_bytes(sender_keys.sign).verify(env.sig, env.signed_bytes())
    except (InvalidSignature, ValueError) as exc:
        raise RejectedMessage(
            RejectReason.BAD_SIGNATURE,
            f"signature of {env.type!r} from {env.sender!r} does not verify with key "
            f"{sender_keys.fingerprint()}",
        ) from exc
    try:
        shared = recipient.dh(env.epk)
    except SignalingError as exc:
        raise RejectedMessage(
            RejectReason.DECRYPT_FAILED, f"body of {env.type!r} from {env.sender!r}: {exc}"
        ) from exc
    key = _body_key(shared, env.epk, recipient.public_keys.dh)
    try:
        plaintext = AESGCM(key).decrypt(env.iv, env.ct, env.aad())
    except InvalidTag as exc:
        raise RejectedMessage(
            RejectReason.DECRYPT_FAILED,
            f"body of {env.type!r} from {env.sender!r} does not decrypt with key "
            f"{recipient.public_keys.fingerprint()}",
        ) from exc
    try:
        body = _loads_strict(plaintext)
    except ValueError as exc:
        raise _bad_format(f"body of {env.type!r} is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _bad_format(f"body of {env.type!r} must be a JSON object, not {type(body).__name__}")
    try:
        _check_json_value(body, "body")
    except SignalingError as exc:
        raise _bad_format(str(exc)) from exc
    return body
