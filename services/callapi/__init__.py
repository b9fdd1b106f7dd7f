"""The public Call API of callbox, modelled on mesibo's MesiboCall.

Same concepts and semantics as mesibo, snake_case names, asyncio-native.
``docs/call-api.md`` maps every mesibo name to its counterpart here.
"""

from services.callapi.call import Call
from services.callapi.calls import Calls
from services.callapi.listeners import (
    DefaultUserInterface,
    IncomingListener,
    InProgressListener,
)
from services.callapi.properties import (
    AudioProperties,
    CallProperties,
    IceServer,
    UiProperties,
    UserProfile,
    VideoProperties,
)
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

__all__ = [
    "AudioDevice",
    "AudioProperties",
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
