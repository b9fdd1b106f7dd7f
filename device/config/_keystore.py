"""The endpoint's identity on disk: ``<state_dir>/keys/identity.key``.

The file format, the atomic 0600 write and the checks on reading belong to
`services.signaling.identity.Identity`; this module places the file under the state directory,
keeps the key directory at 0700, and turns every problem into a `KeystoreError` naming the file,
so the daemon refuses to start with a clear message instead of silently minting a new identity
(which every peer would then refuse as "key changed").
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path
from typing import Final

from hal.errors import CallboxError
from services.durable import fsync_directory
from services.signaling.errors import SignalingError
from services.signaling.identity import KEY_FILE_NAME, Identity, PublicKeys

__all__ = [
    "KEYS_DIR_NAME",
    "KeystoreError",
    "identity_path",
    "keys_dir",
    "load_or_create_identity",
    "public_keys_of",
    "wipe_keys",
]

_log = logging.getLogger(__name__)

KEYS_DIR_NAME: Final = "keys"
"""Name of the private key directory (mode 0700) inside the state directory."""

_DIR_MODE: Final = 0o700


class KeystoreError(CallboxError):
    """The identity on disk is missing, unreadable, corrupt or too open; the message names it."""


def keys_dir(state_dir: Path) -> Path:
    """The private key directory of the endpoint whose state lives in `state_dir`."""
    return Path(state_dir) / KEYS_DIR_NAME


def identity_path(state_dir: Path) -> Path:
    """The private key file of the endpoint whose state lives in `state_dir`."""
    return keys_dir(state_dir) / KEY_FILE_NAME


def load_or_create_identity(state_dir: Path) -> Identity:
    """Load the endpoint's identity, or create and store one on first start.

    The key directory is created with mode 0700 (and tightened to 0700, with a warning, if
    someone loosened it); the key file is written atomically with mode 0600. An existing key
    file is never replaced: when it is unreadable, corrupt, not a regular file or readable by
    group or others, KeystoreError names the file and the problem.
    """
    directory = _ensure_keys_dir(state_dir)
    path = directory / KEY_FILE_NAME
    existed = os.path.lexists(path)
    try:
        identity = Identity.load_or_create(directory)
    except SignalingError as err:
        raise KeystoreError(str(err)) from err
    if not existed:
        fingerprint = identity.public_keys.fingerprint()
        _log.info("created a new identity in %s (fingerprint %s)", path, fingerprint)
    return identity


def public_keys_of(state_dir: Path) -> PublicKeys:
    """The public keys of the stored identity, for ``callbox keys show`` and pairing.

    Never creates an identity: a CLI run as root would leave a key file the daemon's user
    cannot read. Raises KeystoreError when there is none yet or it cannot be loaded.
    """
    path = identity_path(state_dir)
    if not os.path.lexists(path):
        raise KeystoreError(f"{path}: no identity yet (the daemon creates it on its first start)")
    try:
        return Identity.load(path.parent).public_keys
    except SignalingError as err:
        raise KeystoreError(str(err)) from err


def wipe_keys(state_dir: Path) -> bool:
    """Delete the key directory and everything in it (factory reset); True if it existed.

    Peers that pinned the old keys will refuse the new identity until a person re-confirms it.
    The files are unlinked, not overwritten: flash storage may keep the old blocks.
    """
    directory = keys_dir(state_dir)
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise KeystoreError(f"{directory}: cannot inspect key directory: {err}") from err
    if not stat.S_ISDIR(info.st_mode):
        raise KeystoreError(f"{directory}: key directory is not a directory; not removing it")
    try:
        shutil.rmtree(directory)
    except OSError as err:
        raise KeystoreError(f"{directory}: cannot remove key directory: {err}") from err
    fsync_directory(directory.parent)
    _log.warning("removed the identity in %s", directory)
    return True


def _ensure_keys_dir(state_dir: Path) -> Path:
    """Create the key directory (0700) or check the existing one; return its path."""
    directory = keys_dir(state_dir)
    try:
        directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        info = os.lstat(directory)
    except OSError as err:
        raise KeystoreError(f"{directory}: cannot create key directory: {err}") from err
    if not stat.S_ISDIR(info.st_mode):
        raise KeystoreError(f"{directory}: key directory is not a directory (a symlink?)")
    mode = stat.S_IMODE(info.st_mode)
    if mode != _DIR_MODE:
        # Only the file modes guard the keys themselves (and a loose file is refused), so a
        # loosened directory is repaired rather than stopping the intercom.
        if mode & 0o077:
            _log.warning("%s had mode %04o; setting it to %04o", directory, mode, _DIR_MODE)
        try:
            os.chmod(directory, _DIR_MODE)
        except OSError as err:
            raise KeystoreError(f"{directory}: cannot set mode {_DIR_MODE:04o}: {err}") from err
    return directory
