"""Fuzz: the envelope parser and the opening of what it accepts (services/signaling/envelope.py).

Any bytes give an `Envelope` (and then a body or a refusal) or `RejectedMessage`; nothing else
escapes. Inputs: raw bytes, JSON of any shape, a real sealed envelope with fields replaced,
removed or added, its bytes mutated, and nesting up to 100,000 deep.
"""

from __future__ import annotations

import json
from typing import Any

from fuzzing import deep_nesting, dumps, fuzz_settings, json_values, mutate_bytes
from hypothesis import given
from hypothesis import strategies as st

from services.signaling.envelope import Envelope, parse, seal, verify_and_open
from services.signaling.errors import RejectedMessage
from services.signaling.identity import Identity

SENDER = Identity.from_private_bytes(bytes(range(32)), bytes(range(32, 64)))
RECIPIENT = Identity.from_private_bytes(bytes(range(64, 96)), bytes(range(96, 128)))
WIRE = seal(
    SENDER,
    type="invite",
    call_id="c0ffee0123456789",
    sender="door",
    recipient="flat1",
    recipient_keys=RECIPIENT.public_keys,
    body={"sdp": "v=0\r\n", "video": True},
    ts_ms=1_700_000_000_000,
    nonce=bytes(16),
    iv=bytes(12),
)
ENVELOPE: dict[str, Any] = json.loads(WIRE)


def open_any(data: bytes) -> None:
    """Parse and open ``data``: an envelope and a body, or RejectedMessage; nothing else."""
    try:
        envelope = parse(data)
    except RejectedMessage:
        return
    assert isinstance(envelope, Envelope)
    try:
        body = verify_and_open(envelope, sender_keys=SENDER.public_keys, recipient=RECIPIENT)
    except RejectedMessage:
        return
    assert isinstance(body, dict)


@st.composite
def edited_envelopes(draw: st.DrawFn) -> bytes:
    """The real envelope with one to three fields (top level or body) replaced, removed or added."""
    envelope = json.loads(WIRE)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        target = (
            envelope
            if draw(st.booleans()) or not isinstance(envelope.get("body"), dict)
            else envelope["body"]
        )
        keys = sorted(target) or ["v"]
        key = draw(st.sampled_from([*keys, "extra"]))
        action = draw(st.sampled_from(["replace", "remove"]))
        if action == "remove":
            target.pop(key, None)
        else:
            target[key] = draw(json_values)
    return dumps(envelope)


def test_the_real_envelope_opens() -> None:
    envelope = parse(WIRE)
    body = verify_and_open(envelope, sender_keys=SENDER.public_keys, recipient=RECIPIENT)
    assert body == {"sdp": "v=0\r\n", "video": True}


@fuzz_settings(ci_examples=1000)
@given(st.binary(max_size=512))
def test_any_bytes(data: bytes) -> None:
    open_any(data)


@fuzz_settings(ci_examples=300)
@given(json_values)
def test_any_json(value: Any) -> None:
    open_any(dumps(value))


@fuzz_settings(ci_examples=400)
@given(edited_envelopes())
def test_edited_envelopes(data: bytes) -> None:
    open_any(data)


@fuzz_settings(ci_examples=800)
@given(mutate_bytes(WIRE))
def test_mutated_wire_bytes(data: bytes) -> None:
    open_any(data)


@fuzz_settings(ci_examples=50)
@given(deep_nesting())
def test_deep_nesting(data: bytes) -> None:
    open_any(data)
