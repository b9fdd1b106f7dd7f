"""TURN REST credentials (services/media/turn.py): minting, and checking an invite's entries."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from services.media.errors import MediaError
from services.media.turn import (
    MAX_SERVERS,
    TurnMinter,
    credential_expiry,
    parse_ice_servers,
    rest_password,
)

SECRET = "north-gate-relay-secret-0123456789"
URL = "turns:relay.home.example:5349?transport=tcp"


def test_the_password_is_base64_hmac_sha1_of_the_username() -> None:
    # the vector of docs/protocol.md ("ice_servers")
    username = "1796650000:flat1-phone"
    expected = base64.b64encode(
        hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()
    ).decode()
    assert rest_password(SECRET, username) == expected == "gOZvMF65iehFsNmbk1LN50CjDvQ="


def test_minted_expiries_round_up_so_one_window_gives_one_credential() -> None:
    minter = TurnMinter(urls=(URL,), secret=SECRET, ttl_s=3600, granularity_s=300)
    first, second = minter.mint("phone", 1_000_000.0), minter.mint("phone", 1_000_100.0)
    assert first == second
    assert first.username == "1003800:phone" and credential_expiry(first.username) == 1003800
    assert minter.mint("flat2", 1_000_000.0).username == "1003800:flat2"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"urls": ()}, "at least one"),
        ({"urls": ("stun:relay.example",)}, "not a turn: or turns: URL"),
        ({"urls": ("turns:relay.example?transport=udp",)}, "turns: runs over TCP"),
        ({"secret": "short"}, "too short"),
        ({"ttl_s": 10}, "under 60 s"),
    ],
)
def test_a_minter_refuses_unusable_settings(kwargs: dict[str, object], reason: str) -> None:
    settings: dict[str, object] = {"urls": (URL,), "secret": SECRET, **kwargs}
    with pytest.raises(MediaError, match=reason):
        TurnMinter(**settings)  # type: ignore[arg-type]


def test_valid_entries_pass_and_stun_needs_no_credentials() -> None:
    raw = [
        {"urls": ["stun:stun.home.example:3478"]},
        {"urls": [URL], "username": "2000:phone", "credential": "c"},
    ]
    usable, problems = parse_ice_servers(raw, now=1000.0)
    assert problems == []
    assert [e.urls for e in usable] == [("stun:stun.home.example:3478",), (URL,)]
    assert usable[1].to_json() == {"urls": [URL], "username": "2000:phone", "credential": "c"}


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("turn:x", "ice_servers is a str, not a list"),
        (["turn:x"], "ice_servers[0]: is a str, not an object"),
        ([{"urls": []}], "urls must be a list of 1 to 4 URLs"),
        ([{"urls": "stun:s.example"}], "urls must be a list of 1 to 4 URLs"),
        ([{"urls": ["turn:a"] * 5}], "urls must be a list of 1 to 4 URLs"),
        ([{"urls": [7]}], "not a string"),
        ([{"urls": ["turn:[::1]:3478"]}], "not a stun:, turn: or turns: URL"),
        ([{"urls": ["turn:relay:0"]}], "port must be 1 to 65535"),
        ([{"urls": ["turn:relay"], "username": 5, "credential": "c"}], "username must be text"),
        ([{"urls": ["turn:relay"], "username": "u", "credential": "c" * 300}], "credential must"),
        ([{"urls": ["turn:relay"], "username": "999:p", "credential": "c"}], "expired 1 s ago"),
    ],
)
def test_bad_entries_are_refused_with_the_reason(raw: object, problem: str) -> None:
    usable, problems = parse_ice_servers(raw, now=1000.0)
    assert usable == [] and len(problems) == 1 and problem in problems[0], problems


def test_more_entries_than_allowed_keep_the_first_ones() -> None:
    raw = [{"urls": [f"stun:s{i}.example"]} for i in range(MAX_SERVERS + 2)]
    usable, problems = parse_ice_servers(raw, now=0.0)
    assert len(usable) == MAX_SERVERS and problems == [
        f"ice_servers has {MAX_SERVERS + 2} entries: only the first {MAX_SERVERS} used"
    ]


def test_no_ice_servers_is_nothing_to_refuse() -> None:
    assert parse_ice_servers(None, now=0.0) == ([], [])
