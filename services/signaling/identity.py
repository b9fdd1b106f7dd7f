"""Endpoint identity: an Ed25519 signing key and an X25519 key agreement key.

Public keys travel as `PublicKeys` (raw 32-byte keys, base64url in JSON), are shown to people as a
`PublicKeys.fingerprint()` and compared between two endpoints as a `safety_number()`. The private
keys live in ``identity.key`` (mode 0600) under the state directory. See docs/protocol.md,
"Identity and fingerprints" and "Safety number".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from services.durable import fsync_directory, write_atomically
from services.signaling.errors import SignalingError

__all__ = [
    "KEY_FILE_NAME",
    "KEY_SIZE",
    "Identity",
    "PublicKeys",
    "b64u_decode",
    "b64u_encode",
    "safety_number",
]

KEY_FILE_NAME: Final = "identity.key"
"""Name of the private key file inside the state directory."""

KEY_SIZE: Final = 32
"""Size in bytes of every raw Ed25519 / X25519 public or private key."""

_B64U_ALPHABET: Final = re.compile(r"[A-Za-z0-9_-]*")
_SAFETY_DIGITS: Final = 60


def b64u_encode(data: bytes) -> str:
    """Encode bytes as base64url without padding (RFC 4648 section 5, ``=`` stripped)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    """Decode strict base64url without padding.

    Only the characters ``A-Z a-z 0-9 - _`` are accepted, no ``=`` padding, no whitespace, and
    the encoding must be the canonical one (unused trailing bits zero), so every byte string has
    exactly one accepted text form. Raises ValueError otherwise.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a base64url string, got {type(text).__name__}")
    if _B64U_ALPHABET.fullmatch(text) is None:
        raise ValueError("not base64url without padding (allowed: A-Z a-z 0-9 - _)")
    if len(text) % 4 == 1:
        raise ValueError("impossible base64url length")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:  # pragma: no cover - excluded by the checks above
        raise ValueError(f"not base64url: {exc}") from exc
    if b64u_encode(data) != text:
        raise ValueError("non-canonical base64url (unused trailing bits are not zero)")
    return data


def _decode_key(value: object, field: str, what: str) -> bytes:
    """Decode one base64url raw key, naming `field` of `what` in the error."""
    if not isinstance(value, str):
        raise SignalingError(f"{what}: field {field!r} must be a base64url string")
    try:
        raw = b64u_decode(value)
    except ValueError as exc:
        raise SignalingError(f"{what}: field {field!r}: {exc}") from exc
    if len(raw) != KEY_SIZE:
        raise SignalingError(
            f"{what}: field {field!r} must decode to {KEY_SIZE} bytes, not {len(raw)}"
        )
    return raw


def _group(text: str, size: int) -> str:
    """Split `text` into space-separated groups of `size` characters."""
    return " ".join(text[i : i + size] for i in range(0, len(text), size))


@dataclass(frozen=True, slots=True)
class PublicKeys:
    """The public half of an identity: raw 32-byte Ed25519 (`sign`) and X25519 (`dh`) keys."""

    sign: bytes
    dh: bytes

    def __post_init__(self) -> None:
        """Refuse anything but two 32-byte strings, naming the bad field."""
        for field in ("sign", "dh"):
            value = getattr(self, field)
            if not isinstance(value, bytes):
                raise SignalingError(f"public keys: field {field!r} must be bytes")
            if len(value) != KEY_SIZE:
                raise SignalingError(
                    f"public keys: field {field!r} must be {KEY_SIZE} bytes, not {len(value)}"
                )

    def fingerprint(self) -> str:
        """Return the key fingerprint shown to people.

        The first 16 bytes of SHA-256(sign || dh) as lower-case hex in 8 space-separated groups
        of 4 digits, e.g. ``"3f1a 09c2 …"``.
        """
        digest = hashlib.sha256(self.sign + self.dh).digest()[:16]
        return _group(digest.hex(), 4)

    def to_json(self) -> dict[str, str]:
        """Return the JSON object ``{"sign": b64u, "dh": b64u}`` (base64url, no padding)."""
        return {"sign": b64u_encode(self.sign), "dh": b64u_encode(self.dh)}

    @classmethod
    def from_json(cls, obj: object) -> PublicKeys:
        """Parse the object written by `to_json`.

        Raises SignalingError naming the field when a field is missing, is not strict base64url
        or does not decode to 32 bytes, or when unknown fields are present.
        """
        if not isinstance(obj, dict):
            raise SignalingError("public keys: expected a JSON object with 'sign' and 'dh'")
        extra = sorted(str(key) for key in obj if key not in ("sign", "dh"))
        if extra:
            raise SignalingError(f"public keys: unknown field(s) {', '.join(map(repr, extra))}")
        for field in ("sign", "dh"):
            if field not in obj:
                raise SignalingError(f"public keys: field {field!r} is missing")
        return cls(
            sign=_decode_key(obj["sign"], "sign", "public keys"),
            dh=_decode_key(obj["dh"], "dh", "public keys"),
        )


def safety_number(a: PublicKeys, b: PublicKeys) -> str:
    """Return the safety number two endpoints compare to confirm each other's keys.

    Order-independent: SHA-256 over the byte-wise sorted concatenation of (sign || dh) of both
    endpoints, read as a big-endian integer, reduced modulo 10**60 and rendered as 60 decimal
    digits in 12 space-separated groups of 5 (the shape of Signal's safety numbers).
    """
    blobs = sorted((a.sign + a.dh, b.sign + b.dh))
    digest = hashlib.sha256(blobs[0] + blobs[1]).digest()
    number = int.from_bytes(digest, "big") % (10**_SAFETY_DIGITS)
    return _group(f"{number:0{_SAFETY_DIGITS}d}", 5)


class Identity:
    """The private keys of this endpoint: Ed25519 for signatures, X25519 for key agreement.

    The private keys never leave the object except through `save`; `repr()` shows only the
    fingerprint.
    """

    __slots__ = ("_dh_key", "_public_keys", "_sign_key")

    def __init__(self, sign_key: Ed25519PrivateKey, dh_key: X25519PrivateKey) -> None:
        """Wrap existing private key objects."""
        self._sign_key = sign_key
        self._dh_key = dh_key
        self._public_keys = PublicKeys(
            sign=sign_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
            dh=dh_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
        )

    @classmethod
    def generate(cls) -> Identity:
        """Create a fresh random identity."""
        return cls(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, sign: bytes, dh: bytes) -> Identity:
        """Build an identity from a raw 32-byte Ed25519 seed and a raw 32-byte X25519 key."""
        for field, value in (("sign", sign), ("dh", dh)):
            if not isinstance(value, bytes) or len(value) != KEY_SIZE:
                raise SignalingError(f"private key {field!r} must be {KEY_SIZE} raw bytes")
        return cls(
            Ed25519PrivateKey.from_private_bytes(sign), X25519PrivateKey.from_private_bytes(dh)
        )

    @property
    def public_keys(self) -> PublicKeys:
        """The public keys that peers pin for this identity."""
        return self._public_keys

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of `data`."""
        return self._sign_key.sign(data)

    def dh(self, peer_public: bytes) -> bytes:
        """Return the 32-byte X25519 shared secret with the raw public key `peer_public`.

        Raises SignalingError for a key that is not 32 bytes or that yields the all-zero secret
        (a low-order point).
        """
        if not isinstance(peer_public, bytes) or len(peer_public) != KEY_SIZE:
            raise SignalingError(f"X25519 public key must be {KEY_SIZE} raw bytes")
        try:
            return self._dh_key.exchange(X25519PublicKey.from_public_bytes(peer_public))
        except ValueError as exc:
            raise SignalingError(f"X25519 key agreement failed: {exc}") from exc

    def __repr__(self) -> str:
        """Show the fingerprint, never the private keys."""
        return f"Identity(fingerprint={self._public_keys.fingerprint()!r})"

    # ----------------------------------------------------------------- storage

    def _file_bytes(self) -> bytes:
        """The content of the key file: JSON of the base64url raw private keys."""
        sign = self._sign_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        dh = self._dh_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        text = json.dumps({"sign": b64u_encode(sign), "dh": b64u_encode(dh)}, sort_keys=True)
        return (text + "\n").encode("ascii")

    def save(self, directory: Path) -> Path:
        """Write ``identity.key`` into `directory` atomically with mode 0600; return its path.

        The directory is created (mode 0700) if missing. The file is written to a fresh temporary
        file (``O_CREAT | O_EXCL``, mode 0600), fsynced and renamed over the old one with
        `os.replace`, so a crash leaves either the old or the new key file, never a torn one.
        """
        path = Path(directory) / KEY_FILE_NAME
        _write_private_file(path, self._file_bytes(), replace=True)
        return path

    @classmethod
    def load(cls, directory: Path) -> Identity:
        """Read ``identity.key`` from `directory`.

        Raises SignalingError naming the path when the file is missing, is not a regular file, is
        accessible by group or others (naming the mode), or does not hold two valid keys.
        """
        path = Path(directory) / KEY_FILE_NAME
        try:
            data = _read_private_file(path)
        except FileNotFoundError as exc:
            raise SignalingError(f"{path}: key file does not exist") from exc
        return cls._from_file_bytes(path, data)

    @classmethod
    def load_or_create(cls, directory: Path) -> Identity:
        """Load ``identity.key`` from `directory`, or create and save a new identity.

        An existing file is never overwritten: when two processes race to create it, both end up
        with the one that was written first. Raises SignalingError as `load` does.
        """
        path = Path(directory) / KEY_FILE_NAME
        try:
            return cls._from_file_bytes(path, _read_private_file(path))
        except FileNotFoundError:
            pass
        identity = cls.generate()
        try:
            _write_private_file(path, identity._file_bytes(), replace=False)
        except FileExistsError:
            return cls.load(directory)
        return identity

    @classmethod
    def _from_file_bytes(cls, path: Path, data: bytes) -> Identity:
        """Parse the key file content, naming `path` in every error."""
        what = f"{path}"
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise SignalingError(f"{path}: key file is not valid JSON: {exc}") from exc
        if not isinstance(obj, dict) or set(obj) != {"sign", "dh"}:
            raise SignalingError(f"{path}: key file must be a JSON object with 'sign' and 'dh'")
        return cls.from_private_bytes(
            _decode_key(obj["sign"], "sign", what), _decode_key(obj["dh"], "dh", what)
        )


def read_private_file(path: Path) -> bytes:
    """A 0600 private key file's bytes (FileNotFoundError, or SignalingError naming why not)."""
    return _read_private_file(path)


def write_private_file(path: Path, data: bytes) -> None:
    """Create a 0600 private key file (its directory 0700); FileExistsError if it exists."""
    _write_private_file(path, data, replace=False)


def _read_private_file(path: Path) -> bytes:
    """Read a private key file, refusing symlinks, non-regular files and loose permissions.

    Raises FileNotFoundError when the file does not exist and SignalingError otherwise.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SignalingError(f"{path}: cannot open key file: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SignalingError(f"{path}: key file is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise SignalingError(
                f"{path}: key file has mode {mode:04o} and is accessible by group or others; "
                f"it must be 0600 (chmod 600 {path})"
            )
        chunks: list[bytes] = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise SignalingError(f"{path}: cannot read key file: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _write_private_file(path: Path, data: bytes, *, replace: bool) -> None:
    """Write `data` to `path` with mode 0600 through a temporary file in the same directory.

    See `write_atomically`.

    With `replace` the temporary file is renamed over `path` (`os.replace`); without it, it is
    hard-linked to `path`, which raises FileExistsError if `path` already exists. Other OS
    errors become SignalingError naming the path. The temporary file never survives.
    """
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SignalingError(f"{directory}: cannot create key directory: {exc}") from exc
    try:
        # exactly 0600 whatever the umask
        write_atomically(
            path, data, before_write=lambda fd: os.fchmod(fd, 0o600), exclusive=not replace
        )
    except FileExistsError:
        raise
    except OSError as exc:
        raise SignalingError(f"{path}: cannot write key file: {exc.strerror or exc}") from exc
    fsync_directory(directory)
