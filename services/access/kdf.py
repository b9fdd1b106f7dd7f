"""Hashing access codes and cards with scrypt, a slow, memory-hard key derivation function.

scrypt is in the Python standard library (OpenSSL), so no new dependency: Argon2id would
be as good, scrypt is the one already on every unit. A PIN has few digits; the KDF makes
each guess against a stolen ``access.json`` cost ~16 MiB and tens of milliseconds, the file's
mode (0600, root) is the first defence (docs/security.md, "Access codes and cards").

The parameters travel with the hashes (``kdfs`` in the file): they can be raised later,
and an entry hashed with older ones is re-hashed with the current ones at its next use.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_N", "DEFAULT_P", "DEFAULT_R", "KdfParams", "b64d", "b64e"]

DEFAULT_N = 2**14
"""scrypt's CPU/memory cost: 128 * r * N bytes = 16 MiB; ~40 ms on a PC, ~150 ms on a Pi 4."""
DEFAULT_R = 8
"""scrypt's block size."""
DEFAULT_P = 1
"""scrypt's parallelism."""
DKLEN = 32
"""Bytes of hash kept per entry."""
_MAX_MEM = 256 * 1024 * 1024


def b64e(data: bytes) -> str:
    """``data`` as unpadded URL-safe base64 (the file's encoding of bytes)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    """The bytes of unpadded URL-safe base64 ``text``; ValueError when it is not."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class KdfParams:
    """One scrypt parameter set with its salt, shared by every entry hashed with it.

    One salt for the whole list, not one per entry: a check derives once per attempt and
    compares the result with every entry, so its time does not depend on which entry (if
    any) matches, nor on how many there are beyond a cheap compare each. A per-entry salt
    would cost one derivation per entry per attempt (300 entries: tens of seconds).
    """

    n: int = DEFAULT_N
    r: int = DEFAULT_R
    p: int = DEFAULT_P
    salt: bytes = b""

    def __post_init__(self) -> None:
        """Refuse parameters scrypt cannot use or that are too weak to mean anything."""
        if self.n < 2**10 or self.n & (self.n - 1):
            raise ValueError(f"scrypt n = {self.n}: a power of two of at least 1024")
        if not 1 <= self.r <= 64 or not 1 <= self.p <= 16:
            raise ValueError(f"scrypt r = {self.r}, p = {self.p}: r 1..64, p 1..16")
        if len(self.salt) < 16:
            raise ValueError("the scrypt salt has fewer than 16 bytes")

    @classmethod
    def fresh(cls, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> KdfParams:
        """New parameters with a random 16-byte salt."""
        return cls(n=n, r=r, p=p, salt=secrets.token_bytes(16))

    def derive(self, kind: str, secret: str) -> bytes:
        """The hash of ``secret`` of ``kind`` (``"code"`` or ``"card"``); blocking: a thread."""
        data = f"callbox-access\0{kind}\0{secret}".encode()
        return hashlib.scrypt(
            data, salt=self.salt, n=self.n, r=self.r, p=self.p, maxmem=_MAX_MEM, dklen=DKLEN
        )

    def to_json(self) -> dict[str, Any]:
        """The parameters as the file keeps them."""
        return {"name": "scrypt", "n": self.n, "r": self.r, "p": self.p, "salt": b64e(self.salt)}

    @classmethod
    def from_json(cls, data: Any) -> KdfParams:
        """Parameters from the file; ValueError naming what is wrong."""
        if not isinstance(data, dict) or data.get("name") != "scrypt":
            raise ValueError("a kdf is not {'name': 'scrypt', ...}")
        n, r, p, salt = (data.get(key) for key in ("n", "r", "p", "salt"))
        if not (type(n) is type(r) is type(p) is int) or not isinstance(salt, str):
            raise ValueError("a kdf needs integers n, r, p and a base64 salt")
        return cls(n=int(n), r=int(r), p=int(p), salt=b64d(salt))
