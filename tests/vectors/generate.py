"""Generate the envelope v1 test vectors: tests/vectors/envelope_v1.json.

Usage (from the repository root)::

    .venv/bin/python tests/vectors/generate.py             # rewrite envelope_v1.json
    .venv/bin/python tests/vectors/generate.py --check     # exit 1 if the file is out of date
    .venv/bin/python tests/vectors/generate.py --markdown  # print the docs/protocol.md section

Every value is derived from fixed labels, so the output is deterministic. The intermediate values
are computed here step by step with `cryptography` primitives, independently of
services/signaling/envelope.py, and the script then checks that `seal` produces exactly the same
envelope and that `verify_and_open` recovers the body.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from services.signaling.envelope import canonical, parse, seal, verify_and_open
from services.signaling.errors import SignalingError
from services.signaling.identity import Identity, PublicKeys, safety_number

VECTORS_PATH = Path(__file__).with_name("envelope_v1.json")

SENDER = "door"
RECIPIENT = "flat-12.kitchen"
TYPE = "invite"
CALL_ID = "c7Qm2xVd9LhZ-pR4_tNb0w"
TS = 1767225600000  # 2026-01-01T00:00:00Z
BODY: dict[str, Any] = {
    "sdp": "v=0\r\no=- 0 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    "video": True,
    "caller": {"name": "Haustür", "role": "door"},
}

# JSON texts whose canonical form is given, and JSON texts canonical JSON must refuse.
CANONICAL_INPUTS = (
    '{"b": [3, {"z": null, "a": false}], "a": "x", "c": {}, "d": []}',
    '{"s": "quote\\" backslash\\\\ slash/ nl\\n cr\\r tab\\t bs\\b ff\\f us\\u001f é € 😀"}',
    '{"\\uff61": 1, "\\ud83d\\ude00": 2, "a": 3, "B": 4, "": 5}',
    '{"max": 9007199254740991, "min": -9007199254740991, "zero": -0}',
)
CANONICAL_REFUSED = (
    '{"f": 1.5}',
    '{"big": 9007199254740992}',
    '{"s": "\\ud800"}',
)


def fixed(label: str) -> bytes:
    """Return 32 deterministic bytes: SHA-256 of ``"callbox test vector: " + label``."""
    return hashlib.sha256(f"callbox test vector: {label}".encode()).digest()


def b64u(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def canon(obj: Any) -> bytes:
    """The definition of canonical JSON (without the type checks of the real implementation)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def raw_public(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    """Raw 32-byte public key of a private key."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def party(address: str, label: str) -> dict[str, Any]:
    """Keys of one endpoint derived from `label`."""
    sign_seed, dh_private = fixed(f"{label} ed25519"), fixed(f"{label} x25519")
    sign_key = Ed25519PrivateKey.from_private_bytes(sign_seed)
    dh_key = X25519PrivateKey.from_private_bytes(dh_private)
    keys = PublicKeys(sign=raw_public(sign_key), dh=raw_public(dh_key))
    der = (Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    return {
        "address": address,
        "sign_private_hex": sign_seed.hex(),
        "sign_private_pkcs8_hex": sign_key.private_bytes(*der).hex(),
        "sign_public_hex": keys.sign.hex(),
        "dh_private_hex": dh_private.hex(),
        "dh_private_pkcs8_hex": dh_key.private_bytes(*der).hex(),
        "dh_public_hex": keys.dh.hex(),
        "public_keys": keys.to_json(),
        "fingerprint": keys.fingerprint(),
    }


def build() -> dict[str, Any]:
    """Compute every vector value and cross-check it against services.signaling.envelope."""
    sender, recipient = party(SENDER, "sender"), party(RECIPIENT, "recipient")
    sender_keys = PublicKeys.from_json(sender["public_keys"])
    recipient_keys = PublicKeys.from_json(recipient["public_keys"])
    nonce, iv, eph_private = fixed("nonce")[:16], fixed("iv")[:12], fixed("ephemeral x25519")

    header = {
        "v": 1,
        "type": TYPE,
        "call_id": CALL_ID,
        "from": SENDER,
        "to": RECIPIENT,
        "ts": TS,
        "nonce": b64u(nonce),
    }
    canonical_header = canon(header)
    aad = b"callbox/v1 aad\n" + canonical_header
    eph = X25519PrivateKey.from_private_bytes(eph_private)
    epk = raw_public(eph)
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_keys.dh))
    salt = epk + recipient_keys.dh
    info = b"callbox/v1 body"
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(shared)
    plaintext = canon(BODY)
    ct = AESGCM(key).encrypt(iv, plaintext, aad)
    unsigned = {**header, "body": {"epk": b64u(epk), "iv": b64u(iv), "ct": b64u(ct)}}
    signed = b"callbox/v1 sig\n" + canon(unsigned)
    sender_sign = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(sender["sign_private_hex"]))
    sig = sender_sign.sign(signed)
    envelope = canon({**unsigned, "sig": b64u(sig)})

    # Cross-check against the implementation.
    sender_identity = Identity.from_private_bytes(
        bytes.fromhex(sender["sign_private_hex"]), bytes.fromhex(sender["dh_private_hex"])
    )
    recipient_identity = Identity.from_private_bytes(
        bytes.fromhex(recipient["sign_private_hex"]), bytes.fromhex(recipient["dh_private_hex"])
    )
    sealed = seal(
        sender_identity,
        type=TYPE,
        call_id=CALL_ID,
        sender=SENDER,
        recipient=RECIPIENT,
        recipient_keys=recipient_keys,
        body=BODY,
        ts_ms=TS,
        nonce=nonce,
        ephemeral=eph,
        iv=iv,
    )
    if sealed != envelope:
        raise SystemExit("seal() disagrees with the independent computation")
    env = parse(envelope)
    if env.signed_bytes() != signed or env.aad() != aad:
        raise SystemExit("Envelope.signed_bytes()/aad() disagree with the computation")
    opened = verify_and_open(env, sender_keys=sender_keys, recipient=recipient_identity)
    if opened != BODY:
        raise SystemExit("verify_and_open() did not recover the body")

    cases = []
    for text in CANONICAL_INPUTS:
        cases.append({"input": text, "canonical": canonical(json.loads(text)).decode("utf-8")})
    for text in CANONICAL_REFUSED:
        try:
            canonical(json.loads(text))
        except SignalingError:
            continue
        raise SystemExit(f"canonical() accepted {text}")

    return {
        "version": 1,
        "sender": sender,
        "recipient": recipient,
        "safety_number": safety_number(sender_keys, recipient_keys),
        "inputs": {
            "type": TYPE,
            "call_id": CALL_ID,
            "from": SENDER,
            "to": RECIPIENT,
            "ts": TS,
            "nonce_hex": nonce.hex(),
            "iv_hex": iv.hex(),
            "ephemeral_private_hex": eph_private.hex(),
            "body": BODY,
        },
        "derived": {
            "header": header,
            "canonical_header": canonical_header.decode("utf-8"),
            "aad_hex": aad.hex(),
            "ephemeral_public_hex": epk.hex(),
            "shared_secret_hex": shared.hex(),
            "hkdf_salt_hex": salt.hex(),
            "hkdf_info_hex": info.hex(),
            "body_key_hex": key.hex(),
            "canonical_body": plaintext.decode("utf-8"),
            "ct_b64u": b64u(ct),
            "canonical_signed": canon(unsigned).decode("utf-8"),
            "signed_bytes_hex": signed.hex(),
            "sig_b64u": b64u(sig),
        },
        "envelope": envelope.decode("utf-8"),
        "canonical_json": {"cases": cases, "refused": list(CANONICAL_REFUSED)},
    }


def render_json(vectors: dict[str, Any]) -> str:
    """The content of envelope_v1.json."""
    return json.dumps(vectors, indent=2, ensure_ascii=False) + "\n"


def render_markdown(vectors: dict[str, Any]) -> str:
    """The "Test vectors" section of docs/protocol.md, with every value of the JSON file."""
    inputs, derived = vectors["inputs"], vectors["derived"]
    out: list[str] = [
        "## Test vectors",
        "",
        "Generated by `tests/vectors/generate.py`; the same values are in",
        "`tests/vectors/envelope_v1.json` (Python and browser tests read that file). Hex is",
        "lower-case, b64u is base64url without padding. Every secret below is derived from a",
        'public label (`SHA-256("callbox test vector: " + label)`): never use them for anything',
        "else.",
        "",
        "### Keys",
        "",
    ]
    for role in ("sender", "recipient"):
        p = vectors[role]
        out += [
            f"{role.capitalize()}, address `{p['address']}`:",
            "",
            f"- Ed25519 private seed: `{p['sign_private_hex']}`",
            f"- Ed25519 private, PKCS#8 DER: `{p['sign_private_pkcs8_hex']}`",
            f"- Ed25519 public: `{p['sign_public_hex']}`",
            f"- X25519 private: `{p['dh_private_hex']}`",
            f"- X25519 private, PKCS#8 DER: `{p['dh_private_pkcs8_hex']}`",
            f"- X25519 public: `{p['dh_public_hex']}`",
            f"- public keys JSON: `{canon(p['public_keys']).decode()}`",
            f"- fingerprint: `{p['fingerprint']}`",
            "",
        ]
    out += [
        f"Safety number of the two: `{vectors['safety_number']}`",
        "",
        "### Inputs",
        "",
        f"- type `{inputs['type']}`, call_id `{inputs['call_id']}`, from `{inputs['from']}`,"
        f" to `{inputs['to']}`",
        f"- ts: `{inputs['ts']}` (2026-01-01T00:00:00Z)",
        f"- nonce: `{inputs['nonce_hex']}`",
        f"- iv: `{inputs['iv_hex']}`",
        f"- ephemeral X25519 private key: `{inputs['ephemeral_private_hex']}`",
        "- body: the object whose canonical JSON is given in step 6 (note the non-ASCII `ü`).",
        "",
        "### Derivation",
        "",
        "1. Header, canonical JSON:",
        "",
        "   ```",
        f"   {derived['canonical_header']}",
        "   ```",
        "",
        "2. AAD = `callbox/v1 aad\\n` + canonical header, hex:",
        "",
        "   ```",
        f"   {derived['aad_hex']}",
        "   ```",
        "",
        f"3. Ephemeral X25519 public key: `{derived['ephemeral_public_hex']}`",
        f"4. X25519 shared secret: `{derived['shared_secret_hex']}`",
        "5. HKDF-SHA256: salt (epk || recipient X25519 public) "
        f"`{derived['hkdf_salt_hex']}`, info `{derived['hkdf_info_hex']}`,"
        f" body key `{derived['body_key_hex']}`",
        "6. Body plaintext, canonical JSON (UTF-8):",
        "",
        "   ```",
        f"   {derived['canonical_body']}",
        "   ```",
        "",
        "7. `ct` (AES-256-GCM ciphertext || tag), b64u:",
        "",
        "   ```",
        f"   {derived['ct_b64u']}",
        "   ```",
        "",
        "8. Signed object (every field but `sig`), canonical JSON:",
        "",
        "   ```",
        f"   {derived['canonical_signed']}",
        "   ```",
        "",
        "   Signed bytes = `callbox/v1 sig\\n` + the above, hex:",
        "",
        "   ```",
        f"   {derived['signed_bytes_hex']}",
        "   ```",
        "",
        "9. `sig`, b64u:",
        "",
        "   ```",
        f"   {derived['sig_b64u']}",
        "   ```",
        "",
        "10. The complete envelope as `seal` writes it (canonical JSON):",
        "",
        "    ```json",
        f"    {vectors['envelope']}",
        "    ```",
        "",
        "### Canonical JSON",
        "",
        "Parse `input`, serialize canonically, expect `canonical` byte for byte:",
        "",
    ]
    for case in vectors["canonical_json"]["cases"]:
        out += ["```", f"input:     {case['input']}", f"canonical: {case['canonical']}", "```", ""]
    out += ["Parse each of these, canonical JSON must refuse it:", "", "```"]
    out += list(vectors["canonical_json"]["refused"])
    out += ["```", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Rewrite, check or print the vectors."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="fail if the JSON file is stale")
    group.add_argument("--markdown", action="store_true", help="print the docs section")
    args = parser.parse_args(argv)
    vectors = build()
    if args.markdown:
        sys.stdout.write(render_markdown(vectors))
        return 0
    text = render_json(vectors)
    if args.check:
        current = VECTORS_PATH.read_text(encoding="utf-8") if VECTORS_PATH.exists() else ""
        if current != text:
            print(f"{VECTORS_PATH} is out of date: run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    VECTORS_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {VECTORS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
