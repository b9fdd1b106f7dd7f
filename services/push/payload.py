"""What a doorbell push says: which door rings, for which call, since when.

``{"v": 1, "type": "ring", "door", "name", "call_id", "at_ms", "ring_timeout_ms"[, "snapshot"]}``
(docs/protocol.md, "Web Push"). It carries nothing that opens the door or joins the call: the
page still connects with its own login and gets the signed invite. It stays under
:data:`MAX_PAYLOAD_BYTES`, so it fits one push message of every push service (RFC 8291 leaves
3993 bytes of plaintext in a 4096-byte record); a snapshot goes in only when it fits.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

PAYLOAD_VERSION = 1
MAX_PAYLOAD_BYTES = 3072
"""The payload's limit in bytes of UTF-8 JSON."""


@dataclass(frozen=True)
class RingPush:
    """The facts of one doorbell ring a push tells a phone."""

    door: str
    name: str
    call_id: str
    at_ms: int
    ring_timeout_ms: int

    def payload(self, snapshot_jpeg: bytes | None = None) -> bytes:
        """The JSON payload, with ``snapshot_jpeg`` as a data URL only when it still fits."""
        fields: dict[str, object] = {
            "v": PAYLOAD_VERSION,
            "type": "ring",
            "door": self.door,
            "name": self.name,
            "call_id": self.call_id,
            "at_ms": self.at_ms,
            "ring_timeout_ms": self.ring_timeout_ms,
        }
        plain = _encode(fields)
        if len(plain) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"ring push of {len(plain)} bytes is over {MAX_PAYLOAD_BYTES}")
        if snapshot_jpeg:
            data_url = "data:image/jpeg;base64," + base64.b64encode(snapshot_jpeg).decode("ascii")
            with_snapshot = _encode({**fields, "snapshot": data_url})
            if len(with_snapshot) <= MAX_PAYLOAD_BYTES:
                return with_snapshot
        return plain


def _encode(fields: dict[str, object]) -> bytes:
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
