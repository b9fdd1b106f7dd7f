"""Making file changes survive a power cut (a Pi's SD card loses power without warning)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make the renames, links and removals in ``directory`` durable.

    Best effort: not every filesystem can fsync a directory, and a failure here leaves
    the change in place, only not yet flushed.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    path: Path,
    data: bytes,
    *,
    before_write: Callable[[int], None] | None = None,
    exclusive: bool = False,
) -> None:
    """Replace ``path`` by ``data`` through a temporary file next to it, which never survives.

    The temporary file is created 0600 (never following a link), written, fsynced and renamed over
    ``path``.

    ``before_write(fd)`` sets the new file's mode and owner before any data is in it. With
    ``exclusive`` the temporary file is hard-linked to ``path`` instead of renamed over it,
    which raises FileExistsError when ``path`` exists (another writer was first).
    Raises OSError; the caller names the file and the reason in its own error.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o600)
        try:
            if before_write is not None:
                before_write(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
