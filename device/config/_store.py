"""Reading and changing ``callbox.toml`` in place: ``callbox config show|get|set|validate``.

A change is validated as a whole file before anything is written; a refused change leaves the
file byte for byte as it was. An accepted one keeps the administrator's comments and layout
(tomlkit), keeps the previous file as ``callbox.toml.bak`` and replaces the file atomically
(temporary file in the same directory, fsync, rename, fsync of the directory), with the old
file's mode and owner.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import tomlkit
from tomlkit.exceptions import ParseError, TOMLKitError
from tomlkit.items import AoT, Array, InlineTable, Table, Whitespace

from device.config._file import (
    DEFAULT_CONFIG_PATH,
    FIRST_BOOT_PATH,
    CallboxConfig,
    ConfigError,
    load_config,
    parse_config,
)
from services.durable import fsync_directory, write_atomically

__all__ = ["NEW_FILE_MODE", "ConfigStore", "parse_value"]

_log = logging.getLogger(__name__)

NEW_FILE_MODE: Final = 0o640
"""Mode of a configuration file that did not exist before (it may hold a broker password)."""

_KEY_PART = re.compile(r"[A-Za-z0-9_-]+")


def parse_value(text: str) -> Any:
    """The value `text` stands for: a TOML value when it is exactly one, else the text as a string.

    A TOML value such as ``30``, ``true``, ``"x"``, ``["a", "b"]``. Nothing is evaluated.
    """
    try:
        if list(tomllib.loads(f"value = {text}")) != ["value"]:
            return text
        return tomlkit.parse(f"value = {text}\n")["value"]
    except (tomllib.TOMLDecodeError, TOMLKitError):
        return text


class ConfigStore:
    """The configuration file at `path` and the operations an administrator runs on it."""

    def __init__(self, path: Path = DEFAULT_CONFIG_PATH) -> None:
        """Work on `path` (``/etc/callbox/callbox.toml`` by default)."""
        self.path = Path(path)

    @property
    def backup_path(self) -> Path:
        """Where the previous version is kept: ``callbox.toml.bak``."""
        return self.path.with_name(self.path.name + ".bak")

    def load(self) -> CallboxConfig:
        """Read and validate the file."""
        return load_config(self.path)

    def validate(self, path: Path | None = None) -> CallboxConfig:
        """Validate `path` (default: this store's file) without changing anything."""
        return load_config(path if path is not None else self.path)

    def show(self) -> str:
        """The file's text, as written."""
        return self._read().decode("utf-8", errors="replace")

    def get(self, key: str) -> Any:
        """The value in force at the dotted `key`, defaults included.

        Keys like ``call.fps`` or ``contacts.0.name``. A table comes back as a dict. ConfigError
        names a key that does not exist.
        """
        value: Any = self.load().model_dump(mode="json", by_alias=True)
        parts = self._split(key)
        for depth, part in enumerate(parts):
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            elif value is None:
                raise ConfigError(self.path, ".".join(parts[:depth]), "is not set")
            else:
                raise ConfigError(self.path, key, "no such key")
        return value

    def set(self, key: str, value_text: str) -> CallboxConfig:
        """Set the dotted `key` to the value `value_text` stands for; return the new configuration.

        See `parse_value`. ConfigError, and the file unchanged, when the result is not a valid
        configuration.
        """
        return self.set_many({key: value_text})

    def set_many(self, values: Mapping[str, str]) -> CallboxConfig:
        """Set several keys in one validated write (a contact's two keys change together)."""
        paths = {key: self._split(key) for key in values}

        def edit(document: tomlkit.TOMLDocument) -> None:
            for key, text in values.items():
                self._assign(document, paths[key], parse_value(text))

        return self._change(edit, "set " + ", ".join(values))

    def add_contact(
        self,
        address: str,
        sign_key: str,
        dh_key: str,
        *,
        name: str = "",
        role: str = "",
        rights: Sequence[str] = (),
    ) -> CallboxConfig:
        """Append a ``[[contacts]]`` table with the peer's base64url public keys."""
        entry: dict[str, Any] = {"address": address, "sign_key": sign_key, "dh_key": dh_key}
        entry |= {k: v for k, v in (("name", name), ("role", role)) if v}
        if rights:
            entry["rights"] = list(rights)

        def edit(document: tomlkit.TOMLDocument) -> None:
            contacts = document.get("contacts")
            if contacts is None:
                text = document.as_string()
                if text and not text.endswith("\n\n"):
                    document.add(tomlkit.nl())
                document.append("contacts", tomlkit.aot())
                contacts = document["contacts"]
            if isinstance(contacts, AoT):
                _append_table(contacts, tomlkit.item(entry))
            elif isinstance(contacts, Array):  # contacts = [{...}, ...]
                contacts.append(_inline_table(entry))
            else:
                raise ConfigError(self.path, "contacts", "is not a list of tables")

        return self._change(edit, f"added contact {address}")

    def install(self, text: str) -> CallboxConfig:
        """Replace the whole file with `text` (``callbox config edit``) if it is valid."""
        config = parse_config(text, self.path)
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        with self._locked():
            old = self._read() if self.path.exists() else None
            self._install(text.encode("utf-8"), old)
        return config

    def import_first_boot(self, src: Path = FIRST_BOOT_PATH) -> bool:
        """Install the installer's file from the boot partition, once per version of it.

        A valid `src` is installed, its sha256 recorded in `first_boot_marker`, and it is renamed
        ``callbox.toml.imported``; when the rename fails (``/boot`` is read-only under the
        shipped unit) the marker alone keeps the same file from being imported again over later
        changes, while an edited one is. Returns True when installed; False when `src` does not
        exist or is the one already imported (unless the configuration file is gone). An invalid
        `src` is left in place, logged, and ConfigError raised.
        """
        src = Path(src)
        data = self._read_source(src)
        if data is None:
            return False
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._imported_digest() and self.path.exists():
            _log.info("%s: already imported into %s (sha256 %s)", src, self.path, digest)
            return False
        try:
            text = self._decode(src, data)
            parse_config(text, src)  # errors name the installer's file, not ours
            config = self.install(text)
        except ConfigError as err:
            _log.error("first-boot configuration refused, left in place:\n%s", err)
            raise
        self._record_import(digest)
        _log.info("imported %s (%s %s) into %s", src, config.role, config.address, self.path)
        self._retire(src)
        return True

    @property
    def first_boot_marker(self) -> Path:
        """The sha256 (hex) of the last first-boot file imported: ``<file>.first-boot-sha256``."""
        return self.path.with_name(self.path.name + ".first-boot-sha256")

    # ------------------------------------------------------------------ internals

    def _change(self, edit: Callable[[tomlkit.TOMLDocument], None], what: str) -> CallboxConfig:
        """Apply `edit` to the document, validate the result, write it; all under the lock."""
        with self._locked():
            old = self._read()
            document = self._document(old)
            edit(document)
            text = document.as_string()
            config = parse_config(text, self.path)
            self._install(text.encode("utf-8"), old)
        _log.info("%s: %s", self.path, what)
        return config

    def _split(self, key: str) -> list[str]:
        parts = key.split(".")
        if not all(_KEY_PART.fullmatch(part) for part in parts):
            raise ConfigError(self.path, key, "is not a key path such as call.ring_timeout_s")
        return parts

    def _read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError as err:
            raise ConfigError(self.path, "", "the file does not exist") from err
        except OSError as err:
            raise ConfigError(self.path, "", f"cannot read the file: {err.strerror}") from err

    @staticmethod
    def _read_source(src: Path) -> bytes | None:
        """The first-boot file's bytes, None when there is none; ConfigError when unreadable."""
        try:
            return src.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            reason = f"cannot read the file: {err.strerror}"
            _log.error("first-boot configuration refused, left in place:\n%s: %s", src, reason)
            raise ConfigError(src, "", reason) from err

    @staticmethod
    def _decode(path: Path, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(path, "", f"not UTF-8 text (byte {err.start})") from err

    def _imported_digest(self) -> str | None:
        """The digest in `first_boot_marker`, None when there is none (or it is unreadable)."""
        try:
            return self.first_boot_marker.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            _log.warning("%s: cannot read it (%s); importing again", self.first_boot_marker, err)
            return None

    def _record_import(self, digest: str) -> None:
        """Write `first_boot_marker` (0640 like a new config).

        0640 because it hashes one that may hold a password. A failure is logged, and the next start
        imports the file again.
        """
        try:
            _write_atomically(self.first_boot_marker, f"{digest}\n".encode(), NEW_FILE_MODE, None)
        except ConfigError as err:
            _log.warning("cannot record the first-boot import, the next start repeats it: %s", err)
            return
        fsync_directory(self.path.parent)

    @staticmethod
    def _retire(src: Path) -> None:
        """Rename the imported `src` to ``*.imported``; failing is expected under the unit."""
        imported = src.with_name(src.name + ".imported")
        try:
            os.replace(src, imported)
        except OSError as err:
            _log.info(
                "%s: left in place, cannot rename it to %s (%s); imported again only once edited",
                src,
                imported.name,
                err.strerror or err,
            )

    def _document(self, data: bytes) -> tomlkit.TOMLDocument:
        try:
            return tomlkit.parse(data.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise ConfigError(self.path, "", f"not UTF-8 text (byte {err.start})") from err
        except ParseError as err:
            raise ConfigError(self.path, "", f"not valid TOML: {err}") from err

    def _assign(self, document: tomlkit.TOMLDocument, parts: list[str], value: Any) -> None:
        """Put `value` at `parts` in `document`, creating missing tables on the way."""
        container: Any = document
        for depth, part in enumerate(parts):
            here = ".".join(parts[: depth + 1])
            last = depth == len(parts) - 1
            if isinstance(container, list):
                if not part.isdigit() or int(part) >= len(container):
                    reason = f"there are {len(container)} items, numbered from 0"
                    raise ConfigError(self.path, here, reason)
                index: int | str = int(part)
            elif isinstance(container, dict):
                index = part
                if not last and part not in container:
                    nested = isinstance(container, InlineTable)
                    container[part] = tomlkit.inline_table() if nested else tomlkit.table()
            else:
                raise ConfigError(self.path, ".".join(parts[:depth]), "is a value, not a table")
            if last:
                container[index] = value
            else:
                container = container[index]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise writers (two ``config set`` at once) on a lock of the directory."""
        try:
            fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise ConfigError(self.path, "", f"cannot open its directory: {err.strerror}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _install(self, data: bytes, old: bytes | None) -> None:
        """Write `data` as the file, keeping `old` as the backup; the caller holds the lock."""
        try:
            info = os.stat(self.path)
            mode, owner = stat.S_IMODE(info.st_mode), (info.st_uid, info.st_gid)
        except FileNotFoundError:
            mode, owner = NEW_FILE_MODE, None
        except OSError as err:
            raise ConfigError(self.path, "", f"cannot stat the file: {err.strerror}") from err
        if old is not None:
            _write_atomically(self.backup_path, old, mode, owner)
        _write_atomically(self.path, data, mode, owner)
        fsync_directory(self.path.parent)


def _inline_table(values: Mapping[str, Any]) -> InlineTable:
    table = tomlkit.inline_table()
    table.update(values)
    return table


def _append_table(tables: AoT, table: Table) -> None:
    """Append `table` to `tables`, after the last one's blank lines.

    It goes before the comments that trail the last one (tomlkit keeps the comment above the next
    section inside the last table).
    """
    body = tables[-1].value.body if len(tables) else []
    trailing: list[tuple[Any, Any]] = []
    while body and body[-1][0] is None:
        trailing.insert(0, body.pop())
    blank = 0
    while blank < len(trailing) and isinstance(trailing[blank][1], Whitespace):
        blank += 1
    separator = trailing[:blank] or [(None, Whitespace("\n"))]
    if len(tables):
        body.extend(separator)
    tables.append(table)
    table.value.body.extend([(None, Whitespace(ws.s)) for _, ws in trailing[:blank]])
    table.value.body.extend(trailing[blank:])


def _write_atomically(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    """Replace `path` by `data` through a temporary file that never survives; ConfigError."""

    def prepare(fd: int) -> None:
        os.fchmod(fd, mode)  # the old file's mode whatever the umask
        _keep_owner(fd, path, owner)

    try:
        write_atomically(path, data, before_write=prepare)
    except OSError as err:
        raise ConfigError(path, "", f"cannot write the file: {err.strerror or err}") from err


def _keep_owner(fd: int, path: Path, owner: tuple[int, int] | None) -> None:
    """Give the new file the old one's owner and group, so the service can still read it."""
    info = os.fstat(fd)
    if owner is None or (info.st_uid, info.st_gid) == owner:
        return
    try:
        os.fchown(fd, *owner)
    except PermissionError:
        uid, gid = owner
        _log.warning(
            "%s: cannot keep owner %d:%d (not root); it is now %d:%d",
            path,
            uid,
            gid,
            info.st_uid,
            info.st_gid,
        )
