"""A root filesystem to change: the running system (``/``) or an image tree (a chroot).

First boot and factory reset write every system file through a `RootFs`, so the same code
runs on the device, inside an image build's rootfs and on a temporary tree in the tests.
Files are replaced atomically (temporary file, fsync, rename) with their final mode and
owner set before the rename, so a reader never sees a half-written or too-open file.
Users and groups are looked up in the tree's own ``/etc/passwd`` and ``/etc/group``, never in
the machine running the code.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hal.errors import CallboxError
from services.durable import fsync_directory, write_atomically

__all__ = ["Account", "RootFs", "RootFsError"]


class RootFsError(CallboxError):
    """A system file could not be read or written; the message names it and why."""


@dataclass(frozen=True)
class Account:
    """A line of ``/etc/passwd``."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str


class RootFs:
    """The tree under `root`; paths given to its methods are the device's absolute paths."""

    def __init__(self, root: Path = Path("/")) -> None:
        """Work on the tree at `root` (``/``: the running system)."""
        self.root = Path(root).resolve()

    @property
    def is_live(self) -> bool:
        """True when this is the running system (commands such as ``hostname`` apply)."""
        return self.root == Path("/")

    def path(self, device_path: str | PurePosixPath) -> Path:
        """Where the device's absolute `device_path` is in this tree."""
        text = str(device_path)
        if not text.startswith("/"):
            raise RootFsError(f"{text!r} is not an absolute path")
        return self.root / text.lstrip("/")

    # files --------------------------------------------------------------------------------------

    def read_text(self, device_path: str) -> str | None:
        """The file's text, None when it does not exist."""
        path = self.path(device_path)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            raise RootFsError(f"{path}: cannot read it: {_why(err)}") from err

    def write(
        self,
        device_path: str,
        data: str | bytes,
        mode: int | None,
        owner: tuple[int, int] | None = (0, 0),
    ) -> Path:
        """Replace the file with `data`, mode `mode`, owner `owner` (uid, gid; None: the caller's).

        The directory must exist. Ownership needs root: without it the file keeps the caller's,
        which only happens in tests run as another user. `mode` and `owner` None (a FAT partition,
        which has neither): 0600 as created.
        """
        path = self.path(device_path)
        raw = data.encode("utf-8") if isinstance(data, str) else data

        def prepare(fd: int) -> None:
            if owner is not None and os.geteuid() == 0:
                os.fchown(fd, *owner)
            if mode is not None:
                os.fchmod(fd, mode)

        try:
            write_atomically(path, raw, before_write=prepare)
            fsync_directory(path.parent)
        except OSError as err:
            raise RootFsError(f"{path}: cannot write it: {_why(err)}") from err
        return path

    def mkdir(self, device_path: str, mode: int, owner: tuple[int, int] | None = (0, 0)) -> Path:
        """Create the directory (and missing parents, 0755 root) and set its mode and owner."""
        path = self.path(device_path)
        try:
            path.mkdir(mode=0o755, parents=True, exist_ok=True)
            if path.is_symlink() or not path.is_dir():
                raise RootFsError(f"{path}: is not a directory")
            if owner is not None and os.geteuid() == 0:
                os.chown(path, *owner, follow_symlinks=False)
            os.chmod(path, mode)
        except OSError as err:
            raise RootFsError(f"{path}: cannot create the directory: {_why(err)}") from err
        return path

    def symlink(self, device_path: str, target: str) -> None:
        """Make `device_path` a symbolic link to `target` (replacing a file or link there)."""
        path = self.path(device_path)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.symlink(target, tmp)
            os.replace(tmp, path)
        except OSError as err:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise RootFsError(f"{path}: cannot link it to {target}: {_why(err)}") from err

    def remove(self, device_path: str) -> bool:
        """Unlink a file or symbolic link; True when there was one."""
        path = self.path(device_path)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as err:
            raise RootFsError(f"{path}: cannot remove it: {_why(err)}") from err
        return True

    # accounts -----------------------------------------------------------------------------------

    def account(self, name: str) -> Account | None:
        """The user `name` of this tree's ``/etc/passwd``; None when there is none."""
        for fields in self.table("/etc/passwd"):
            if fields[0] == name and len(fields) >= 7:
                try:
                    return Account(name, int(fields[2]), int(fields[3]), fields[5], fields[6])
                except ValueError as err:
                    raise RootFsError(f"{self.path('/etc/passwd')}: bad line for {name}") from err
        return None

    def group_id(self, name: str) -> int | None:
        """The gid of group `name` in this tree's ``/etc/group``; None when there is none."""
        for fields in self.table("/etc/group"):
            if fields[0] == name and len(fields) >= 3 and fields[2].isdigit():
                return int(fields[2])
        return None

    def owner_of(self, user: str) -> tuple[int, int] | None:
        """(uid, gid) of `user` in this tree, None when it has no such user."""
        account = self.account(user)
        return (account.uid, account.gid) if account else None

    def table(self, device_path: str) -> list[list[str]]:
        """The colon-separated lines of a ``passwd``-style file ([] when it is missing)."""
        text = self.read_text(device_path) or ""
        return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _why(err: BaseException) -> str:
    return getattr(err, "strerror", None) or str(err)
