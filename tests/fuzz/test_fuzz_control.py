"""Fuzz: the control socket's request parser (device/daemon/_control.py, `parse_request`).

Any bytes give a `ControlRequest` or `BadRequestError`; nothing else escapes, and what is
accepted is no deeper than MAX_REQUEST_DEPTH. Inputs: raw bytes, JSON of any shape, requests
with random commands and args, real CLI requests with bytes mutated, nesting up to 100,000
deep (the RecursionError of issue 15), lines around the size limit.
"""

from __future__ import annotations

import json
from typing import Any

from fuzzing import deep_nesting, dumps, fuzz_settings, json_values, mutate_bytes
from hypothesis import given
from hypothesis import strategies as st

from device.daemon._control import (
    MAX_REQUEST_BYTES,
    MAX_REQUEST_DEPTH,
    BadRequestError,
    ControlRequest,
    parse_request,
)

CLI_REQUESTS = [
    b'{"command": "status", "args": {}}\n',
    b'{"command": "call", "args": {"address": "door", "video": true}}\n',
    b'{"command": "peer_keys", "args": {"address": "flat1-phone"}}\n',
    b'{"command": "press", "args": {"role": "doorbell"}}\n',
]


def depth(value: Any) -> int:
    """How deep arrays and objects nest in a decoded value (1 for an object of scalars)."""
    if isinstance(value, dict):
        return 1 + max((depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(item) for item in value), default=0)
    return 0


def parse_any(line: bytes) -> None:
    """A request no deeper than the limit, or BadRequestError; nothing else."""
    try:
        parsed = parse_request(line)
    except BadRequestError as err:
        assert str(err)
        return
    assert isinstance(parsed, ControlRequest)
    assert isinstance(parsed.command, str) and parsed.command
    assert isinstance(parsed.args, dict)
    assert depth({"command": parsed.command, "args": parsed.args}) <= MAX_REQUEST_DEPTH


requests = st.fixed_dictionaries(
    {},
    optional={
        "command": st.text(max_size=12) | json_values,
        "args": st.dictionaries(st.text(max_size=8), json_values, max_size=4) | json_values,
        "sudo": json_values,
    },
)


@fuzz_settings(ci_examples=1000)
@given(st.binary(max_size=512))
def test_any_bytes(line: bytes) -> None:
    parse_any(line)


@fuzz_settings(ci_examples=300)
@given(json_values)
def test_any_json(value: Any) -> None:
    parse_any(dumps(value))


@fuzz_settings(ci_examples=400)
@given(requests)
def test_requests_with_any_command_and_args(request: dict[str, Any]) -> None:
    parse_any(dumps(request) + b"\n")


@fuzz_settings(ci_examples=800)
@given(st.sampled_from(CLI_REQUESTS).flatmap(mutate_bytes))
def test_mutated_cli_requests(line: bytes) -> None:
    parse_any(line)


@fuzz_settings(ci_examples=50)
@given(deep_nesting())
def test_deep_nesting(line: bytes) -> None:
    parse_any(line)


@fuzz_settings(ci_examples=50)
@given(st.integers(min_value=MAX_REQUEST_BYTES - 64, max_value=MAX_REQUEST_BYTES + 64))
def test_lines_around_the_size_limit(size: int) -> None:
    head = b'{"command": "status", "args": {"x": "'
    line = head + b"a" * max(0, size - len(head) - 3) + b'"}}'
    parse_any(line)
    if len(line) > MAX_REQUEST_BYTES:
        parse_any(json.dumps({"x": "a" * size}).encode())
