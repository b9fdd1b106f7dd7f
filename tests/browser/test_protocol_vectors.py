"""The browser's protocol core (web/src/protocol/, WebCrypto) against docs/protocol.md.

The test vectors run inside Chromium (web/test/vectors.html), and envelopes cross between the
browser and the Python implementation (services/signaling/) in both directions: sealed by one,
opened by the other, and sealed byte for byte identically by both from the same inputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from playwright.async_api import Page
from support import need

from device.phone import WebServer
from services.signaling.envelope import parse, seal, verify_and_open
from services.signaling.identity import Identity

ROOT = Path(__file__).resolve().parents[2]
VECTORS_FILE = ROOT / "tests" / "vectors" / "envelope_v1.json"
VECTORS_BUNDLE = ROOT / "web" / "dist" / "vectors.js"

# Every check the runner must report as passed: a runner that silently skips one fails here.
REQUIRED_CHECKS = frozenset(
    {
        "errors.reasons",
        "keys.sender.pkcs8",
        "keys.sender.public_from_pkcs8",
        "keys.sender.public_json",
        "keys.sender.fingerprint",
        "keys.recipient.pkcs8",
        "keys.recipient.public_from_pkcs8",
        "keys.recipient.public_json",
        "keys.recipient.fingerprint",
        "keys.safety_number",
        "keys.public_json_refusals",
        "derive.header_canonical",
        "derive.aad",
        "derive.ephemeral_public",
        "derive.shared_secret",
        "derive.hkdf_key",
        "derive.canonical_body",
        "derive.ct",
        "derive.canonical_signed",
        "derive.signed_bytes",
        "derive.sig",
        "seal.envelope_bytes",
        "seal.refusals",
        "open.parse",
        "open.verify",
        "open.body",
        "open.receiver",
        "open.any_serialization",
        "canonical.refusals_js",
        "json.strict",
        "b64u.round_trip",
        "b64u.strict",
        "reject.oversize",
        "reject.bad_json",
        "reject.bad_format",
        "reject.bad_format_body",
        "reject.unknown_version",
        "reject.wrong_recipient",
        "reject.unknown_type",
        "reject.unknown_sender",
        "reject.bad_signature",
        "reject.decrypt_failed",
        "reject.replay",
        "reject.stale",
        "reject.rate_limited",
        "reject.key_changed",
        "identity.generate",
    }
)

# A body that exercises canonical JSON: non-ASCII, emoji, escapes, code-point key order, limits.
TRICKY_BODY: dict[str, Any] = {
    "sdp": "v=0\r\no=- 0 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    "video": False,
    "profile": {"name": 'Haustür 😀 \u2028 \x7f / "q" \\ \t\x1f', "role": "door"},
    "\uff61": 1,
    "\U0001f600": 2,
    "a": [None, True, {"z": [], "": {}}],
    "B": -(2**53 - 1),
    "max": 2**53 - 1,
}


def _vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    return data


async def _open_vectors_page(page: Page, web_server: WebServer) -> None:
    """Load the vector runner and wait until it has installed its window hooks."""
    need(VECTORS_BUNDLE.is_file(), "the built test bundle web/dist/vectors.js")
    await page.goto(f"{web_server.url}/test/vectors.html")
    await page.wait_for_function(
        "typeof window.runVectors === 'function' && typeof window.sealForTest === 'function'",
        timeout=10_000,
    )


def _random_party() -> tuple[Identity, dict[str, str]]:
    """A fresh identity and its raw private keys as hex, for the browser."""
    sign_seed, dh_private = os.urandom(32), os.urandom(32)
    identity = Identity.from_private_bytes(sign_seed, dh_private)
    return identity, {"signPrivateHex": sign_seed.hex(), "dhPrivateHex": dh_private.hex()}


async def test_vectors_pass_in_the_browser(page: Page, web_server: WebServer) -> None:
    """Every step of the test vectors, every refusal and tampering check passes in Chromium."""
    await _open_vectors_page(page, web_server)
    vectors = _vectors()
    result: dict[str, Any] = await page.evaluate("v => window.runVectors(v)", vectors)
    failures = "\n\n".join(f"{f['name']}: {f['error']}" for f in result["failed"])
    assert not result["failed"], f"vector checks failed in the browser:\n{failures}"
    passed = set(result["passed"])
    missing = REQUIRED_CHECKS - passed
    assert not missing, f"the browser runner did not run: {sorted(missing)}"
    cases = len(vectors["canonical_json"]["cases"])
    refused = len(vectors["canonical_json"]["refused"])
    for i in range(cases):
        assert f"canonical.case.{i}" in passed
    for i in range(refused):
        assert f"canonical.refused.{i}" in passed
    assert len(passed) == len(result["passed"]), "a check name was reported twice"


async def test_envelope_sealed_by_the_browser_opens_in_python(
    page: Page, web_server: WebServer
) -> None:
    """The browser seals to a Python recipient; Python parses, verifies and decrypts it."""
    await _open_vectors_page(page, web_server)
    sender, sender_private = _random_party()
    recipient, _ = _random_party()
    text: str = await page.evaluate(
        "p => window.sealForTest(p)",
        {
            **sender_private,
            "from": "flat1-phone",
            "to": "door",
            "recipientKeys": recipient.public_keys.to_json(),
            "type": "invite",
            "callId": "Zm9vYmFyYmF6cXV4cXV1eA",
            "body": TRICKY_BODY,
        },
    )
    data = text.encode("utf-8")
    envelope = parse(data)
    assert (envelope.type, envelope.call_id, envelope.sender, envelope.recipient) == (
        "invite",
        "Zm9vYmFyYmF6cXV4cXV1eA",
        "flat1-phone",
        "door",
    )
    assert envelope.to_bytes() == data, "the browser did not write canonical JSON"
    body = verify_and_open(envelope, sender_keys=sender.public_keys, recipient=recipient)
    assert body == TRICKY_BODY


async def test_envelope_sealed_by_python_opens_in_the_browser(
    page: Page, web_server: WebServer
) -> None:
    """Python seals to a browser recipient; the browser's Receiver runs every check and opens it.

    It refuses a tampered copy.
    """
    await _open_vectors_page(page, web_server)
    sender, _ = _random_party()
    recipient, recipient_private = _random_party()
    data = seal(
        sender,
        type="accept",
        call_id="c7Qm2xVd9LhZ-pR4_tNb0w",
        sender="door",
        recipient="flat1-phone",
        recipient_keys=recipient.public_keys,
        body=TRICKY_BODY,
    )
    params: dict[str, Any] = {
        **recipient_private,
        "envelope": data.decode("utf-8"),
        "address": "flat1-phone",
        "senderAddress": "door",
        "senderKeys": sender.public_keys.to_json(),
    }
    message: dict[str, Any] = await page.evaluate("p => window.openForTest(p)", params)
    assert "rejected" not in message, f"the browser refused Python's envelope: {message}"
    assert message["type"] == "accept"
    assert message["callId"] == "c7Qm2xVd9LhZ-pR4_tNb0w"
    assert message["from"] == "door"
    assert message["to"] == "flat1-phone"
    assert message["body"] == TRICKY_BODY

    tampered = json.loads(data)
    tampered["call_id"] = "another-call"
    params["envelope"] = json.dumps(tampered)
    refused: dict[str, Any] = await page.evaluate("p => window.openForTest(p)", params)
    assert refused.get("rejected") == "bad_signature", refused


async def test_browser_and_python_seal_identical_bytes(page: Page, web_server: WebServer) -> None:
    """From the same keys, inputs, nonce, IV and ephemeral key, both write the same envelope."""
    await _open_vectors_page(page, web_server)
    sender, sender_private = _random_party()
    recipient, _ = _random_party()
    nonce, iv, ephemeral = os.urandom(16), os.urandom(12), os.urandom(32)
    ts = 1_767_225_600_123
    python = seal(
        sender,
        type="reoffer",
        call_id="call_1-x",
        sender="door",
        recipient="flat-12.kitchen",
        recipient_keys=recipient.public_keys,
        body=TRICKY_BODY,
        ts_ms=ts,
        nonce=nonce,
        iv=iv,
        ephemeral=X25519PrivateKey.from_private_bytes(ephemeral),
    )
    browser: str = await page.evaluate(
        "p => window.sealForTest(p)",
        {
            **sender_private,
            "from": "door",
            "to": "flat-12.kitchen",
            "recipientKeys": recipient.public_keys.to_json(),
            "type": "reoffer",
            "callId": "call_1-x",
            "body": TRICKY_BODY,
            "ts": ts,
            "nonceHex": nonce.hex(),
            "ivHex": iv.hex(),
            "ephemeralPrivateHex": ephemeral.hex(),
        },
    )
    assert browser.encode("utf-8") == python


# docs/protocol.md, "Site directory signature" (tests/signaling/test_directory.py checks the
# same values in Python)
DIRECTORY_ADMIN_PUBLIC = "FnrfvV8VsR_4RPufmgrP0-A1UKscw_KOkYaKhlls-uM"
DIRECTORY_SIGNED = (
    'callbox/v1 directory\n{"entries":[{"address":"door","flat":"","keys":{"dh":'
    '"D6e1g0f78k22fgi-uEUsPtEbxtCK_O6_sM_d62mTdFk","sign":"Re8Q6wNFzRfzfoLBwqMYMvHIYU86-F3cbexMrmrILaI"}'
    ',"name":"Haustür","rights":[],"role":"door"},{"address":"flat-12.kitchen","flat":"12","keys":'
    '{"dh":"mpcRvmHOoKOXv34c-w1UeBxM90_hi4SJTLepAEA8sxM","sign":"6vpaJgRxxa1qYOzvo-D3OOmsPbgDtq7XBrX1LjuJviA"}'
    ',"name":"Flat 12 kitchen","rights":["monitor","unlock"],"role":"indoor"}],'
    '"issued_at_ms":1767225600000,"site":"block-7","v":1,"version":3}'
)
DIRECTORY_SIG = (
    "oTM2jjBjoE2yWW0uErTVHO3UQcF4wE31sdK_3Dc_6Q7RP2uNxyavtm_zIdl1W6ZTA7YwPZDjUBkaJR-Yo9rzCQ"
)


async def test_the_site_directory_vector_in_the_browser(page: Page, web_server: WebServer) -> None:
    """The page accepts the vector's directory (any member order), refuses it altered."""
    await _open_vectors_page(page, web_server)
    fields = json.loads(DIRECTORY_SIGNED.partition("\n")[2])
    published = {**fields, "sig": DIRECTORY_SIG}
    shuffled = json.dumps(dict(reversed(list(published.items()))), ensure_ascii=True)

    async def read(document: str, site: str = "block-7") -> dict[str, Any]:
        params = {
            "document": document,
            "site": site,
            "adminKey": DIRECTORY_ADMIN_PUBLIC,
            "address": "flat-12.kitchen",
        }
        result: dict[str, Any] = await page.evaluate("p => window.readDirectoryForTest(p)", params)
        return result

    accepted = await read(shuffled)
    assert accepted.get("signedBytes") == DIRECTORY_SIGNED, accepted
    assert accepted["version"] == 3
    assert [e["address"] for e in accepted["entries"]] == ["door", "flat-12.kitchen"]
    kitchen = accepted["entries"][1]
    assert kitchen["flat"] == "12" and sorted(kitchen["rights"]) == ["monitor", "unlock"]
    assert kitchen["keys"]["sign"] == "6vpaJgRxxa1qYOzvo-D3OOmsPbgDtq7XBrX1LjuJviA"
    assert accepted["peersOf"] == ["door"]  # an indoor unit follows the door stations
    assert (await read(shuffled, site="block-8"))["refused"] == "other_site"
    unsigned = json.dumps(fields)
    assert (await read(unsigned))["refused"] == "unsigned"
    altered = json.dumps({**published, "version": 4})
    assert (await read(altered))["refused"] == "bad_signature"
    renamed = json.loads(shuffled)
    renamed["entries"][0]["name"] = "Haustur"
    assert (await read(json.dumps(renamed)))["refused"] == "bad_signature"
    bad_sig = json.dumps({**published, "sig": DIRECTORY_SIG[:-2] + "AA"})
    assert (await read(bad_sig))["refused"] == "bad_signature"
