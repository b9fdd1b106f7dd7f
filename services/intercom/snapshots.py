"""Visitor snapshots: one JPEG per call from a video frame, kept for a bounded count and age.

Files are named ``<UTC yyyymmddThhmmss>-<label>-<random>.jpg`` and written atomically (a
temporary file renamed into place), so a reader never sees half a picture. Encoding and file
work run on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import time
from pathlib import Path

import av

from hal.errors import CallboxError
from services.media.jpeg import JpegError
from services.media.jpeg import encode_jpeg as media_jpeg

_log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"\d{8}T\d{6}-[a-z0-9_-]+-[0-9a-f]+\.jpg")
_LABEL_MAX = 32


class SnapshotError(CallboxError):
    """A snapshot could not be encoded or written; the message names the file."""


def sanitize_label(label: str) -> str:
    """`label` reduced to ``[a-z0-9_-]`` (at most 32 characters), safe inside a file name.

    Runs of other characters (``/``, ``.``, spaces...) become one ``_``; an empty result
    becomes ``"snapshot"``.
    """
    cleaned = re.sub(r"[^a-z0-9_-]+", "_", label.lower()).strip("_-")[:_LABEL_MAX]
    return cleaned or "snapshot"


def encode_jpeg(frame: av.VideoFrame) -> bytes:
    """Encode `frame` (any pixel format) as one baseline JPEG (services/media/jpeg.py).

    Blocking (CPU-bound): call it off the event loop. Raises SnapshotError on an encoder error.
    """
    try:
        return media_jpeg(frame)
    except JpegError as err:
        raise SnapshotError(str(err)) from err


class SnapshotStore:
    """The snapshot files in `directory`, keeping at most `keep_count`, none older than `max_age_s`.

    The age is in seconds, by file modification time.
    """

    def __init__(
        self, directory: Path, *, keep_count: int = 50, max_age_s: float = 30 * 86400
    ) -> None:
        if keep_count < 1:
            raise ValueError(f"keep_count must be >= 1, not {keep_count}")
        if max_age_s <= 0:
            raise ValueError(f"max_age_s must be > 0, not {max_age_s}")
        self.directory = Path(directory)
        self.keep_count = keep_count
        self.max_age_s = max_age_s

    async def save(self, frame: av.VideoFrame, label: str) -> Path:
        """Write `frame` as a JPEG labelled `label` (sanitised); return its path.

        The directory is created when missing; older snapshots beyond the limits are pruned.
        Raises SnapshotError naming the file when encoding or writing fails.
        """
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        name = f"{stamp}-{sanitize_label(label)}-{secrets.token_hex(4)}.jpg"
        path = self.directory / name
        await asyncio.to_thread(self._save_sync, frame, path)
        await self.prune(now)
        return path

    async def prune(self, now: float | None = None) -> list[Path]:
        """Delete snapshots older than `max_age_s` and beyond the `keep_count` newest.

        `now` is unix time (default: the current time). Returns the removed paths; a file
        that cannot be removed is logged and kept.
        """
        when = time.time() if now is None else now
        return await asyncio.to_thread(self._prune_sync, when)

    def _save_sync(self, frame: av.VideoFrame, path: Path) -> None:
        _write_atomically(path, encode_jpeg(frame))

    def _prune_sync(self, now: float) -> list[Path]:
        removed: list[Path] = []
        for index, (path, mtime) in enumerate(_scan(self.directory)):
            if index < self.keep_count and now - mtime <= self.max_age_s:
                continue
            try:
                path.unlink(missing_ok=True)
            except OSError as err:
                _log.warning("cannot remove old snapshot %s: %s", path, err)
                continue
            removed.append(path)
        return removed

    # Last in the class: after it, `list` in this class body would mean the method.
    def list(self) -> list[Path]:
        """The snapshot files, newest first (by modification time); [] when there are none.

        Raises SnapshotError when the directory exists but cannot be read.
        """
        return [path for path, _ in _scan(self.directory)]


def _scan(directory: Path) -> list[tuple[Path, float]]:
    """(path, mtime) of every snapshot file in `directory`, newest first.

    Temporary files and anything not named like a snapshot are left out.
    """
    found: list[tuple[Path, int, float]] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    except OSError as err:
        raise SnapshotError(f"{directory}: cannot list snapshots: {err}") from err
    for entry in entries:
        if not _NAME_RE.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed meanwhile by a concurrent prune
        found.append((Path(entry.path), info.st_mtime_ns, info.st_mtime))
    found.sort(key=lambda item: (item[1], item[0].name), reverse=True)
    return [(path, mtime) for path, _, mtime in found]


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file next to `path`, fsync it, rename it over `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SnapshotError(f"{path.parent}: cannot create directory: {err}") from err
    temp = path.with_name(f".{path.name}.tmp")
    try:
        with open(temp, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except OSError as err:
        raise SnapshotError(f"{path}: cannot write snapshot: {err}") from err
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
