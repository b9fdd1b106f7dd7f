"""The installer's side of the site directory: the admin key, the working list, publishing.

``callbox site`` (device/cli/_site.py) keeps, in one directory on the installer's machine or
the broker host (never on a unit):

- ``admin.key``: the site admin's Ed25519 private key (raw 32 bytes, base64url), 0600 in a
  0700 directory, made by ``callbox site init``;
- ``site.json``: the site's name, the last published version and the entries.

:func:`publish` signs the next version and publishes it retained on the site broker as the
``admin`` account (the only one the generated ACL lets write the directory), then reads it back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.durable import write_atomically
from services.signaling.directory import (
    Directory,
    DirectoryEntry,
    DirectoryRefused,
    read_directory,
)
from services.signaling.errors import SignalingError
from services.signaling.identity import (
    b64u_decode,
    b64u_encode,
    read_private_file,
    write_private_file,
)
from services.signaling.profile import Profile, read_profile
from services.signaling.tlsclient import pinned_ca
from services.signaling.topics import SiteTopics, valid_name
from services.signaling.transport import BrokerAddress

_log = logging.getLogger(__name__)

ADMIN_KEY_FILE = "admin.key"
SITE_FILE = "site.json"
RETAINED_WAIT_S = 1.5
"""How long to wait for a retained message after subscribing (mosquitto sends it at once)."""


def admin_public_text(key: Ed25519PrivateKey) -> str:
    """The public half in the form ``[directory] admin_key`` takes (base64url)."""
    return b64u_encode(key.public_key().public_bytes_raw())


def load_admin_key(directory: Path) -> Ed25519PrivateKey:
    """The admin key in ``directory``; SignalingError when there is none or it is unusable."""
    path = directory / ADMIN_KEY_FILE
    try:
        raw = b64u_decode(read_private_file(path).decode().strip())
    except FileNotFoundError as err:
        raise SignalingError(
            f"no site admin key in {directory}: run `callbox site init` first (or give the "
            "directory that holds it with --dir)"
        ) from err
    except ValueError as err:
        raise SignalingError(f"{path}: not a base64url key: {err}") from err
    if len(raw) != 32:
        raise SignalingError(f"{path}: {len(raw)} bytes, an Ed25519 private key is 32")
    return Ed25519PrivateKey.from_private_bytes(raw)


def create_admin_key(directory: Path) -> Ed25519PrivateKey:
    """Make the admin key in ``directory`` (0600; FileExistsError if there is one)."""
    key = Ed25519PrivateKey.generate()
    text = b64u_encode(key.private_bytes_raw()) + "\n"
    write_private_file(directory / ADMIN_KEY_FILE, text.encode())
    return key


@dataclass
class SiteBook:
    """The working list of the site's endpoints (``site.json``) and the last published version."""

    site: str
    version: int = 0
    entries: dict[str, DirectoryEntry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        valid_name("site", self.site)

    @classmethod
    def load(cls, directory: Path) -> SiteBook:
        """Read ``site.json`` (SignalingError naming the file and the problem)."""
        path = directory / SITE_FILE
        try:
            data = json.loads(path.read_text())
            book = cls(site=data["site"], version=int(data["version"]))
            for obj in data["entries"]:
                entry = DirectoryEntry.from_json(obj)
                book.entries[entry.address] = entry
        except FileNotFoundError as err:
            raise SignalingError(f"no {path}: run `callbox site init --site NAME` first") from err
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SignalingError(f"{path} is unreadable: {err}") from err
        return book

    def save(self, directory: Path) -> None:
        """Write ``site.json`` atomically (0600)."""
        data = {
            "site": self.site,
            "version": self.version,
            "entries": [self.entries[a].to_json() for a in sorted(self.entries)],
        }
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        try:
            write_atomically(directory / SITE_FILE, text.encode())
        except OSError as err:
            raise SignalingError(f"cannot write {directory / SITE_FILE}: {err}") from err

    def add(self, entry: DirectoryEntry) -> None:
        """List a new endpoint (SignalingError when its address or keys are listed already)."""
        if entry.address in self.entries:
            raise SignalingError(
                f"{entry.address} is listed already: `callbox site remove {entry.address}` "
                "first to replace it"
            )
        for other in self.entries.values():
            if other.keys == entry.keys:
                raise SignalingError(
                    f"{entry.address} has the same keys as {other.address}: one device, two "
                    "addresses?"
                )
        self.entries[entry.address] = entry

    def remove(self, address: str) -> DirectoryEntry:
        """Unlist ``address`` (SignalingError when it is not listed)."""
        try:
            return self.entries.pop(address)
        except KeyError:
            raise SignalingError(f"{address} is not in the site directory") from None

    def directory(self, version: int) -> Directory:
        """The document to sign as ``version``."""
        return Directory(
            site=self.site,
            version=version,
            issued_at_ms=int(time.time() * 1000),
            entries=tuple(self.entries[a] for a in sorted(self.entries)),
        )


async def _client(broker: BrokerAddress, client_id: str) -> aiomqtt.Client:
    """A client of the admin account (the CA file read in a thread, the client on the loop)."""
    tls = None
    if broker.ca_file is not None:
        tls = (await asyncio.to_thread(pinned_ca, broker.ca_file)).context
    return aiomqtt.Client(
        broker.host,
        broker.port,
        username=broker.username,
        password=broker.password,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=10,
        tls_context=tls,
    )


async def read_retained(
    broker: BrokerAddress, topic: str, wait_s: float = RETAINED_WAIT_S
) -> bytes:
    """The retained message on ``topic`` (b"" when none came within ``wait_s``)."""
    client = await _client(broker, broker.username)
    try:
        async with client:
            await client.subscribe(topic, qos=1)
            try:
                async with asyncio.timeout(wait_s):
                    async for message in client.messages:
                        payload = message.payload
                        if isinstance(payload, bytes | bytearray):
                            return bytes(payload)
            except TimeoutError:
                return b""
    except aiomqtt.MqttError as err:
        raise SignalingError(
            f"cannot reach the site broker at {broker.host}:{broker.port} as "
            f"{broker.username}: {err}"
        ) from err
    return b""


async def published_version(broker: BrokerAddress, site: str, admin_key: Ed25519PrivateKey) -> int:
    """The version of the directory retained on the broker now (0: none, or not ours)."""
    payload = await read_retained(broker, SiteTopics(site).directory())
    if not payload:
        return 0
    public = admin_key.public_key().public_bytes_raw()
    try:
        return read_directory(payload, site=site, admin_key=public).version
    except DirectoryRefused as err:
        _log.warning("the directory on the broker is not this admin key's: %s", err)
        return 0


async def publish(broker: BrokerAddress, book: SiteBook, admin_key: Ed25519PrivateKey) -> Directory:
    """Sign the next version of ``book`` and publish it retained; the directory published.

    The next version is above both the book's last and the one on the broker (a backup
    restored from before a publish still moves forward). SignalingError when the broker does
    not keep it (the account is not the ``admin`` the generated ACL names).
    """
    on_broker = await published_version(broker, book.site, admin_key)
    directory = book.directory(max(book.version, on_broker) + 1)
    payload = directory.sign(admin_key)
    topic = SiteTopics(book.site).directory()
    client = await _client(broker, broker.username)
    try:
        async with client:
            await client.publish(topic, payload, qos=1, retain=True)
    except aiomqtt.MqttError as err:
        raise SignalingError(
            f"cannot publish the directory on {broker.host}:{broker.port}: {err}"
        ) from err
    if await read_retained(broker, topic) != payload:
        raise SignalingError(
            f"the broker did not keep the directory: only its {broker.username!r} account may "
            "write it when the ACL is callbox's (`callbox broker` writes it; use its "
            "admin.password)"
        )
    book.version = directory.version
    return directory


async def advertised_profile(broker: BrokerAddress, site: str, address: str) -> Profile:
    """``address``'s retained profile on the broker (SignalingError if none or unusable)."""
    payload = await read_retained(broker, SiteTopics(site).profile(address))
    if not payload:
        raise SignalingError(
            f"{address} has no profile on the broker: is it connected (a phone: its page "
            "open after `callbox keys pair-web`)?"
        )
    return read_profile(address, payload)
