"""How the reasons that travel in protocol messages map to call statuses, and back.

docs/protocol.md names the ``reason`` values of ``decline``, ``cancel`` and ``hangup``;
these tables turn them into mesibo statuses and error codes, in one place.
"""

from __future__ import annotations

from services.callapi.status import CallErrorCode, CallStatus

DOOR_OPENED = "door-opened"
"""The ``cancel`` reason of a door station whose door opened while it rang (any path: a
callee's unlock, the exit button, a code, a card): the callee stops ringing, not missed."""
NOT_MISSED = frozenset({"answered_elsewhere", DOOR_OPENED})
"""``cancel`` reasons after which a callee that rang does not count a missed call."""
DTMF_DIGITS = "0123456789*#ABCD"
"""DTMF digits by their number in a ``dtmf`` message (10 = '*', 11 = '#', 12-15 = 'A'-'D')."""
ERROR_CODES = {
    CallStatus.BUSY: CallErrorCode.BUSY,
    CallStatus.UNREACHABLE: CallErrorCode.NETWORK,
    CallStatus.OFFLINE: CallErrorCode.NETWORK,
    CallStatus.NETWORKERROR: CallErrorCode.NETWORK,
    CallStatus.ERROR: CallErrorCode.NETWORK,
    CallStatus.SECURITYERROR: CallErrorCode.SECURITY,
    CallStatus.HWERROR: CallErrorCode.HARDWARE,
}
"""Terminal statuses that ``IncomingListener.on_error`` hears about (refusals are not errors)."""
GROUP_OUTCOME_PRIORITY = (
    CallStatus.BUSY,
    CallStatus.NOTALLOWED,
    CallStatus.BLOCKED,
    CallStatus.NOANSWER,
    CallStatus.SECURITYERROR,
    CallStatus.NETWORKERROR,
    CallStatus.UNREACHABLE,
    CallStatus.OFFLINE,
)
"""How a ring group ends when its callees ended differently: the first outcome listed."""
FAILURE_REASONS = {
    CallStatus.SECURITYERROR: "security",
    CallStatus.NETWORKERROR: "network",
    CallStatus.ERROR: "error",
}
"""What a side that gives up on a peer tells it (cancel, decline or hangup ``reason``)."""
FAILURE_STATUS = {reason: status for status, reason in FAILURE_REASONS.items()}
"""The status a side reaches when its peer gives up on it for ``reason``."""
DECLINE_STATUS = {
    "busy": CallStatus.BUSY,
    "declined": CallStatus.BUSY,
    "notallowed": CallStatus.NOTALLOWED,
    "blocked": CallStatus.BLOCKED,
    "timeout": CallStatus.NOANSWER,
    "novideo": CallStatus.NOVIDEOCALLS,
    "error": CallStatus.ERROR,
    "security": CallStatus.SECURITYERROR,
    "network": CallStatus.NETWORKERROR,
}
"""The status a caller reaches when a callee declines for ``reason`` (default BUSY)."""
