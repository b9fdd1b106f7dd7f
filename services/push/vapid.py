"""The site's VAPID key pair (RFC 8292): made once on the broker host, copied to door stations.

The private key is a P-256 key in a PEM (PKCS#8) file of mode 0600; whoever holds it can send
pushes to every phone subscribed with the site. Its public key, the 65-byte uncompressed point
in base64url, is the ``applicationServerKey`` a page gives ``pushManager.subscribe`` (the
pairing link carries it as ``push_key``) and the ``k`` of every VAPID header a door sends.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from services.push.errors import VapidKeyError
from services.signaling.broker import Owner, write_private
from services.signaling.identity import b64u_encode

VAPID_KEY_NAME = "vapid.key"
"""The key's file name (under ``<broker dir>/push/`` on the broker host, next to callbox.toml
on a door station)."""


def site_vapid_path(broker_dir: Path) -> Path:
    """The site's VAPID key on the broker host (``<broker dir>/push/vapid.key``)."""
    return broker_dir / "push" / VAPID_KEY_NAME


def site_push_key(broker_dir: Path) -> str:
    """The site's ``applicationServerKey`` (b64u), "" when the site has no VAPID key yet.

    Blocking. VapidKeyError when there is a key file that cannot be used.
    """
    path = site_vapid_path(broker_dir)
    if not os.path.lexists(path):
        return ""
    return load_vapid_key(path).application_server_key


@dataclass(frozen=True)
class VapidKey:
    """The site's VAPID private key and what is derived from it."""

    private_key: ec.EllipticCurvePrivateKey

    @property
    def application_server_key(self) -> str:
        """The public key as browsers take it: base64url of the 65-byte uncompressed point."""
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64u_encode(point)

    def pem(self) -> str:
        """The private key as PEM (PKCS#8): what ``callbox push export`` prints."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    def signer(self) -> Vapid02:
        """The signer pywebpush takes (py_vapid, RFC 8292 ``vapid t=…, k=…``) for this key."""
        return Vapid02(private_key=self.private_key)


def generate_vapid_key() -> VapidKey:
    """A new P-256 key pair."""
    return VapidKey(ec.generate_private_key(ec.SECP256R1()))


def parse_vapid_pem(text: str, source: str) -> VapidKey:
    """The key in PEM ``text``; VapidKeyError naming ``source`` when it is not a P-256 key."""
    try:
        key = serialization.load_pem_private_key(text.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnicodeError) as err:
        raise VapidKeyError(f"{source}: not an unencrypted PEM private key: {err}") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise VapidKeyError(f"{source}: not a P-256 (prime256v1) key, which VAPID requires")
    return VapidKey(key)


def load_vapid_key(path: Path) -> VapidKey:
    """Read the key file ``path``: a regular file, not readable by group or others, P-256.

    Blocking (run it in a thread from async code). VapidKeyError names the file and the problem.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError as err:
        raise VapidKeyError(
            f"{path}: no VAPID key there (make one with `callbox push init` on the broker host, "
            "copy it here with `callbox push import`)"
        ) from err
    except OSError as err:
        raise VapidKeyError(f"{path}: cannot inspect the VAPID key: {err}") from err
    if not stat.S_ISREG(info.st_mode):
        raise VapidKeyError(f"{path}: the VAPID key is not a regular file (a symlink?)")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise VapidKeyError(
            f"{path}: the VAPID key has mode {mode:04o}; it must not be readable by group or "
            f"others (chmod 600 {path})"
        )
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeError) as err:
        raise VapidKeyError(f"{path}: cannot read the VAPID key: {err}") from err
    return parse_vapid_pem(text, str(path))


def save_vapid_key(path: Path, key: VapidKey, owner: Owner | None = None) -> None:
    """Write ``key`` to ``path`` atomically with mode 0600 (given to ``owner`` when set).

    Blocking. VapidKeyError when it cannot be written.
    """
    try:
        write_private(path, key.pem(), owner)
    except OSError as err:
        raise VapidKeyError(f"{path}: cannot write the VAPID key: {err}") from err
