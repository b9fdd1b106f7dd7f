"""What a call needs of its endpoint: the one narrow way a ``Call`` reaches ``Calls``.

A call sends signed messages, makes media sessions, rings and plays on the endpoint's
devices, reads the clock and tells the endpoint-level listeners (missed calls, errors).
``Calls`` implements this protocol; a call sees nothing else of it.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

from services.callapi.devices import CallDevices
from services.callapi.door_release import UnlockPolicy
from services.callapi.properties import CallProperties, UserProfile
from services.callapi.status import CallErrorCode
from services.media.session import MediaSession


class CallEndpoint(Protocol):
    """The endpoint a call belongs to, as the call sees it."""

    @property
    def address(self) -> str:
        """This endpoint's address in the site."""
        ...

    @property
    def devices(self) -> CallDevices:
        """Ringtone, tones, audio output and camera of this endpoint."""
        ...

    @property
    def unlock_policy(self) -> UnlockPolicy:
        """Whether this endpoint drives a door, who may open it, and how."""
        ...

    def now(self) -> float:
        """The call clock (seconds, monotonic)."""
        ...

    async def send(self, to: str, message_type: str, call_id: str, body: dict[str, Any]) -> None:
        """Sign, encrypt and send a message (SignalingError when it cannot be sent)."""
        ...

    def is_online(self, address: str) -> bool:
        """True when ``address``'s presence says online."""
        ...

    async def follow(self, addresses: Sequence[str]) -> None:
        """Make sure the presence of ``addresses`` is followed before :meth:`is_online` is asked."""
        ...

    def can_wake(self, address: str) -> bool:
        """True when ``address`` is offline but can be woken (a phone with a push subscription)."""
        ...

    def profile_of(self, address: str) -> UserProfile:
        """The best profile known of ``address``."""
        ...

    def profile_json(self) -> dict[str, str]:
        """What an invite says about this endpoint."""
        ...

    def invite_ice_servers(self, address: str) -> list[dict[str, Any]]:
        """The relay credentials an invite to ``address`` carries (empty: none)."""
        ...

    async def prepared_offer(
        self, props: CallProperties, *, label: str
    ) -> tuple[MediaSession, str]:
        """A session with its offer ready (from the idle pool when one matches)."""
        ...

    def new_session(self, props: CallProperties, *, video: bool, label: str) -> MediaSession:
        """A session on this endpoint's devices, to answer an offer."""
        ...

    async def report_missed(self, profile: UserProfile, video: bool) -> None:
        """Count a call nobody took and tell the app."""
        ...

    async def notify_error(self, props: CallProperties, code: CallErrorCode) -> None:
        """Tell the app a call went wrong."""
        ...

    def count_dropped(self, reason: str) -> None:
        """Count a message naming a call that the call dropped (``callbox status``)."""
        ...

    def call_ended(self, call: object) -> None:
        """``call`` reached a terminal status: free the line."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background (kept and logged by the endpoint)."""
        ...
