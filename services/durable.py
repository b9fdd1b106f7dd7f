"""Making file changes survive a power cut (a Pi's SD card loses power without warning)."""

from __future__ import annotations

import contextlib
import os
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
