"""The signed site directory: every endpoint of a building, signed by the site's admin key.

A building's installer holds one Ed25519 key pair, the site admin key (made by ``callbox site
init`` on the installer's machine, never copied to a unit). Every unit pins its public half
(``[site] admin_key``). The directory document lists each endpoint's address, name, role,
flat, public keys and rights; it is canonical JSON (docs/protocol.md, "Canonical JSON"), its
``sig`` an Ed25519 signature by the admin key over :data:`DIRECTORY_SIG_CONTEXT` and the
canonical JSON of the document without ``sig``. It is published retained on one topic,
``callbox/v1/<site>/directory``, which only the broker's ``admin`` account may write.

A unit accepts a directory only when it is signed by the pinned admin key, names its own site
and has a ``version`` above the highest it ever accepted (kept in its state directory, so a
rollback is refused across restarts too). See docs/protocol.md, "Site directory".
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.durable import write_atomically
from services.signaling.contacts import Contact, ContactBook, Right
from services.signaling.envelope import SIG_SIZE, canonical
from services.signaling.errors import SignalingError
from services.signaling.identity import PublicKeys, b64u_decode, b64u_encode
from services.signaling.topics import valid_name

_log = logging.getLogger(__name__)

DIRECTORY_SIG_CONTEXT: Final = b"callbox/v1 directory\n"
"""Prefix of the bytes a directory's signature covers; then the canonical JSON without sig."""
DIRECTORY_VERSION: Final = 1
"""The document format (``v``)."""
MAX_DIRECTORY_BYTES: Final = 512 * 1024 - 4096
"""The largest directory document: the generated broker's max_packet_size (512 KiB) less room
for the MQTT header and topic. About 2,000 entries."""
ROLES: Final = ("door", "indoor", "web")
RINGABLE: Final = ("indoor", "web")
"""The roles a door's ``flat:<flat>`` target rings."""
FLAT_TARGET_PREFIX: Final = "flat:"
MAX_FLAT_CHARS: Final = 32
MAX_NAME_CHARS: Final = 64
_FLAT = re.compile(r"[A-Za-z0-9_.-]{0,32}")
STATE_FILE: Final = "directory.json"
"""Under a unit's state directory: the highest version accepted and that document."""


class DirectoryProblem(enum.Enum):
    """Why a received directory was refused (each has its own log line)."""

    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    OTHER_SITE = "other_site"
    ROLLBACK = "rollback"


class DirectoryRefused(SignalingError):
    """A directory document that is not accepted, and why."""

    def __init__(self, problem: DirectoryProblem, detail: str) -> None:
        super().__init__(f"directory refused ({problem.value}): {detail}")
        self.problem = problem


@dataclass(frozen=True)
class DirectoryEntry:
    """One endpoint of the site: what a unit pins for it."""

    address: str
    name: str
    role: str
    flat: str
    keys: PublicKeys
    rights: frozenset[Right] = frozenset()

    def __post_init__(self) -> None:
        valid_name("directory entry address", self.address)
        if self.role not in ROLES:
            raise SignalingError(
                f"directory entry {self.address}: role {self.role!r} is not one of "
                f"{', '.join(ROLES)}"
            )
        _check_text(f"directory entry {self.address}: name", self.name, MAX_NAME_CHARS)
        if not _FLAT.fullmatch(self.flat):
            raise SignalingError(
                f"directory entry {self.address}: flat {self.flat!r} must be up to "
                f"{MAX_FLAT_CHARS} letters, digits, '_', '.' or '-' (or empty)"
            )

    def to_json(self) -> dict[str, Any]:
        """The entry as the document carries it."""
        return {
            "address": self.address,
            "name": self.name,
            "role": self.role,
            "flat": self.flat,
            "keys": self.keys.to_json(),
            "rights": sorted(right.value for right in self.rights),
        }

    @classmethod
    def from_json(cls, obj: object) -> DirectoryEntry:
        """An entry from the document; SignalingError names what is wrong."""
        if not isinstance(obj, dict):
            raise SignalingError("a directory entry is not a JSON object")
        expected = {"address", "name", "role", "flat", "keys", "rights"}
        if set(obj) != expected:
            raise SignalingError(
                f"directory entry {obj.get('address')!r} has fields {sorted(obj)}, "
                f"expected {sorted(expected)}"
            )
        for key in ("address", "name", "role", "flat"):
            if not isinstance(obj[key], str):
                raise SignalingError(f"directory entry field {key!r} is not a string")
        rights = obj["rights"]
        if not isinstance(rights, list) or not all(isinstance(r, str) for r in rights):
            raise SignalingError(f"directory entry {obj['address']}: rights is not a string list")
        try:
            parsed = frozenset(Right(r) for r in rights)
        except ValueError as err:
            raise SignalingError(f"directory entry {obj['address']}: {err}") from err
        return cls(
            address=obj["address"],
            name=obj["name"],
            role=obj["role"],
            flat=obj["flat"],
            keys=PublicKeys.from_json(obj["keys"]),
            rights=parsed,
        )

    def contact(self) -> Contact:
        """The contact a unit pins for this entry."""
        return Contact(
            address=self.address,
            keys=self.keys,
            name=self.name,
            role=self.role,
            rights=self.rights,
            flat=self.flat,
            source="directory",
        )


