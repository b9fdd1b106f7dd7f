"""What a call tells its listeners, and the safe way to tell them.

``CallObserver`` is the part of mesibo's InProgressListener that a call calls: a protocol
generic in the call type, so the call core needs no import of the listener classes
(``listeners.py`` imports the call instead, and no import cycle forms). ``notify`` calls
one listener method, plain or async, and keeps a faulty listener from breaking the call.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from services.callapi.status import CallStatus, HangupReason, InCallSound

_log = logging.getLogger(__name__)
T = TypeVar("T")
CallT_contra = TypeVar("CallT_contra", contravariant=True)
MaybeAwaitable = Awaitable[None] | None
"""What a listener method returns: nothing, or an awaitable when it is ``async``."""


class CallObserver(Protocol[CallT_contra]):
    """The listener methods a call invokes (``InProgressListener`` implements them all)."""

    def on_status(self, call: CallT_contra, status: CallStatus, video: bool) -> MaybeAwaitable:
        """The call moved to ``status``."""
        ...

    def on_mute(self, call: CallT_contra, audio: bool, video: bool, remote: bool) -> MaybeAwaitable:
        """Audio/video mute changed, here or at the peer."""
        ...

    def on_hangup(self, call: CallT_contra, reason: HangupReason) -> MaybeAwaitable:
        """The call is over."""
        ...

    def on_audio_device_changed(
        self, call: CallT_contra, active: int, inactive: int
    ) -> MaybeAwaitable:
        """The audio output moved."""
        ...

    def on_video_source_changed(
        self, call: CallT_contra, source: str, index: int
    ) -> MaybeAwaitable:
        """The local video comes from another camera."""
        ...

    def on_video(self, call: CallT_contra, width: int, height: int, remote: bool) -> MaybeAwaitable:
        """The local or remote video format changed."""
        ...

    def on_play_in_call_sound(
        self, call: CallT_contra, kind: InCallSound, play: bool
    ) -> bool | Awaitable[bool]:
        """An in-call sound starts or stops; True when the listener plays it itself."""
        ...

    def on_dtmf(self, call: CallT_contra, digit: int) -> MaybeAwaitable:
        """The peer sent a DTMF digit."""
        ...

    def on_door_release(self, call: CallT_contra, opened: bool, reason: str) -> MaybeAwaitable:
        """The door answered a release request."""
        ...


async def notify(what: str, method: Callable[..., T | Awaitable[T]], *args: Any) -> T | None:
    """Call a listener method, plain or async; log and swallow nothing silently.

    An exception from app code is logged with its traceback and ``None`` returned, so
    a faulty listener never breaks the call it listens to.
    """
    try:
        result = method(*args)
        if inspect.isawaitable(result):
            return await result
        return result
    except Exception:  # noqa: BLE001 - app code may raise anything; the call must go on
        _log.exception("listener %s raised; the call goes on", what)
        return None
