"""The call log: one row per finished call, in SQLite under the state directory.

The daemon writes through `CallLog` (one connection, used only from its own worker thread, so
nothing blocks the event loop); the CLI reads with `read_call_log`, read-only, even while the
daemon runs (WAL journal).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from hal.errors import CallboxError
from services.callapi.status import CallStatus

SCHEMA_VERSION = 2
"""The layout `CallLog` writes; a file with a newer version is refused, not downgraded.

Version 2 added ``bell`` (an older file gets the column, empty, when the daemon opens it)."""

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE calls (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id     TEXT NOT NULL,
    peer        TEXT NOT NULL,
    peer_name   TEXT NOT NULL,
    direction   TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    video       INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    answered_at REAL,
    ended_at    REAL NOT NULL,
    status      TEXT NOT NULL,
    missed      INTEGER NOT NULL,
    snapshot    TEXT,
    note        TEXT NOT NULL DEFAULT '',
    bell        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX calls_by_start ON calls (started_at, id);
"""
_COLUMNS_V1 = (
    "call_id, peer, peer_name, direction, video, started_at, answered_at, ended_at, status, "
    "missed, snapshot, note"
)
_COLUMNS = _COLUMNS_V1 + ", bell"
_ADD_BELL = "ALTER TABLE calls ADD COLUMN bell TEXT NOT NULL DEFAULT ''"
_NEWEST_FIRST = "ORDER BY started_at DESC, id DESC"


class CallLogError(CallboxError):
    """The call log file cannot be opened, read or written; the message names the file."""


@dataclass(frozen=True, kw_only=True)
class CallRecord:
    """One finished call as the log keeps it (times are unix seconds)."""

    call_id: str
    peer: str
    """The other endpoint's address."""
    peer_name: str
    direction: str
    """``"in"`` or ``"out"``."""
    video: bool
    started_at: float
    answered_at: float | None
    """None when nobody answered."""
    ended_at: float
    status: str
    """The final `CallStatus` name, e.g. ``"COMPLETE"``, ``"NOANSWER"``."""
    missed: bool
    snapshot: str | None = None
    """File name of the visitor snapshot, if one was taken."""
    note: str = ""
    """Free text such as ``"dnd"`` or ``"door opened x1"``."""
    bell: str = ""
    """The label of the bell that rang (an entrance panel's ``[[bells]]``), or ""."""

    def __post_init__(self) -> None:
        if self.direction not in ("in", "out"):
            raise ValueError(f"direction must be 'in' or 'out', not {self.direction!r}")
        if self.status not in CallStatus.__members__:
            raise ValueError(f"status must be a CallStatus name, not {self.status!r}")

    @property
    def duration_s(self) -> float:
        """Seconds from answer to end; 0 for a call nobody answered."""
        if self.answered_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.answered_at)


