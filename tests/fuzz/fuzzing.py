"""Shared settings and strategies of the fuzz tests (hypothesis).

Under ``make test`` every fuzz test is short and deterministic: a fixed number of examples
per test, derandomized (the same inputs on every run and machine), no example database, no
deadline (a loaded CI machine must not turn slowness into a failure). A long run:
``CALLBOX_FUZZ_EXAMPLES=N`` gives every test N examples with fresh random seeds (``make fuzz``;
docs/security.md, "Fuzzing").
"""

from __future__ import annotations

import json
import os
from typing import Any, Final

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ_EXAMPLES_ENV: Final = "CALLBOX_FUZZ_EXAMPLES"
"""Examples per test for a long run; unset in ``make test``."""


def fuzz_settings(ci_examples: int) -> settings:
    """``ci_examples`` fixed examples, or a long random run when CALLBOX_FUZZ_EXAMPLES is set."""
    long_run = os.environ.get(FUZZ_EXAMPLES_ENV, "")
    common: dict[str, Any] = {
        "deadline": None,
        "database": None,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    }
    if long_run:
        return settings(max_examples=int(long_run), derandomize=False, **common)
    return settings(max_examples=ci_examples, derandomize=True, print_blob=True, **common)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats()
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
"""Python values json.dumps accepts (NaN and Infinity included: they come out as bare words)."""


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    """Arrays or objects nested up to 100,000 deep, balanced or not, inside a prefix or not."""
    depth = draw(st.integers(min_value=1, max_value=100_000))
    opener = draw(st.sampled_from([b"[", b'{"a":', b'[{"b":']))
    closer = {b"[": b"]", b'{"a":': b"}", b'[{"b":': b"}]"}[opener]
    prefix = draw(
        st.sampled_from([b"", b'{"command": "status", "args": {"x": ', b'{"v": 1, "body": '])
    )
    closed = draw(st.booleans())
    return prefix + opener * depth + (b"1" + closer * depth if closed else b"")


def mutate_bytes(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` with a few bytes flipped, inserted, deleted or the end cut off."""

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        out = bytearray(data)
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            if not out:
                break
            where = draw(st.integers(min_value=0, max_value=len(out) - 1))
            action = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
            if action == "flip":
                out[where] ^= draw(st.integers(min_value=1, max_value=255))
            elif action == "insert":
                out[where:where] = draw(st.binary(min_size=1, max_size=8))
            elif action == "delete":
                del out[where]
            else:
                del out[where:]
        return bytes(out)

    return mutated()


def dumps(value: Any) -> bytes:
    """JSON text of ``value``; NaN and Infinity as bare words (not JSON: a hostile peer's)."""
    return json.dumps(value, allow_nan=True).encode("utf-8")
