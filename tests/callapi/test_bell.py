"""The ``bell`` of an invite (docs/protocol.md): what is accepted, and why the rest is not."""

from __future__ import annotations

import pytest

from services.callapi import Bell
from services.callapi.properties import bell_json, parse_bell


@pytest.mark.parametrize(
    "bell",
    [
        Bell("doorbell"),
        Bell("smith", "Flat 12 - Smith", "code"),
        Bell("flat:" + "7" * 32, "Flat " + "7" * 32, "button"),
        Bell("x" * 40, "é" * 64),
    ],
)
def test_ok__a_bell_goes_through_an_invite_unchanged(bell: Bell) -> None:
    assert parse_bell(bell_json(bell)) == bell


def test_ok__label_and_via_may_be_left_out() -> None:
    assert parse_bell({"name": "smith"}) == Bell("smith", "", "button")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("smith", "must be an object, not str"),
        (["smith"], "must be an object, not list"),
        ({}, "bell.name must be a printable text"),
        ({"name": ""}, "bell.name must not be empty"),
        ({"name": 12}, "bell.name must be a printable text"),
        ({"name": "x" * 41}, "at most 40 characters"),
        ({"name": "a", "label": "x" * 65}, "bell.label must be a printable text of at most 64"),
        ({"name": "a", "label": "Flat\n12"}, "bell.label must be a printable text"),
        ({"name": "a", "via": "keypad"}, "bell.via must be one of button, code, not 'keypad'"),
        ({"name": "a", "colour": "red"}, "unknown keys ['colour']"),
    ],
)
def test_fail__a_malformed_bell_says_why(value: object, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_bell(value)
    assert reason in str(info.value)
