"""The access list's errors (under `CallboxError`, so the CLI reports them once)."""

from __future__ import annotations

from hal.errors import CallboxError


class AccessError(CallboxError):
    """Something about access codes and cards went wrong; the message says what and why."""


class AccessStoreError(AccessError):
    """The access list file cannot be read, parsed or written; the message names the file."""


class EnrollError(AccessError):
    """A code or card cannot be added or removed (a trivial PIN, a duplicate, no such entry)."""
