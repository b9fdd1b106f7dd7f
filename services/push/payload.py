"""What a doorbell push says: which door rings, for which call, since when.

``{"v": 1, "type": "ring", "door", "name", "call_id", "at_ms", "ring_timeout_ms"[, "bell"]
[, "snapshot"]}`` (docs/protocol.md, "Web Push"); ``bell``: the label of the entrance panel's
bell that rang ("Flat 12 - Smith"), left out for the door's default bell. It carries nothing
that opens the door or joins the call: the page still connects with its own login and gets
the signed invite. It stays under :data:`MAX_PAYLOAD_BYTES`, so it fits one push message of
every push service (RFC 8291 leaves 3993 bytes of plaintext in a 4096-byte record); a
snapshot goes in only when it fits
(:meth:`RingPush.snapshot_budget` says how large its JPEG may be).

Both pushes of a call (the ring, then the same ring with the visitor's picture) carry the same
RFC 8030 ``Topic`` (:func:`push_topic`), so a push service still holding the first for an
offline phone replaces it with the second.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

PAYLOAD_VERSION = 1
MAX_PAYLOAD_BYTES = 3072
"""The payload's limit in bytes of UTF-8 JSON."""
SNAPSHOT_PREFIX = "data:image/jpeg;base64,"
TOPIC_CHARS = 32
"""RFC 8030 allows at most 32 characters of the base64url alphabet in a ``Topic``."""
_TOPIC_LABEL = b"callbox push topic v1\x00"
MAX_BELL_CHARS = 64
"""The longest bell label a push carries (as ``[[bells]] label`` and the invite's ``bell``)."""


def push_topic(call_id: str) -> str:
    """The RFC 8030 ``Topic`` of the pushes of ``call_id``: 32 base64url characters.

    Derived (SHA-256 over a label and the call id) rather than the call id itself, so the push
    service does not learn the id of the call; the same call id gives the same topic.
    """
    digest = hashlib.sha256(_TOPIC_LABEL + call_id.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:TOPIC_CHARS]


@dataclass(frozen=True)
class RingPush:
    """The facts of one doorbell ring a push tells a phone."""

    door: str
    name: str
    call_id: str
    at_ms: int
    ring_timeout_ms: int
    bell: str = ""
    """The label of the bell that rang ("" for none, or the default doorbell)."""

    def __post_init__(self) -> None:
        if len(self.bell) > MAX_BELL_CHARS or not self.bell.isprintable():
            raise ValueError(f"a bell label is at most {MAX_BELL_CHARS} printable characters")

    def snapshot_budget(self) -> int:
        """The most bytes of JPEG whose data URL still keeps the payload within the limit.

        Base64 makes 4 characters of 3 bytes; the data URL's characters need no JSON escape.
        0 when not even an empty snapshot field fits.
        """
        room = MAX_PAYLOAD_BYTES - len(self._with_snapshot(""))
        return max(0, room // 4 * 3)

    def snapshot_payload(self, snapshot_jpeg: bytes) -> bytes:
        """The payload with ``snapshot_jpeg`` as a data URL; ValueError when it does not fit."""
        if not snapshot_jpeg:
            raise ValueError("a snapshot push needs a JPEG")
        data = base64.b64encode(snapshot_jpeg).decode("ascii")
        payload = self._with_snapshot(data)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"a snapshot of {len(snapshot_jpeg)} bytes makes a push of {len(payload)} "
                f"bytes, over {MAX_PAYLOAD_BYTES} (at most {self.snapshot_budget()} bytes of JPEG)"
            )
        return payload

    def _with_snapshot(self, base64_jpeg: str) -> bytes:
        return _encode({**self._fields(), "snapshot": SNAPSHOT_PREFIX + base64_jpeg})

    def _fields(self) -> dict[str, object]:
        return {
            "v": PAYLOAD_VERSION,
            "type": "ring",
            "door": self.door,
            "name": self.name,
            "call_id": self.call_id,
            "at_ms": self.at_ms,
            "ring_timeout_ms": self.ring_timeout_ms,
            **({"bell": self.bell} if self.bell else {}),
        }

    def payload(self, snapshot_jpeg: bytes | None = None) -> bytes:
        """The JSON payload, with ``snapshot_jpeg`` as a data URL only when it still fits."""
        fields = self._fields()
        plain = _encode(fields)
        if len(plain) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"ring push of {len(plain)} bytes is over {MAX_PAYLOAD_BYTES}")
        if snapshot_jpeg:
            data_url = SNAPSHOT_PREFIX + base64.b64encode(snapshot_jpeg).decode("ascii")
            with_snapshot = _encode({**fields, "snapshot": data_url})
            if len(with_snapshot) <= MAX_PAYLOAD_BYTES:
                return with_snapshot
        return plain


def _encode(fields: dict[str, object]) -> bytes:
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