def _check_text(what: str, value: str, limit: int) -> None:
    if len(value) > limit or not value.isprintable():
        raise SignalingError(f"{what} {value!r} must be at most {limit} printable characters")


@dataclass(frozen=True)
class Directory:
    """A site directory: the document's fields, without its signature."""

    site: str
    version: int
    issued_at_ms: int
    entries: tuple[DirectoryEntry, ...] = ()

    def __post_init__(self) -> None:
        valid_name("directory site", self.site)
        if not 1 <= self.version <= 2**53 - 1:
            raise SignalingError(f"directory version {self.version} must be within 1..2**53-1")
        if not 0 <= self.issued_at_ms <= 2**53 - 1:
            raise SignalingError(f"directory issued_at_ms {self.issued_at_ms} is out of range")
        # one order (by address) for one document, whatever order it was built in
        object.__setattr__(self, "entries", tuple(sorted(self.entries, key=lambda e: e.address)))
        seen: set[str] = set()
        for entry in self.entries:
            if entry.address in seen:
                raise SignalingError(f"directory lists {entry.address} twice")
            seen.add(entry.address)

    def to_json(self) -> dict[str, Any]:
        """The document without ``sig`` (entries sorted by address)."""
        return {
            "v": DIRECTORY_VERSION,
            "site": self.site,
            "version": self.version,
            "issued_at_ms": self.issued_at_ms,
            "entries": [e.to_json() for e in self.entries],
        }

    def signed_bytes(self) -> bytes:
        """The bytes the admin key signs."""
        return DIRECTORY_SIG_CONTEXT + canonical(self.to_json())

    def sign(self, admin_key: Ed25519PrivateKey) -> bytes:
        """The published document: canonical JSON with ``sig`` (raises if it is too large)."""
        fields = self.to_json()
        fields["sig"] = b64u_encode(admin_key.sign(self.signed_bytes()))
        data = canonical(fields)
        if len(data) > MAX_DIRECTORY_BYTES:
            raise SignalingError(
                f"the directory is {len(data)} bytes, over the {MAX_DIRECTORY_BYTES} the site "
                f"broker carries in one message ({len(self.entries)} entries)"
            )
        return data

    def entry(self, address: str) -> DirectoryEntry | None:
        """The entry of ``address``, or None."""
        return next((e for e in self.entries if e.address == address), None)

    def flat_members(self, flat: str) -> list[str]:
        """The ring group of ``flat``: its indoor units and phones, by address."""
        return [e.address for e in self.entries if e.flat == flat and e.role in RINGABLE]

    def peers_of(self, address: str, targets: Iterable[str] = ()) -> frozenset[str]:
        """The addresses whose presence ``address`` needs, from this directory.

        Its ring ``targets`` (``flat:<flat>`` expanded to that flat's indoor units and phones,
        an address as it is), the other members of its own flat and, for an indoor unit or a
        phone, every door station (it shows who rings and can monitor them). Not itself. For
        a building this grows with the flat and the doors, not with the site: what an endpoint
        subscribes to (presence per address) should come from here.
        """
        own = self.entry(address)
        needed: set[str] = set()
        for target in targets:
            if target.startswith(FLAT_TARGET_PREFIX):
                needed.update(self.flat_members(target.removeprefix(FLAT_TARGET_PREFIX)))
            else:
                needed.add(target)
        if own is not None and own.flat:
            needed.update(e.address for e in self.entries if e.flat == own.flat)
        if own is not None and own.role in RINGABLE:
            needed.update(e.address for e in self.entries if e.role == "door")
        needed.discard(address)
        return frozenset(needed)


