"""``<state_dir>/access.json``: the access list on disk, shared by the daemon and the CLI.

Every change is read-modify-write under an exclusive ``flock`` on ``access.lock`` beside it,
so ``callbox access add`` and a one-time code used at the door at the same moment both
land; the file is replaced atomically (0600, fsynced: `services.durable`). A file that
cannot be parsed is never overwritten: `AccessStoreError` names it and says why, and
nothing in it is lost. Everything here blocks: call it from a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from services.access.entries import AccessEntry
from services.access.errors import AccessStoreError
from services.access.kdf import KdfParams
from services.access.lockout import LockoutState
from services.durable import fsync_directory, write_atomically

__all__ = ["FILE_NAME", "AccessList", "AccessStore"]

FILE_NAME = "access.json"
"""The access list under the state directory."""
VERSION = 1
GROUPS = ("keypad", "cards")
"""The lockout groups: every keypad together, every card reader together."""


@dataclass(frozen=True)
class AccessList:
    """The whole file as a value: hash parameters, entries, lockout states."""

    kdfs: dict[str, KdfParams]
    current_kdf: str
    entries: tuple[AccessEntry, ...] = ()
    lockouts: dict[str, LockoutState] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> AccessList:
        """A new list with fresh hash parameters (a random salt)."""
        kdf_id = secrets.token_hex(4)
        return cls(kdfs={kdf_id: KdfParams.fresh()}, current_kdf=kdf_id)

    @property
    def kdf(self) -> KdfParams:
        """The parameters new hashes are made with."""
        return self.kdfs[self.current_kdf]

    def lockout(self, group: str) -> LockoutState:
        """The lockout state of ``group`` (``"keypad"`` or ``"cards"``)."""
        return self.lockouts.get(group, LockoutState())

    def with_lockout(self, group: str, state: LockoutState) -> AccessList:
        """The list with ``group``'s lockout state replaced."""
        return replace(self, lockouts={**self.lockouts, group: state})

    def with_entries(self, entries: tuple[AccessEntry, ...]) -> AccessList:
        """The list with ``entries``; hash parameters no entry uses any more are dropped."""
        used = {e.kdf for e in entries} | {self.current_kdf}
        return replace(
            self, entries=entries, kdfs={k: v for k, v in self.kdfs.items() if k in used}
        )

    def to_json(self) -> dict[str, Any]:
        """The list as the file keeps it."""
        return {
            "version": VERSION,
            "kdf": self.current_kdf,
            "kdfs": {k: v.to_json() for k, v in self.kdfs.items()},
            "entries": [e.to_json() for e in self.entries],
            "lockouts": {g: s.to_json() for g, s in self.lockouts.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> AccessList:
        """The list from the parsed file; ValueError saying what is wrong."""
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError(f"not an access list of version {VERSION}")
        kdfs_data = data.get("kdfs")
        if not isinstance(kdfs_data, dict) or data.get("kdf") not in kdfs_data:
            raise ValueError("'kdf' must name one of 'kdfs'")
        kdfs = {str(k): KdfParams.from_json(v) for k, v in kdfs_data.items()}
        entries_data = data.get("entries", [])
        if not isinstance(entries_data, list):
            raise ValueError("'entries' must be a list")
        entries = tuple(AccessEntry.from_json(e) for e in entries_data)
        for entry in entries:
            if entry.kdf not in kdfs:
                raise ValueError(f"entry {entry.id!r}: unknown kdf {entry.kdf!r}")
        ids = [e.id for e in entries]
        if len(set(ids)) != len(ids):
            raise ValueError("two entries have the same id")
        lockouts_data = data.get("lockouts") or {}
        if not isinstance(lockouts_data, dict):
            raise ValueError("'lockouts' must be a table")
        lockouts = {g: LockoutState.from_json(lockouts_data.get(g)) for g in GROUPS}
        return cls(kdfs, str(data["kdf"]), entries, lockouts)


class AccessStore:
    """The access list file of one state directory (owned by the directory's owner)."""

    def __init__(self, state_dir: Path) -> None:
        """The list at ``state_dir/access.json`` (created at the first change)."""
        self.path = Path(state_dir) / FILE_NAME
        self.lock_path = self.path.with_name("access.lock")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the list's lock (exclusive, across processes and threads) for a change."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.lock_path, flags, 0o600)
        except OSError as err:
            raise AccessStoreError(f"cannot lock {self.lock_path}: {err.strerror}") from err
        try:
            self._own(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _own(self, fd: int) -> None:
        """Give a file root makes (``sudo callbox access add``) to the daemon's user.

        The daemon runs as the owner of the state directory (``callbox``); a file it could
        not read would lock every resident out.
        """
        if os.geteuid() != 0:
            return
        owner = os.stat(self.path.parent)
        if owner.st_uid != 0:
            os.fchown(fd, owner.st_uid, owner.st_gid)

    def read(self) -> AccessList:
        """The list (a new empty one when the file does not exist yet); AccessStoreError."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return AccessList.empty()
        except OSError as err:
            raise AccessStoreError(f"cannot read {self.path}: {err.strerror}") from err
        try:
            return AccessList.from_json(json.loads(raw.decode("utf-8")))
        except (ValueError, UnicodeDecodeError) as err:
            raise AccessStoreError(
                f"{self.path} is not a valid access list ({err}); it was left as it is: "
                "fix it by hand or move it away (every code and card in it would be lost)"
            ) from err

    def write(self, access: AccessList) -> None:
        """Replace the file by ``access`` (0600, atomic, durable); hold `locked` around it."""
        data = json.dumps(access.to_json(), indent=1).encode("utf-8") + b"\n"
        try:
            write_atomically(self.path, data, before_write=self._own)
        except OSError as err:
            raise AccessStoreError(f"cannot write {self.path}: {err.strerror}") from err
        fsync_directory(self.path.parent)
