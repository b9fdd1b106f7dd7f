"""The call log on a real SQLite file.

Round trip, pruning, missed calls, the CLI reader, corrupt and newer files.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.intercom.calllog import (
    SCHEMA_VERSION,
    CallLog,
    CallLogError,
    CallRecord,
    read_call_log,
)

T0 = 1_700_000_000.0


def record(n: int, *, missed: bool = False, **changes: Any) -> CallRecord:
    """Call number `n`, started at T0 + n minutes; answered after 5 s unless missed."""
    started = T0 + 60 * n
    fields: dict[str, Any] = {
        "call_id": f"call-{n}",
        "peer": "door",
        "peer_name": "Front door",
        "direction": "in",
        "video": True,
        "started_at": started,
        "answered_at": None if missed else started + 5,
        "ended_at": started + 35,
        "status": "NOANSWER" if missed else "COMPLETE",
        "missed": missed,
    }
    fields.update(changes)
    return CallRecord(**fields)


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[CallLog]:
    call_log = CallLog(tmp_path / "state" / "calls.db")
    await call_log.open()
    yield call_log
    await call_log.close()


async def test_ok__records_come_back_newest_first_with_every_field(log: CallLog) -> None:
    first = record(1, snapshot="20240101T120000-door-ab12cd34.jpg", note="door opened x1")
    second = record(2, missed=True, note="dnd", video=False, direction="in")
    third = record(3, direction="out", peer="flat2", peer_name="Flat 2")
    for item in (first, third, second):  # insertion order is not the order shown
        await log.add(item)
    assert await log.recent() == [third, second, first]
    assert await log.recent(limit=1) == [third]


async def test_ok__file_is_created_in_wal_mode(log: CallLog) -> None:
    assert log.path.is_file()
    conn = sqlite3.connect(log.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        conn.close()


def test_ok__duration() -> None:
    assert record(1).duration_s == 30.0
    assert record(1, missed=True).duration_s == 0.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"direction": "sideways"}, "direction must be 'in' or 'out'"),
        ({"status": "HAPPY"}, "status must be a CallStatus name"),
    ],
)
def test_fail__bad_record(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        record(1, **changes)


async def test_ok__keeps_only_the_newest(tmp_path: Path) -> None:
    log = CallLog(tmp_path / "calls.db", keep=3)
    await log.open()
    try:
        for n in range(1, 6):
            await log.add(record(n))
        assert [item.call_id for item in await log.recent(limit=10)] == [
            "call-5",
            "call-4",
            "call-3",
        ]
    finally:
        await log.close()


async def test_ok__missed_since(log: CallLog) -> None:
    await log.add(record(1, missed=True))
    await log.add(record(2))
    await log.add(record(3, missed=True))
    await log.add(record(4, missed=True))
    assert await log.missed_since(0) == 3
    assert await log.missed_since(T0 + 60 * 3) == 2
    assert await log.missed_since(T0 + 60 * 5) == 0


async def test_ok__survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    log = CallLog(path)
    await log.open()
    await log.add(record(1))
    await log.close()
    await log.close()  # idempotent
    again = CallLog(path)
    await again.open()
    try:
        await again.add(record(2))
        assert [item.call_id for item in await again.recent()] == ["call-2", "call-1"]
    finally:
        await again.close()


async def test_fail__use_before_open_or_after_close(tmp_path: Path) -> None:
    log = CallLog(tmp_path / "calls.db")
    with pytest.raises(CallLogError, match=r"calls\.db: call log is not open"):
        await log.add(record(1))
    await log.open()
    await log.close()
    with pytest.raises(CallLogError, match="call log is not open"):
        await log.recent()


async def test_ok__cli_reads_while_the_daemon_writes(log: CallLog) -> None:
    await log.add(record(1))
    await log.add(record(2, missed=True))
    shown = await asyncio.to_thread(read_call_log, log.path, 1)
    assert shown == [record(2, missed=True)]
    await log.close()
    assert await asyncio.to_thread(read_call_log, log.path) == [record(2, missed=True), record(1)]


def test_ok__cli_missing_file_is_an_empty_log(tmp_path: Path) -> None:
    assert read_call_log(tmp_path / "nothing.db") == []
    assert not (tmp_path / "nothing.db").exists()


async def test_fail__corrupt_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    garbage = b"this is not sqlite\x00\xff" * 500
    path.write_bytes(garbage)
    expected = f"{path}: not a readable call log (file is not a database); move the file aside"
    with pytest.raises(CallLogError) as info:
        await CallLog(path).open()
    assert str(info.value).startswith(expected)
    with pytest.raises(CallLogError) as info:
        await asyncio.to_thread(read_call_log, path)
    assert str(info.value).startswith(expected)
    assert path.read_bytes() == garbage  # nothing lost


async def test_fail__file_from_a_newer_version(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (99)")
    conn.commit()
    conn.close()
    with pytest.raises(CallLogError, match="schema version 99 is newer than this callbox"):
        await CallLog(path).open()
    with pytest.raises(CallLogError, match="schema version 99 is newer than this callbox"):
        await asyncio.to_thread(read_call_log, path)


def test_fail__cli_on_a_sqlite_file_that_is_not_a_call_log(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(CallLogError, match=r"other\.db: not a call log"):
        read_call_log(path)


_V1_TABLE = """CREATE TABLE calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, peer TEXT NOT NULL,
    peer_name TEXT NOT NULL, direction TEXT NOT NULL, video INTEGER NOT NULL,
    started_at REAL NOT NULL, answered_at REAL, ended_at REAL NOT NULL, status TEXT NOT NULL,
    missed INTEGER NOT NULL, snapshot TEXT, note TEXT NOT NULL DEFAULT '')"""


def _version_1_log(path: Path) -> None:
    """A call log as version 1 wrote it (no bell), with one call."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute(_V1_TABLE)
    conn.execute(
        "INSERT INTO calls (call_id, peer, peer_name, direction, video, started_at, "
        "answered_at, ended_at, status, missed, snapshot, note) "
        "VALUES ('old', 'door', 'Door', 'in', 1, ?, NULL, ?, 'NOANSWER', 1, NULL, '')",
        (T0, T0 + 30),
    )
    conn.commit()
    conn.close()


async def test_ok__the_bell_label_is_kept(log: CallLog) -> None:
    rung = record(1, bell="Flat 12 - Smith")
    await log.add(rung)
    assert await log.recent() == [rung]
    assert (await asyncio.to_thread(read_call_log, log.path))[0].bell == "Flat 12 - Smith"


async def test_ok__a_version_1_log_gains_the_bell_and_keeps_its_calls(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    await asyncio.to_thread(_version_1_log, path)
    (old,) = await asyncio.to_thread(read_call_log, path)  # the CLI reads it as it is
    assert old.call_id == "old" and old.bell == ""
    call_log = CallLog(path)
    await call_log.open()
    try:
        await call_log.add(record(2, bell="Flat 3"))
        assert [(r.call_id, r.bell) for r in await call_log.recent()] == [
            ("call-2", "Flat 3"),
            ("old", ""),
        ]
    finally:
        await call_log.close()