def admin_public_key(text: str) -> bytes:
    """The 32 raw bytes of an admin public key given in base64url; SignalingError if not one."""
    try:
        raw = b64u_decode(text)
    except ValueError as err:
        raise SignalingError(f"admin key {text!r} is not base64url: {err}") from err
    if len(raw) != 32:
        raise SignalingError(f"admin key is {len(raw)} bytes, an Ed25519 public key is 32")
    return raw


def read_directory(payload: bytes, *, site: str, admin_key: bytes) -> Directory:
    """Parse and verify a published directory; DirectoryRefused says why it is not accepted.

    The version is not checked here (:class:`SiteDirectory` knows the highest accepted).
    """
    if len(payload) > MAX_DIRECTORY_BYTES:
        raise DirectoryRefused(
            DirectoryProblem.MALFORMED, f"{len(payload)} bytes, over {MAX_DIRECTORY_BYTES}"
        )
    try:
        fields = json.loads(payload)
    except (ValueError, RecursionError) as err:
        raise DirectoryRefused(DirectoryProblem.MALFORMED, f"not JSON: {err}") from err
    if not isinstance(fields, dict):
        raise DirectoryRefused(DirectoryProblem.MALFORMED, "not a JSON object")
    sig = fields.pop("sig", None)
    if sig is None:
        raise DirectoryRefused(DirectoryProblem.UNSIGNED, "it has no sig")
    try:
        raw_sig = b64u_decode(sig) if isinstance(sig, str) else b""
    except ValueError:
        raw_sig = b""
    if len(raw_sig) != SIG_SIZE:
        raise DirectoryRefused(
            DirectoryProblem.BAD_SIGNATURE, f"sig is not {SIG_SIZE} base64url bytes"
        )
    try:
        signed = DIRECTORY_SIG_CONTEXT + canonical(fields)
        Ed25519PublicKey.from_public_bytes(admin_key).verify(raw_sig, signed)
    except SignalingError as err:
        raise DirectoryRefused(DirectoryProblem.MALFORMED, str(err)) from err
    except (InvalidSignature, ValueError) as err:
        raise DirectoryRefused(
            DirectoryProblem.BAD_SIGNATURE,
            f"its signature does not verify with the pinned admin key {b64u_encode(admin_key)}",
        ) from err
    directory = _directory_fields(fields)
    if directory.site != site:
        raise DirectoryRefused(
            DirectoryProblem.OTHER_SITE, f"it is for site {directory.site!r}, this is {site!r}"
        )
    return directory


def _directory_fields(fields: dict[str, Any]) -> Directory:
    expected = {"v", "site", "version", "issued_at_ms", "entries"}
    try:
        if set(fields) != expected:
            raise SignalingError(f"fields {sorted(fields)}, expected {sorted(expected)}")
        if fields["v"] != DIRECTORY_VERSION:
            raise SignalingError(f"format v={fields['v']!r}, this release reads v=1")
        site, version, issued, entries = (
            fields["site"],
            fields["version"],
            fields["issued_at_ms"],
            fields["entries"],
        )
        if not isinstance(site, str) or not isinstance(entries, list):
            raise SignalingError("site is not a string or entries not a list")
        if type(version) is not int or type(issued) is not int:
            raise SignalingError("version and issued_at_ms must be integers")
        return Directory(
            site=site,
            version=version,
            issued_at_ms=issued,
            entries=tuple(DirectoryEntry.from_json(e) for e in entries),
        )
    except SignalingError as err:
        raise DirectoryRefused(DirectoryProblem.MALFORMED, str(err)) from err


