"""Which files of the built ``web/`` directory ``callbox web`` serves: an explicit allow-list.

The web/ directory of a source tree also holds ``node_modules/``, ``package.json``, the
sources and the tests; none of them is the page. Served are only ``index.html``,
``style.css``, a ``manifest.webmanifest``, the files directly inside ``dist/`` (the bundle and
its source maps) and ``icons/``, and ``/sw.js``, the service worker (built as ``dist/sw.js``:
a worker's scope is the directory it is served from, so it must be served from the page's root),
each only with a MIME type the page needs, each only as a regular file (no symlink, no
directory, no listing). Anything else is "not found".
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "MIME_TYPES",
    "PAGE_ALIASES",
    "PAGE_DIRECTORIES",
    "PAGE_FILES",
    "TEST_PAGES",
    "PageFile",
    "PageFiles",
]

MIME_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".map": "application/json",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
}
"""The suffixes served, with their Content-Type; a file with any other suffix is not served."""

PAGE_FILES: Final = ("index.html", "style.css", "manifest.webmanifest")
"""Files at the top of the web/ directory that belong to the page (when present)."""

PAGE_ALIASES: Final = {"sw.js": "dist/sw.js"}
"""URL paths at the top served from a built file elsewhere: the service worker, whose scope
(the page's root) is the directory of its URL."""

PAGE_DIRECTORIES: Final = ("dist", "icons")
"""Directories whose files (directly inside, not in subdirectories) belong to the page."""

TEST_PAGES: Final = ("test/vectors.html",)
"""The protocol test-vector runner of the browser tests: served only when a caller asks."""

INDEX: Final = "index.html"


@dataclass(frozen=True)
class PageFile:
    """A file to send: its bytes, Content-Type and ETag (size and modification time)."""

    content: bytes
    content_type: str
    etag: str


class PageFiles:
    """The allow-list of one built web/ directory, and reading the files on it."""

    def __init__(self, root: Path, extra: Iterable[str] = ()) -> None:
        """Serve `root`'s page files, plus `extra` paths relative to `root` (e.g. TEST_PAGES)."""
        self.root = root
        self._files = frozenset((*PAGE_FILES, *extra))

    def allowed(self, path: str) -> str | None:
        """The relative file name for the decoded URL path `path`, or None when not served.

        ``/`` is ``index.html``. Refused: a path with an empty, ``.``-prefixed or ``..``
        segment (so every directory path ending in ``/``), a backslash or NUL, a suffix
        without a MIME type, anything not on the list.
        """
        if path == "/":
            return INDEX
        if not path.startswith("/") or "\\" in path or "\0" in path:
            return None
        parts = path[1:].split("/")
        if any(not part or part.startswith(".") for part in parts):
            return None
        name = "/".join(parts)
        if Path(name).suffix not in MIME_TYPES:
            return None
        if name in self._files:
            return name
        if name in PAGE_ALIASES:
            return PAGE_ALIASES[name]
        if len(parts) == 2 and parts[0] in PAGE_DIRECTORIES:
            return name
        return None

    def read(self, name: str) -> PageFile | None:
        """The content of allowed file `name` when it is a regular file; blocking (a thread)."""
        path = self.root / name
        try:
            # No symlink as the file itself (ELOOP); a FIFO must not block the open.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as err:
            if err.errno == errno.ELOOP:
                return None
            raise
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                return None
            content = file.read()
        etag = f'"{len(content):x}-{info.st_mtime_ns:x}"'
        return PageFile(content, MIME_TYPES[Path(name).suffix], etag)
