"""Call status codes, hangup reasons, error codes and small enums, with mesibo's values."""

from __future__ import annotations

import enum

from hal.errors import CallboxError


class CallStatus(enum.IntEnum):
    """The status of a call, with the numeric values of mesibo's CALLSTATUS_* codes.

    Statuses with bit 0x40 set are terminal: the call has ended (see :func:`is_ended`).
    """

    NONE = 0x00
    INCOMING = 0x01
    INPROGRESS = 0x02
    RINGING = 0x03
    ANSWER = 0x05
    UPDATE = 0x06
    DTMF = 0x07
    SDP = 0x08
    MUTE = 0x09
    UNMUTE = 0x0A
    HOLD = 0x0B
    UNHOLD = 0x0C
    CONNECTED = 0x30
    RECONNECTING = 0x32
    COMPLETE = 0x40
    CANCEL = 0x41
    NOANSWER = 0x42
    BUSY = 0x43
    UNREACHABLE = 0x44
    OFFLINE = 0x45
    INVALIDDEST = 0x46
    INVALIDSTATE = 0x47
    NOCALLS = 0x48
    NOVIDEOCALLS = 0x49
    NOTALLOWED = 0x4A
    BLOCKED = 0x4B
    DURATIONEXCEEDED = 0x4C
    SWITCHED = 0x4D
    ERROR = 0x60
    HWERROR = 0x61
    NETWORKERROR = 0x62
    NETWORKBLOCKED = 0x63
    SECURITYERROR = 0x64


def is_ended(status: int) -> bool:
    """True for a terminal status: mesibo's rule ``status & 0x40``."""
    return bool(status & 0x40)


class HangupReason(enum.IntEnum):
    """Why a call ended, as passed to ``InProgressListener.on_hangup`` (mesibo's values)."""

    USER = 1
    REMOTE = 2
    ERROR = 3
    BACKGROUND = 4
    DURATION = 5


class CallErrorCode(enum.IntEnum):
    """Errors passed to ``IncomingListener.on_error`` (mesibo's MESIBOCALL_ERROR_* values)."""

    BUSY = 1
    NETWORK = 2
    SECURITY = 3
    HARDWARE = 4


class NotifyKind(enum.IntEnum):
    """Kinds of ``IncomingListener.on_notify`` (mesibo's MESIBOCALL_NOTIFY_* values)."""

    INCOMING = 0
    MISSED = 4


class InCallSound(enum.IntEnum):
    """In-call sounds (mesibo's MESIBOCALL_SOUND_* values)."""

    RINGING = 0
    BUSY = 1


class AudioDevice(enum.IntEnum):
    """Logical audio output devices (mesibo's MesiboAudioDevice order)."""

    SPEAKER = 0
    HEADSET = 1
    EARPIECE = 2
    BLUETOOTH = 3
    DEFAULT = 4


class VideoCodec(enum.IntEnum):
    """Video codecs (mesibo's MESIBOCALL_CODEC_* values)."""

    VP8 = 1
    H264 = 4


class CallError(CallboxError):
    """Root of the Call API's exception tree: a call could not do what was asked."""