@dataclass
class SiteDirectory:
    """What a unit has accepted from the site directory, and where it keeps the version floor.

    :meth:`receive` is handed each directory message; an accepted one replaces the book's
    directory contacts (:meth:`ContactBook.use_directory`). :meth:`load` restores the last
    accepted document at start (verified again), so a restart neither forgets the contacts
    nor accepts an older document.
    """

    site: str
    admin_key: bytes
    contacts: ContactBook
    state_file: Path | None = None
    own_address: str = ""
    current: Directory | None = None
    highest_version: int = 0
    refused: dict[DirectoryProblem, int] = field(default_factory=dict)
    _watchers: list[Callable[[Directory], object]] = field(default_factory=list, repr=False)
    _pending: tuple[bytes, int] | None = field(default=None, repr=False)
    _saver: asyncio.Task[None] | None = field(default=None, repr=False)

    def load(self) -> None:
        """Read the state file (blocking: run it in a thread at start)."""
        if self.state_file is None:
            return
        try:
            saved = json.loads(self.state_file.read_text())
            self.highest_version = int(saved["version"])
            payload = str(saved["document"]).encode()
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as err:
            _log.error("site directory state %s unreadable, ignored: %s", self.state_file, err)
            return
        try:
            directory = read_directory(payload, site=self.site, admin_key=self.admin_key)
        except DirectoryRefused as err:
            # another admin key was pinned since (a rotation): the floor stays
            _log.warning("the saved site directory is not used: %s", err)
            return
        self._use(directory)
        _log.info("site directory version %d restored from %s", directory.version, self.state_file)

    def receive(self, payload: bytes) -> Directory | None:
        """Check a directory message; the accepted directory, or None (logged, counted)."""
        if not payload:
            _log.warning("site directory cleared on the broker: the accepted one is kept")
            return None
        try:
            directory = read_directory(payload, site=self.site, admin_key=self.admin_key)
        except DirectoryRefused as err:
            self._refuse(err)
            return None
        if directory.version <= self.highest_version:
            if self.current is not None and directory == self.current:
                return None  # the same document again (a reconnection): nothing to say
            self._refuse(
                DirectoryRefused(
                    DirectoryProblem.ROLLBACK,
                    f"version {directory.version} is not above the accepted "
                    f"{self.highest_version} (an old or replayed directory)",
                )
            )
            return None
        self._use(directory)
        self._save_soon(payload, directory.version)
        _log.info(
            "site directory version %d accepted: %d entries",
            directory.version,
            len(directory.entries),
        )
        return directory

    def watch(self, callback: Callable[[Directory], object]) -> None:
        """Call ``callback`` with each directory accepted from now on (received or restored).

        Whoever narrows the endpoint's subscriptions reads :meth:`Directory.peers_of` there;
        a door station prepares its ring group's offers anew.
        """
        self._watchers.append(callback)

    def _refuse(self, err: DirectoryRefused) -> None:
        self.refused[err.problem] = self.refused.get(err.problem, 0) + 1
        _log.warning("%s", err)

    def _save_soon(self, payload: bytes, version: int) -> None:
        """Write the accepted document in a thread (the latest wins), or now without a loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._save(payload, version)
            return
        self._pending = (payload, version)
        if self._saver is None or self._saver.done():
            self._saver = loop.create_task(self._save_latest(), name="directory-save")

    async def _save_latest(self) -> None:
        while self._pending is not None:
            payload, version = self._pending
            self._pending = None
            await asyncio.to_thread(self._save, payload, version)

    async def flush(self) -> None:
        """Wait until the accepted document is on disk."""
        if self._saver is not None:
            await self._saver

    def _use(self, directory: Directory) -> None:
        self.current = directory
        self.highest_version = max(self.highest_version, directory.version)
        self.contacts.use_directory(
            e.contact() for e in directory.entries if e.address != self.own_address
        )
        for watcher in list(self._watchers):
            watcher(directory)

    def _save(self, payload: bytes, version: int) -> None:
        if self.state_file is None:
            return
        text = json.dumps({"version": version, "document": payload.decode()})
        try:
            write_atomically(self.state_file, text.encode())
        except OSError as err:
            _log.error("cannot keep the site directory in %s: %s", self.state_file, err)

    def addresses(self) -> frozenset[str]:
        """The addresses of the accepted directory (empty before one is accepted)."""
        if self.current is None:
            return frozenset()
        return frozenset(e.address for e in self.current.entries)
