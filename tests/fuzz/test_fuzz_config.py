"""Fuzz: the configuration validator (device/config, `parse_config` and `load_config`).

Any text (or file bytes) gives a `CallboxConfig` or `ConfigError`; nothing else escapes.
Inputs: any text, TOML-looking text, the documented example with values replaced or keys
removed, arrays and inline tables nested up to 100,000 deep, any bytes in a file.
"""

from __future__ import annotations

import copy
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from device.config import CallboxConfig, ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "callbox.example.toml"
EXAMPLE_DATA: dict[str, Any] = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
FILE = Path("/etc/callbox/callbox.toml")

toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["", "pi", "sim", "door", "indoor", "web", "GPIO17", "/dev/null", "0"])
)
toml_values = st.recursive(
    toml_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def validate(text: str) -> None:
    """A configuration, or ConfigError naming the file; nothing else."""
    try:
        config = parse_config(text, FILE)
    except ConfigError as err:
        assert str(err).startswith(f"{FILE}: ")
        return
    assert isinstance(config, CallboxConfig)


def paths(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path in ``data``, tables and their keys (array elements not entered)."""
    found: list[tuple[str, ...]] = []
    for key, value in data.items():
        found.append((*prefix, key))
        if isinstance(value, dict):
            found.extend(paths(value, (*prefix, key)))
    return found


EXAMPLE_PATHS = paths(EXAMPLE_DATA)


@st.composite
def edited_examples(draw: st.DrawFn) -> str:
    """The documented example with one to three keys replaced, removed or added."""
    data = copy.deepcopy(EXAMPLE_DATA)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(EXAMPLE_PATHS))
        table = data
        for key in path[:-1]:
            value = table.get(key)
            if not isinstance(value, dict):
                break
            table = value
        else:
            action = draw(st.sampled_from(["replace", "remove", "add"]))
            if action == "remove":
                table.pop(path[-1], None)
            elif action == "add":
                table[draw(st.text(min_size=1, max_size=8))] = draw(toml_values)
            else:
                table[path[-1]] = draw(toml_values)
    return tomlkit.dumps(data)


def test_the_example_is_valid() -> None:
    assert isinstance(parse_config(tomlkit.dumps(EXAMPLE_DATA), FILE), CallboxConfig)


@fuzz_settings(ci_examples=500)
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    validate(text)


@fuzz_settings(ci_examples=500)
@given(st.text(alphabet="[]{}=\",.\n '#abcdefrolsitpnu0123456789-+:", max_size=200))
def test_toml_looking_text(text: str) -> None:
    validate(text)


@fuzz_settings(ci_examples=200)
@given(edited_examples())
def test_edited_examples(text: str) -> None:
    validate(text)


@fuzz_settings(ci_examples=30)
@given(
    st.integers(min_value=1, max_value=100_000),
    st.sampled_from([("[", "]"), ("{a=", "}"), ("[{a=", "}]")]),
    st.booleans(),
)
def test_deep_nesting(depth: int, brackets: tuple[str, str], closed: bool) -> None:
    opener, closer = brackets
    validate(f"role = {opener * depth}{'1' + closer * depth if closed else ''}\n")


@fuzz_settings(ci_examples=200)
@given(st.binary(max_size=300))
def test_any_file_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "callbox.toml"
        path.write_bytes(data)
        try:
            config = load_config(path)
        except ConfigError as err:
            assert str(path) in str(err)
            return
        assert isinstance(config, CallboxConfig)


def test_a_100000_deep_array_is_refused_as_a_config_error() -> None:
    # What the fuzz found: tomllib's RecursionError escaped parse_config.
    try:
        parse_config("role = " + "[" * 100_000 + "\n", FILE)
    except ConfigError as err:
        assert err.reason == "not valid TOML: arrays or tables nested too deeply"
    else:
        raise AssertionError("accepted")