class CallLog:
    """The writable call log at `path`, keeping the `keep` newest calls.

    ``await open()`` first; every method runs its SQL on one dedicated thread, where the only
    connection lives. SQLite errors become `CallLogError` naming the file.
    """

    def __init__(self, path: Path, *, keep: int = 1000) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, not {keep}")
        self.path = Path(path)
        self.keep = keep
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lifecycle = asyncio.Lock()

    async def open(self) -> None:
        """Create the directory, the file and the schema if missing; no-op when already open.

        Raises CallLogError naming the file when it is not a call log (e.g. corrupt) or was
        written by a newer version.
        """
        async with self._lifecycle:
            if self._executor is not None:
                return
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="calllog")
            try:
                await asyncio.get_running_loop().run_in_executor(executor, self._open_sync)
            except BaseException:
                await asyncio.to_thread(executor.shutdown)
                raise
            self._executor = executor

    async def add(self, record: CallRecord) -> None:
        """Append `record`, then drop the oldest calls beyond `keep`."""
        await self._run(lambda conn: _insert(conn, record, self.keep))

    async def recent(self, limit: int = 20) -> list[CallRecord]:
        """The `limit` most recent calls, newest first."""
        return await self._run(lambda conn: _select(conn, limit))

    async def missed_since(self, since: float) -> int:
        """How many missed calls started at or after unix time `since`."""

        def count(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COUNT(*) FROM calls WHERE missed = 1 AND started_at >= ?", (since,)
            ).fetchone()
            return int(row[0])

        return await self._run(count)

    async def close(self) -> None:
        """Close the connection and stop the worker thread; idempotent."""
        async with self._lifecycle:
            executor, self._executor = self._executor, None
            if executor is None:
                return
            try:
                await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
            finally:
                await asyncio.to_thread(executor.shutdown)

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work` with the connection on the worker thread, translating SQLite errors."""
        executor = self._executor
        if executor is None:
            raise CallLogError(f"{self.path}: call log is not open")

        def job() -> _T:
            conn = self._conn
            if conn is None:
                raise CallLogError(f"{self.path}: call log is closed")
            try:
                return work(conn)
            except sqlite3.Error as err:
                raise CallLogError(f"{self.path}: call log error: {err}") from err

        return await asyncio.get_running_loop().run_in_executor(executor, job)

    def _open_sync(self) -> None:
        """Worker thread: connect and make sure the schema is there."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CallLogError(f"{self.path.parent}: cannot create directory: {err}") from err
        try:
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        except sqlite3.Error as err:
            raise _open_error(self.path, err) from err
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; fewer SD writes
            _ensure_schema(conn, self.path)
        except sqlite3.Error as err:
            conn.close()
            raise _open_error(self.path, err) from err
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _close_sync(self) -> None:
        """Worker thread: close the connection (SQLite checkpoints the WAL on the last close)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def read_call_log(path: Path, limit: int = 20) -> list[CallRecord]:
    """The `limit` most recent calls in the log at `path`, newest first; [] when there is none.

    Opens the file read-only (the daemon may be writing it meanwhile). Raises CallLogError
    naming the file when it is not a readable call log.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as err:
        raise _open_error(path, err) from err
    conn.row_factory = sqlite3.Row
    try:
        version = _check_version(conn, path)
        return _select(conn, limit, version)
    except sqlite3.Error as err:
        raise _open_error(path, err) from err
    finally:
        conn.close()


def _open_error(path: Path, err: sqlite3.Error) -> CallLogError:
    """A clear error for a file SQLite could not use: corrupt (not a database) or inaccessible."""
    if isinstance(err, sqlite3.DatabaseError) and not isinstance(err, sqlite3.OperationalError):
        return CallLogError(
            f"{path}: not a readable call log ({err}); move the file aside to start a new log"
        )
    return CallLogError(f"{path}: cannot open call log: {err}")


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on an autocommit connection: commit, or roll back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables in an empty file; refuse a file from a newer version."""
    with _transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        if version is None:
            _create_tables(conn)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif version > SCHEMA_VERSION:
            raise CallLogError(_newer_message(path, version))
        elif version < SCHEMA_VERSION:
            conn.execute(_ADD_BELL)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))


def _create_tables(conn: sqlite3.Connection) -> None:
    # executescript() would COMMIT the open transaction first, so run statement by statement.
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def _check_version(conn: sqlite3.Connection, path: Path) -> int:
    """Reading side of `_ensure_schema`: the file must be a call log this version understands."""
    try:
        version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    except sqlite3.OperationalError as err:
        raise CallLogError(f"{path}: not a call log (no schema_version table)") from err
    if version is None:
        raise CallLogError(f"{path}: not a call log (no schema version)")
    if version > SCHEMA_VERSION:
        raise CallLogError(_newer_message(path, version))
    return int(version)


def _newer_message(path: Path, version: int) -> str:
    return (
        f"{path}: call log schema version {version} is newer than this callbox understands "
        f"({SCHEMA_VERSION}); update callbox or move the file aside"
    )


def _insert(conn: sqlite3.Connection, record: CallRecord, keep: int) -> None:
    """Add one row and prune to the `keep` newest, in one transaction."""
    with _transaction(conn):
        conn.execute(
            f"INSERT INTO calls ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.call_id,
                record.peer,
                record.peer_name,
                record.direction,
                int(record.video),
                record.started_at,
                record.answered_at,
                record.ended_at,
                record.status,
                int(record.missed),
                record.snapshot,
                record.note,
                record.bell,
            ),
        )
        conn.execute(
            f"DELETE FROM calls WHERE id NOT IN (SELECT id FROM calls {_NEWEST_FIRST} LIMIT ?)",
            (keep,),
        )


def _select(
    conn: sqlite3.Connection, limit: int, version: int = SCHEMA_VERSION
) -> list[CallRecord]:
    columns = _COLUMNS if version >= SCHEMA_VERSION else _COLUMNS_V1  # read-only: not migrated
    rows = conn.execute(f"SELECT {columns} FROM calls {_NEWEST_FIRST} LIMIT ?", (limit,))
    return [_record(row) for row in rows]


def _record(row: sqlite3.Row) -> CallRecord:
    answered = row["answered_at"]
    return CallRecord(
        call_id=row["call_id"],
        peer=row["peer"],
        peer_name=row["peer_name"],
        direction=row["direction"],
        video=bool(row["video"]),
        started_at=float(row["started_at"]),
        answered_at=None if answered is None else float(answered),
        ended_at=float(row["ended_at"]),
        status=row["status"],
        missed=bool(row["missed"]),
        snapshot=row["snapshot"],
        note=row["note"],
        bell=row["bell"] if "bell" in row.keys() else "",  # noqa: SIM118 - sqlite3.Row
    )
