"""The access check against a real access.json, the real scrypt, and an injected clock.

Lockout growth and reset (and across a restart), one-time and time-limited codes,
schedules, a one-time code used twice at once, codes never in the file or the log, a
corrupt file refused with its name and left as it was.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import stat
from pathlib import Path

import pytest
from access_helpers import MONDAY_NOON, Clock, enroll

from hal.cards import CardRead
from services.access import (
    LOCKED,
    AccessControl,
    AccessStore,
    AccessStoreError,
    EntryKind,
    LockoutPolicy,
)

PIN = "2580"
POLICY = LockoutPolicy(max_attempts=3, lockout_s=30.0, lockout_max_s=100.0, quiet_s=3600.0)


def control(state_dir: Path, clock: Clock) -> AccessControl:
    return AccessControl(AccessStore(state_dir), policy=POLICY, clock=clock)


async def test_a_right_code_is_granted_and_a_wrong_one_refused(tmp_path: Path) -> None:
    await asyncio.to_thread(enroll, tmp_path, PIN)
    access = control(tmp_path, Clock())
    granted = await access.check_code(PIN, via="keypad")
    assert (granted.granted, granted.who) == (True, "Smith (flat 12)")
    refused = await access.check_code("2581", via="keypad")
    assert (refused.granted, refused.who, refused.reason) == (False, "", "no such code")


async def test_wrong_codes_lock_for_a_growing_time_and_a_success_resets(tmp_path: Path) -> None:
    await asyncio.to_thread(enroll, tmp_path, PIN)
    clock = Clock()
    access = control(tmp_path, clock)

    async def wrong_three_times() -> None:
        for _ in range(3):
            assert not (await access.check_code("9999", via="keypad")).locked

    await wrong_three_times()
    assert (await access.check_code(PIN, via="keypad")).reason == LOCKED, "locked: unchecked"
    clock.advance(29.9)
    assert (await access.check_code(PIN, via="keypad")).locked
    clock.advance(0.2)
    await wrong_three_times()  # the second lockout in a row: 60 s
    clock.advance(59.0)
    assert (await access.check_code(PIN, via="keypad")).locked
    clock.advance(1.1)
    await wrong_three_times()  # the third: 120 s, capped at lockout_max_s = 100 s
    assert access.locked_until("keypad") == pytest.approx(clock.now + 100.0)
    clock.advance(100.1)
    assert (await access.check_code(PIN, via="keypad")).granted
    await wrong_three_times()  # after a success, back to the first lockout's length
    assert access.locked_until("keypad") == pytest.approx(clock.now + 30.0)


async def test_a_quiet_hour_forgets_wrong_attempts(tmp_path: Path) -> None:
    await asyncio.to_thread(enroll, tmp_path, PIN)
    clock = Clock()
    access = control(tmp_path, clock)
    for _ in range(2):
        await access.check_code("9999", via="keypad")
    clock.advance(3600.0)
    for _ in range(2):
        await access.check_code("9999", via="keypad")
    assert not (await access.check_code(PIN, via="keypad")).locked


async def test_a_lockout_survives_a_restart(tmp_path: Path) -> None:
    await asyncio.to_thread(enroll, tmp_path, PIN)
    clock = Clock()
    first = control(tmp_path, clock)
    for _ in range(3):
        await first.check_code("9999", via="keypad")
    again = control(tmp_path, clock)  # a new daemon on the same state directory
    await again.load()
    assert again.status()["keypad_locked_until"] is not None
    assert (await again.check_code(PIN, via="keypad")).locked


async def test_one_time_and_time_limited_codes(tmp_path: Path) -> None:
    clock = Clock()
    hour = 3600.0
    await asyncio.to_thread(enroll, tmp_path, "4711", "Parcel", kind=EntryKind.VISITOR, once=True)
    await asyncio.to_thread(
        enroll,
        tmp_path,
        "8642",
        "Guest",
        kind=EntryKind.VISITOR,
        valid_from=MONDAY_NOON + hour,
        valid_until=MONDAY_NOON + 2 * hour,
    )
    access = control(tmp_path, clock)
    assert (await access.check_code("4711", via="keypad")).granted
    spent = await access.check_code("4711", via="keypad")
    assert (spent.granted, spent.reason) == (False, "one-time code already used")
    early = await access.check_code("8642", via="keypad")
    assert (early.granted, early.who, early.reason) == (False, "Guest (flat 12)", "not valid yet")
    clock.advance(hour)
    assert (await access.check_code("8642", via="keypad")).granted
    clock.advance(hour)
    assert (await access.check_code("8642", via="keypad")).reason == "expired"
    # refused for its validity, a right code is no guess: no lockout however often
    for _ in range(5):
        await access.check_code("8642", via="keypad")
    assert not access.status()["keypad_locked_until"]


async def test_a_schedule_lets_in_at_its_hours_and_days_only(tmp_path: Path) -> None:
    await asyncio.to_thread(
        enroll,
        tmp_path,
        "3579",
        "Cleaner",
        schedule=("08:00-10:00", "22:00-02:00"),
        days=frozenset({0, 2}),  # Monday and Wednesday
    )
    clock = Clock()
    access = control(tmp_path, clock)

    async def at(day: int, hour: int, minute: int = 0) -> str:
        when = datetime.datetime(2026, 12, 7 + day, hour, minute)  # 7 December: a Monday
        clock.now = when.timestamp()
        return (await access.check_code("3579", via="keypad")).reason

    assert await at(0, 8) == ""
    assert await at(0, 12) == "outside its schedule"
    assert await at(1, 9) == "outside its schedule", "Tuesday"
    assert await at(1, 1, 30) == "", "Monday's 22:00-02:00 runs into Tuesday"
    assert await at(2, 23) == ""
    assert await at(3, 3) == "outside its schedule"


async def test_a_one_time_code_used_twice_at_once_lets_in_once(tmp_path: Path) -> None:
    await asyncio.to_thread(enroll, tmp_path, "4711", "Parcel", kind=EntryKind.VISITOR, once=True)
    first, second = control(tmp_path, Clock()), control(tmp_path, Clock())  # as two processes
    decisions = await asyncio.gather(
        first.check_code("4711", via="keypad"), second.check_code("4711", via="keypad")
    )
    assert sorted(d.granted for d in decisions) == [False, True]
    assert {d.reason for d in decisions} == {"", "one-time code already used"}


async def test_cards_known_and_unknown_and_their_own_lockout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await asyncio.to_thread(enroll, tmp_path, "wiegand26:12:34567", "Jones", kind=EntryKind.CARD)
    await asyncio.to_thread(enroll, tmp_path, PIN)
    access = control(tmp_path, Clock())
    caplog.set_level(logging.INFO)
    known = await access.check_card(CardRead("entrance", "wiegand26", "12:34567"))
    assert (known.granted, known.who) == (True, "Jones (flat 12)")
    for number in ("1:1", "1:2", "1:3"):
        assert not (await access.check_card(CardRead("entrance", "wiegand26", number))).granted
    assert "unknown card" in caplog.text and "wiegand26:1:3" in caplog.text, "to enroll it"
    assert (await access.check_card(CardRead("entrance", "wiegand26", "12:34567"))).locked
    shown = [attempt.get("card", "") for attempt in access.status()["last_attempts"]]
    assert shown == ["", "wiegand26:1:1", "wiegand26:1:2", "wiegand26:1:3", ""], (
        "the status names a card by its number only when the list does not know it"
    )
    assert "12:34567" not in caplog.text, "a known card (even locked out) is not logged by number"
    assert (await access.check_code(PIN, via="keypad")).granted, "the keypad is not locked"
    as_code = await access.check_code("1234567", via="keypad")
    assert not as_code.granted, "a card's number is no code"


async def test_codes_are_never_in_the_file_nor_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await asyncio.to_thread(enroll, tmp_path, "731904")
    access = control(tmp_path, Clock())
    await access.check_code("731904", via="keypad")
    await access.check_code("731905", via="keypad")
    path = tmp_path / "access.json"
    raw = path.read_bytes()
    for code in (b"731904", b"731905"):
        assert code not in raw
    assert "731904" not in caplog.text and "731905" not in caplog.text
    assert "access granted at keypad" in caplog.text and "access refused at keypad" in caplog.text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    kdf = next(iter(json.loads(raw)["kdfs"].values()))
    assert (kdf["name"], kdf["n"], kdf["r"], kdf["p"]) == ("scrypt", 2**14, 8, 1)


async def test_a_corrupt_file_is_named_refused_and_left_as_it_was(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await asyncio.to_thread(enroll, tmp_path, PIN)
    path = tmp_path / "access.json"
    text = path.read_text()
    hand_edited = text.replace('"kind": "pin"', '"kind": "pni"')
    path.write_text(hand_edited)
    access = control(tmp_path, Clock())
    await access.load()
    assert str(path) in access.status()["problem"]
    decision = await access.check_code(PIN, via="keypad")
    assert not decision.granted
    assert str(path) in caplog.text and "'pni'" in caplog.text
    assert path.read_text() == hand_edited, "nothing lost: the file is not rewritten"
    with pytest.raises(AccessStoreError, match="not a valid access list"):
        await asyncio.to_thread(enroll, tmp_path, "9753")
    path.write_text("{not json")
    with pytest.raises(AccessStoreError, match=str(path)):
        await asyncio.to_thread(AccessStore(tmp_path).read)


async def test_raised_kdf_parameters_rehash_an_entry_at_its_next_use(tmp_path: Path) -> None:
    await asyncio.to_thread(enroll, tmp_path, PIN)
    path = tmp_path / "access.json"
    data = json.loads(path.read_text())
    old = data["kdf"]
    data["kdfs"]["new"] = {**data["kdfs"][old], "n": 2**15, "salt": "bmV3LXNhbHQtMTYtYnl0ZXM"}
    data["kdf"] = "new"
    path.write_text(json.dumps(data))
    access = control(tmp_path, Clock())
    assert (await access.check_code(PIN, via="keypad")).granted
    after = json.loads(path.read_text())
    assert after["entries"][0]["kdf"] == "new" and list(after["kdfs"]) == ["new"]
    assert (await access.check_code(PIN, via="keypad")).granted
