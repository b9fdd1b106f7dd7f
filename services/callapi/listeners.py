"""The two listener interfaces of the mesibo model, and the safe way to call them.

Apps subclass them and override what they need; every method has a harmless default.
Methods may be plain or ``async``. A listener that raises is logged and never breaks
the call (``observer.notify``). ``InProgressListener`` implements the ``CallObserver``
protocol a call invokes.
"""

from __future__ import annotations

from collections.abc import Awaitable

from services.callapi.call import Call
from services.callapi.observer import MaybeAwaitable
from services.callapi.properties import CallProperties, UserProfile
from services.callapi.status import CallStatus, HangupReason, InCallSound, NotifyKind


class IncomingListener:
    """Told about incoming calls and call-level events (mesibo's IncomingListener)."""

    def on_incoming(
        self, profile: UserProfile, video: bool
    ) -> CallProperties | Awaitable[CallProperties | None] | None:
        """A call arrives. Return properties to accept it (ring), None to reject it.

        The caller then sees NOTALLOWED. This default rejects every call: an app that takes
        calls overrides it (typically with ``calls.create_call_properties(video)``).
        """
        return None

    def on_show_user_interface(self, call: Call, props: CallProperties) -> bool | Awaitable[bool]:
        """Show your own UI for this call and return True; False lets the default UI show it."""
        return True

    def on_notify(self, kind: NotifyKind, profile: UserProfile, video: bool) -> MaybeAwaitable:
        """A notification, such as a missed call (ring timeout or caller cancel)."""

    def on_error(self, props: CallProperties, error: int) -> MaybeAwaitable:
        """A call could not be placed or went wrong (a :class:`CallErrorCode`)."""


class DefaultUserInterface(IncomingListener):
    """A call UI that ``Calls`` shows calls on (mesibo's built-in call screens).

    Attach one with ``calls.set_default_ui(ui)``. It shows an incoming call when the app's
    ``on_show_user_interface`` returns False, and the calls placed with ``calls.call_ui``.
    It also hears the call-level events the app hears (``on_notify``, ``on_error``) and
    ``on_key_changed``. ``services.ui.DefaultCallUi`` is the one callbox draws on a display.
    """

    def show_call(self, call: Call) -> MaybeAwaitable:
        """Show ``call`` from now on (typically ``call.add_listener(...)``)."""
        raise NotImplementedError

    def on_key_changed(self, address: str, detail: str) -> MaybeAwaitable:
        """A pinned contact signs with a new key: its messages are refused until confirmed."""


class InProgressListener:
    """Told about everything that happens during one call (mesibo's InProgressListener)."""

    def on_status(self, call: Call, status: CallStatus, video: bool) -> MaybeAwaitable:
        """The call moved to ``status``; terminal statuses arrive exactly once."""

    def on_mute(self, call: Call, audio: bool, video: bool, remote: bool) -> MaybeAwaitable:
        """Audio/video mute changed; ``remote`` says whether the peer muted."""

    def on_hangup(self, call: Call, reason: HangupReason) -> MaybeAwaitable:
        """The call is over, for ``reason``."""

    def on_audio_device_changed(self, call: Call, active: int, inactive: int) -> MaybeAwaitable:
        """The audio output moved from ``inactive`` to ``active`` (AudioDevice values)."""

    def on_video_source_changed(self, call: Call, source: str, index: int) -> MaybeAwaitable:
        """The local video now comes from camera ``source``."""

    def on_video(self, call: Call, width: int, height: int, remote: bool) -> MaybeAwaitable:
        """The local or remote video format changed (first frame included)."""

    def on_update_user_interface(
        self, call: Call, state: int, video: bool, enable: bool
    ) -> MaybeAwaitable:
        """The UI should show ``state`` (mesibo's MESIBOCALL_UI_STATE_*)."""

    def on_play_in_call_sound(
        self, call: Call, kind: InCallSound, play: bool
    ) -> bool | Awaitable[bool]:
        """An in-call sound starts or stops; return True to play it yourself."""
        return False

    def on_dtmf(self, call: Call, digit: int) -> MaybeAwaitable:
        """The peer sent a DTMF digit."""

    def on_door_release(self, call: Call, opened: bool, reason: str) -> MaybeAwaitable:
        """The door answered ``call.unlock()``: opened, or refused for ``reason``."""

    def on_message_dropped(
        self, call: Call, sender: str, message_type: str, reason: str, detail: str
    ) -> MaybeAwaitable:
        """A message naming this call was dropped; the call goes on unchanged.

        ``sender`` is who the message claims to be, ``message_type`` its type ("" when it
        failed verification: nothing in it is trusted), ``reason`` why it was dropped: a failed
        verification (``bad_signature``, ``decrypt_failed``, ``key_changed``), a message from
        an endpoint that is not this call's peer (``wrong_call``), a door message from another
        leg (``door_other_leg``). Someone may be trying to disturb the call: show or log it.
        A callbox addition (mesibo has no counterpart); optional, the default does nothing.
        """
