"""Errors of the signaling layer.

Every message a receiver drops is reported as a `RejectedMessage` carrying a `RejectReason`,
whose value is the stable, lower-case name used in logs, counters and docs/protocol.md.
"""

from __future__ import annotations

import enum

from hal.errors import CallboxError


class SignalingError(CallboxError):
    """Base class of every signaling error (bad key material, bad input to seal, I/O on keys)."""


class RejectReason(enum.Enum):
    """Why an incoming message was dropped; the value is the name used in logs and counters."""

    BAD_JSON = "bad_json"
    BAD_FORMAT = "bad_format"
    UNKNOWN_VERSION = "unknown_version"
    WRONG_RECIPIENT = "wrong_recipient"
    UNKNOWN_SENDER = "unknown_sender"
    BAD_SIGNATURE = "bad_signature"
    DECRYPT_FAILED = "decrypt_failed"
    REPLAY = "replay"
    STALE = "stale"
    OVERSIZE = "oversize"
    UNKNOWN_TYPE = "unknown_type"
    KEY_CHANGED = "key_changed"
    WRONG_CALL = "wrong_call"
    RATE_LIMITED = "rate_limited"


class RejectedMessage(SignalingError):
    """An incoming message was dropped.

    `reason` says which check failed, `detail` says what exactly was wrong (which field, which
    sender); `str()` of the error names both.
    """

    reason: RejectReason
    detail: str

    def __init__(self, reason: RejectReason, detail: str) -> None:
        """Build the error from the failed check and a human-readable explanation."""
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        """Return e.g. ``message rejected (bad_signature): signature does not verify``."""
        return f"message rejected ({self.reason.value}): {self.detail}"


class KeyChangedError(SignalingError):
    """A known contact presented public keys that differ from the pinned ones.

    The new keys are refused until a person re-confirms them (compares the safety number).
    """

    address: str
    old_fingerprint: str
    new_fingerprint: str

    def __init__(self, address: str, old_fingerprint: str, new_fingerprint: str) -> None:
        """Build the error from the contact's address and both key fingerprints."""
        super().__init__(address, old_fingerprint, new_fingerprint)
        self.address = address
        self.old_fingerprint = old_fingerprint
        self.new_fingerprint = new_fingerprint

    def __str__(self) -> str:
        """Return a message naming the contact and both fingerprints."""
        return (
            f"key changed for {self.address!r}: pinned {self.old_fingerprint}, "
            f"presented {self.new_fingerprint}; confirm the new safety number to accept it"
        )
