"""The public Call API of callbox, modelled on mesibo's MesiboCall.

Same concepts and semantics as mesibo, snake_case names, asyncio-native.
``docs/call-api.md`` maps every mesibo name to its counterpart here.

Every name below is imported when first used (PEP 562): a light module of the package
(``properties``, ``status``) does not pull in the call core, aiortc and PyAV, so the
``callbox`` command starts quickly for its configuration and key subcommands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.lazy import lazy_exports

if TYPE_CHECKING:
    from services.callapi.call import Call
    from services.callapi.calls import Calls
    from services.callapi.listeners import (
        DefaultUserInterface,
        IncomingListener,
        InProgressListener,
    )
    from services.callapi.properties import (
        AudioProperties,
        Bell,
        CallProperties,
        IceServer,
        UiProperties,
        UserProfile,
        VideoProperties,
    )
    from services.callapi.reasons import DOOR_OPENED
    from services.callapi.status import (
        AudioDevice,
        CallError,
        CallErrorCode,
        CallStatus,
        HangupReason,
        InCallSound,
        NotifyKind,
        VideoCodec,
        is_ended,
    )

_HOMES = {
    "Call": "call",
    "Calls": "calls",
    "DefaultUserInterface": "listeners",
    "IncomingListener": "listeners",
    "InProgressListener": "listeners",
    "AudioProperties": "properties",
    "Bell": "properties",
    "CallProperties": "properties",
    "IceServer": "properties",
    "UiProperties": "properties",
    "UserProfile": "properties",
    "VideoProperties": "properties",
    "DOOR_OPENED": "reasons",
    "AudioDevice": "status",
    "CallError": "status",
    "CallErrorCode": "status",
    "CallStatus": "status",
    "HangupReason": "status",
    "InCallSound": "status",
    "NotifyKind": "status",
    "VideoCodec": "status",
    "is_ended": "status",
}

__getattr__ = lazy_exports(__name__, _HOMES)

__all__ = [
    "DOOR_OPENED",
    "AudioDevice",
    "AudioProperties",
    "Bell",
    "Call",
    "CallError",
    "CallErrorCode",
    "CallProperties",
    "CallStatus",
    "Calls",
    "DefaultUserInterface",
    "HangupReason",
    "IceServer",
    "InCallSound",
    "InProgressListener",
    "IncomingListener",
    "NotifyKind",
    "UiProperties",
    "UserProfile",
    "VideoCodec",
    "VideoProperties",
    "is_ended",
]
