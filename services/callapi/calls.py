"""``Calls``: the entrance to the Call API for one endpoint (mesibo's MesiboCall).

Built by the composition root with the endpoint's signaling and media; no global
instance, so two endpoints live in one process. It places calls, routes every
verified message to its call, answers BUSY while a call is in progress and rejects
calls the app refuses. It is the ``CallEndpoint`` (port.py) its calls see; the offer
pool (offer_pool.py) makes their media sessions and the devices (devices.py) ring.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import replace
from typing import Any

from hal.audio import Speaker
from hal.closing import CloseOnce
from services.callapi.call import Call
from services.callapi.devices import CallDevices
from services.callapi.door_release import UnlockHandler, UnlockPolicy
from services.callapi.listeners import DefaultUserInterface, IncomingListener
from services.callapi.observer import notify
from services.callapi.offer_pool import OfferPool
from services.callapi.properties import (
    Bell,
    CallProperties,
    IceServer,
    UserProfile,
    parse_bell,
)
from services.callapi.status import AudioDevice, CallError, CallErrorCode, NotifyKind
from services.media.ice import IcePolicy
from services.media.local import LocalMedia
from services.media.session import MediaSession
from services.media.turn import IceServerEntry, TurnMinter, parse_ice_servers
from services.signaling.contacts import Right
from services.signaling.endpoint import CALL_MESSAGE_TYPES, Message, SignalingEndpoint
from services.signaling.errors import RejectedMessage, RejectReason, SignalingError
from services.tasks import cancel_and_wait

_log = logging.getLogger(__name__)

MessageHandler = Callable[[Message], Awaitable[None]]
FOLLOW_TIMEOUT_S = 1.0
"""How long a call to an address this endpoint did not follow waits for its presence."""
"""Takes a verified message that is not part of a call (``Calls.handle_messages``)."""


def _wakes_nobody(address: str) -> bool:
    """The wake check of an endpoint that wakes nobody (no push): offline means offline."""
    return False


def _ice_server(entry: IceServerEntry) -> IceServer:
    """A relay entry (minted here, or taken from an invite) as the call's ``IceServer``."""
    return IceServer(entry.urls, entry.username, entry.credential)


def new_call_id() -> str:
    """A fresh random call id (128 bits, base64url)."""
    return secrets.token_urlsafe(16)


def permission_status(
    *, microphone: bool, speaker: bool, camera: bool, video: bool, in_use: bool = False
) -> int:
    """The values of mesibo's checkPermissions for a set of devices.

    0: every device a call needs is there; 1: they are there but a call holds them now
    (mesibo: "being requested, ask again"); -1: no microphone or no speaker; -2: a video
    call was asked for and there is no camera.
    """
    if not (microphone and speaker):
        return -1
    if video and not camera:
        return -2
    return 1 if in_use else 0


class Calls:
    """Places and receives the calls of one endpoint."""

    def __init__(
        self,
        signaling: SignalingEndpoint,
        media: LocalMedia,
        *,
        name: str = "",
        role: str = "",
        ice: IcePolicy | None = None,
        defaults: CallProperties | None = None,
        issues_unlock_challenges: bool = False,
        ring_on_incoming: bool = True,
        turn: TurnMinter | None = None,
    ) -> None:
        self.signaling = signaling
        self.media = media
        self.name = name or signaling.address
        self.role = role
        self.ice = ice or IcePolicy()
        self.defaults = defaults or CallProperties()
        self.turn = turn
        """Mints the site relay's credentials for this endpoint's calls (None: no secret)."""
        self.active_call: Call | None = None
        self.missed_calls = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        """Messages naming the active call that it dropped unacted, by reason (see
        ``dropped_messages``)."""
        self.key_changes: dict[str, str] = {}
        """Contacts whose new key waits for a person's confirmation, with why it was seen."""
        self._listener: IncomingListener = IncomingListener()
        self._default_ui: DefaultUserInterface | None = None
        self._devices = CallDevices(media, ring_on_incoming=ring_on_incoming)
        self._unlock = UnlockPolicy(
            drives_door=issues_unlock_challenges, has_unlock_right=self._has_unlock_right
        )
        self._offers = OfferPool(
            media,
            address=signaling.address,
            ice=self.ice,
            default_props=lambda: self.defaults,
            own_relay=self._own_relay,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._close = CloseOnce()
        self._other_handlers: dict[str, MessageHandler] = {}
        self._wake_check: Callable[[str], bool] = _wakes_nobody
        self.presence_listeners: list[Callable[[str, bool], None]] = []
        """Told ``(address, online)`` for every presence change of a followed contact (a
        door's alarms, resent to an indoor unit that comes online); they must not block."""

    @property
    def address(self) -> str:
        """This endpoint's address in the site."""
        return self.signaling.address

    @property
    def connected(self) -> bool:
        """True while this endpoint is connected to the broker (calls can be made)."""
        return self.signaling.transport.connected.is_set()

    # lifecycle --------------------------------------------------------------------------------

    async def start(self, timeout: float = 10.0) -> None:
        """Open the speaker, connect to the broker and start taking calls."""
        if self.media.camera is not None:
            self.media.camera.on_failure = self._camera_failed
            self.media.camera.on_recovered = self._camera_recovered
        await self.media.start()
        self.signaling.on_message = self._on_message
        self.signaling.on_presence = self._on_presence
        self.signaling.on_rejected = self._on_rejected
        await self.signaling.start(timeout)
        await self._offers.open_spare_encoder(self.defaults.video.codec.name)

    async def close(self) -> None:
        """End the active call, go offline and release every device.

        Idempotent; called while a close is under way, it waits for that close to finish.
        """
        if not await self._close.begin():
            return
        try:
            if self.active_call is not None:
                await self.active_call.hangup()
            await cancel_and_wait(list(self._tasks))
            await self._offers.close()  # prepared sessions, and any a race left behind
            await self.signaling.close()
            await self.media.close()
        finally:
            self._close.finish()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, keeping a reference and logging its failure."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("%s: background task failed", self.address, exc_info=task.exception())

    # the mesibo entrance ----------------------------------------------------------------------

    def set_listener(self, listener: IncomingListener) -> None:
        """Who decides about incoming calls and hears call-level events."""
        self._listener = listener

    def set_default_ui(self, ui: DefaultUserInterface | None) -> None:
        """The call UI that shows calls the app does not show itself (None: no default UI)."""
        self._default_ui = ui

    @property
    def default_ui(self) -> DefaultUserInterface | None:
        """The attached default call UI, or None."""
        return self._default_ui

    async def show_call_ui(self, call: Call) -> bool:
        """Show ``call`` on the default UI; False when there is none."""
        ui = self._default_ui
        if ui is None:
            return False
        await notify("show_call", ui.show_call, call)
        return True

    def create_call_properties(self, video: bool) -> CallProperties:
        """Fresh properties from this endpoint's defaults, with video on or off."""
        return replace(
            self.defaults,
            video=replace(self.defaults.video, enabled=video),
            audio=replace(self.defaults.audio),
            ui=replace(self.defaults.ui),
            ice_servers=list(self.defaults.ice_servers),
            extra_targets=list(self.defaults.extra_targets),
        )

    def _own_relay(self) -> list[IceServer]:
        """This endpoint's own credentials for the site relay (none without the secret).

        Expiries round up to a whole lifetime: the same credentials all day, so the offers
        the pool prepared while idle still match the next call's settings.
        """
        if self.turn is None:
            return []
        entry = self.turn.mint(self.address, time.time(), granularity_s=self.turn.ttl_s)
        return [_ice_server(entry)]

    def invite_ice_servers(self, address: str) -> list[dict[str, Any]]:
        """The ``ice_servers`` an invite to ``address`` carries: relay credentials minted for it."""
        if self.turn is None:
            return []
        return [self.turn.mint(address, time.time()).to_json()]

    def _invite_relays(self, message: Message) -> list[IceServer]:
        """The invite's usable ``ice_servers``; each refused entry is logged (the call rings)."""
        entries, problems = parse_ice_servers(message.body.get("ice_servers"), time.time())
        for problem in problems:
            _log.error(
                "%s: call %s from %s: refused %s",
                self.address,
                message.call_id,
                message.sender,
                problem,
            )
        return [_ice_server(e) for e in entries]

    def _invite_bell(self, message: Message) -> Bell | None:
        """The invite's ``bell``; a malformed one is logged and left out (the call rings)."""
        value = message.body.get("bell")
        if value is None:
            return None
        try:
            return parse_bell(value)
        except ValueError as err:
            _log.warning(
                "%s: call %s from %s: ignored its bell: %s",
                self.address,
                message.call_id,
                message.sender,
                err,
            )
            return None

    def call(self, props: CallProperties) -> Call | None:
        """A new outgoing call for ``props`` (start it with ``await call.start(listener)``).

        Returns None while another call is in progress (mesibo's busy rule). Raises
        CallError naming the field when the properties are invalid.
        """
        props.validate()
        if self.is_call_in_progress():
            return None
        assert props.user is not None
        for target in props.targets():
            if self.signaling.contacts.get(target.address) is None:
                raise CallError(f"cannot call {target.address!r}: not a contact of {self.address}")
        call = Call(
            self,
            props,
            call_id=new_call_id(),
            incoming=False,
            peer=self.profile_of(props.user.address),
        )
        self.active_call = call
        return call

    async def call_ui(self, address: str, video: bool) -> Call | None:
        """Place a call to ``address``, show it on the default UI (if any) and start it.

        None while busy; CallError when ``address`` is not a contact.
        """
        props = self.create_call_properties(video)
        props.user = self.profile_of(address)
        call = self.call(props)
        if call is not None:
            await self.show_call_ui(call)  # before start(): the UI sees INPROGRESS
            await call.start()
        return call

    def is_call_in_progress(self) -> bool:
        """True while a call (incoming or outgoing) is not over."""
        return self.active_call is not None and not self.active_call.is_ended()

    def check_permissions(self, video: bool) -> int:
        """The checkPermissions of mesibo: 0 ready, 1 in use by a call (ask again), <0 missing."""
        return permission_status(
            microphone=self.media.microphone is not None,
            speaker=self.media.speaker() is not None,
            camera=self.media.camera is not None,
            video=video,
            in_use=self.is_call_in_progress(),
        )

    # what calls reach (the CallEndpoint of port.py) -------------------------------------------

    @property
    def devices(self) -> CallDevices:
        """Ringtone, tones, audio output and camera of this endpoint, as calls use them."""
        return self._devices

    @property
    def unlock_policy(self) -> UnlockPolicy:
        """Whether this endpoint drives a door, who may open it, and the handler that does."""
        return self._unlock

    def now(self) -> float:
        """The call clock: time.monotonic()."""
        return time.monotonic()

    async def send(self, to: str, message_type: str, call_id: str, body: dict[str, Any]) -> None:
        """Sign, encrypt and send a message of a call (SignalingError when it cannot)."""
        await self.signaling.send(to, message_type, call_id, body)

    def is_online(self, address: str) -> bool:
        """True when ``address``'s retained presence says online."""
        return self.signaling.is_online(address)

    async def follow(self, addresses: Sequence[str]) -> None:
        """Follow the presence of targets this endpoint does not follow yet (see port.py)."""
        await self.signaling.follow(addresses, FOLLOW_TIMEOUT_S)

    def can_wake(self, address: str) -> bool:
        """True when ``address`` is offline but can be woken (see :meth:`set_wake_check`)."""
        return self._wake_check(address)

    def set_wake_check(self, check: Callable[[str], bool] | None) -> None:
        """Say which offline targets this endpoint wakes when it calls them (push).

        An outgoing call to targets that are all offline ends at once with OFFLINE, unless
        ``check`` says one of them is being woken: then the call waits for it, up to the ring
        timeout, and invites it as soon as it comes online (a late joiner).
        """
        self._wake_check = check or _wakes_nobody

    def profile_of(self, address: str) -> UserProfile:
        """The best profile we know of ``address``: contact name, then its retained profile."""
        contact = self.signaling.contacts.get(address)
        announced = self.signaling.profiles.get(address, {})
        name = (contact.name if contact else "") or str(announced.get("name", ""))
        role = (contact.role if contact else "") or str(announced.get("role", ""))
        return UserProfile(address=address, name=name, role=role)

    def profile_json(self) -> dict[str, str]:
        """What an invite says about this endpoint."""
        return {"name": self.name, "role": self.role}

    async def prepared_offer(
        self, props: CallProperties, *, label: str
    ) -> tuple[MediaSession, str]:
        """A session with its offer ready: from the idle pool when one matches, else made now."""
        return await self._offers.prepared_offer(props, label=label)

    def new_session(self, props: CallProperties, *, video: bool, label: str) -> MediaSession:
        """A media session on this endpoint's devices."""
        return self._offers.new_session(props, video=video, label=label)

    async def prewarm(self, props: CallProperties | None = None, count: int = 1) -> None:
        """Prepare ``count`` offers for calls like ``props`` while idle (fast doorbell)."""
        await self._offers.prewarm(props or self.create_call_properties(video=True), count)

    async def report_missed(self, profile: UserProfile, video: bool) -> None:
        """Count a call from ``profile`` that nobody took and tell the app (``on_notify``)."""
        self.missed_calls += 1
        await notify("on_notify", self._listener.on_notify, NotifyKind.MISSED, profile, video)
        if self._default_ui is not None:
            await notify("on_notify", self._default_ui.on_notify, NotifyKind.MISSED, profile, video)

    async def notify_error(self, props: CallProperties, code: CallErrorCode) -> None:
        """Tell the app (and the default UI) a call went wrong (``on_error``)."""
        await notify("on_error", self._listener.on_error, props, int(code))
        if self._default_ui is not None:
            await notify("on_error", self._default_ui.on_error, props, int(code))

    def count_dropped(self, reason: str) -> None:
        """Count a message naming a call that the call dropped without acting on it."""
        self.dropped[reason] += 1

    def dropped_messages(self) -> dict[str, int]:
        """Every message this endpoint dropped, by reason: ``callbox status`` shows it.

        The signaling's rejections (failed verification, replays, rate limits, …), what it
        dropped unread (full queues, retained inbox deliveries, announcements over their rate)
        and the call-level drops (door messages from a leg other than the answering one).
        """
        counts: collections.Counter[str] = collections.Counter(
            {reason.value: n for reason, n in self.signaling.rejected.items()}
        )
        counts.update(self.signaling.dropped_unread())
        counts.update(self.dropped)
        return {reason: n for reason, n in sorted(counts.items()) if n}

    def call_ended(self, call: object) -> None:
        """A call reached a terminal status: free the line and refill the offer pool."""
        if self.active_call is call:
            self.active_call = None
        if not self._close.started:
            self.spawn(self._offers.refill())

    # devices and door -------------------------------------------------------------------------

    @property
    def audio_device(self) -> AudioDevice:
        """Where call audio plays now (it stays for the next call)."""
        return self._devices.audio_device

    async def use_audio_device(self, device: AudioDevice) -> Speaker:
        """Route call audio to ``device`` (CallError naming it when the board has none)."""
        return await self._devices.use_audio_device(device)

    @property
    def issues_unlock_challenges(self) -> bool:
        """True when this endpoint drives a door (its calls carry release challenges)."""
        return self._unlock.drives_door

    def set_unlock_handler(self, handler: UnlockHandler | None) -> None:
        """Who opens the door for a checked ``unlock`` request (the intercom service)."""
        self._unlock.handler = handler

    def _has_unlock_right(self, address: str) -> bool:
        contact = self.signaling.contacts.get(address)
        return contact is not None and Right.UNLOCK in contact.rights

    async def confirm_key_change(self, address: str) -> None:
        """A person confirmed the new key that ``address`` advertises: pin it, take its calls.

        CallError when ``address`` advertises no key other than the pinned one.
        """
        contacts = self.signaling.contacts
        advertised = contacts.advertised.get(address)
        contact = contacts.get(address)
        if advertised is None or (contact is not None and contact.keys == advertised):
            self.key_changes.pop(address, None)
            raise CallError(f"{address} advertises no new key to confirm")
        contacts.trust(address, advertised)
        self.key_changes.pop(address, None)
        _log.info("%s: new key of %s confirmed", self.address, address)

    def unconfirmed_key_changes(self) -> list[str]:
        """Senders whose advertised keys still differ from the pinned ones.

        A key trusted since by any path (``confirm_key_change``, ``callbox keys trust``, the
        contacts directly) no longer holds automatic actions back.
        """
        contacts = self.signaling.contacts
        for address in list(self.key_changes):
            contact = contacts.get(address)
            if contact is not None and contacts.advertised.get(address) in (None, contact.keys):
                del self.key_changes[address]
        return sorted(self.key_changes)

    # camera failures ------------------------------------------------------------------------

    @property
    def camera_failure(self) -> str | None:
        """Why the camera does not work right now (it is retried), or None."""
        return self.media.camera.failure if self.media.camera is not None else None

    def _camera_failed(self, err: Exception) -> None:
        call = self.active_call
        if call is not None and not call.is_ended():
            self.spawn(call.camera_lost(err))

    def _camera_recovered(self) -> None:
        call = self.active_call
        if call is not None and not call.is_ended():
            self.spawn(call.camera_back())

    # inbound routing --------------------------------------------------------------------------

    def handle_messages(self, types: Iterable[str], handler: MessageHandler | None) -> None:
        """Hand every verified message of ``types`` (not call messages) to ``handler``.

        None takes them back: such a message is then logged and counted as ``not_handled``.
        The Web Push registration of a door station (services/push) uses it.
        """
        for message_type in types:
            if message_type in CALL_MESSAGE_TYPES:
                raise ValueError(f"{message_type!r} is a call message: the call core handles it")
            if handler is None:
                self._other_handlers.pop(message_type, None)
            else:
                self._other_handlers[message_type] = handler

    async def _on_message(self, message: Message) -> None:
        if message.type not in CALL_MESSAGE_TYPES:
            await self._on_other_message(message)
            return
        if message.type == "invite":
            await self._on_invite(message)
            return
        call = self.active_call
        if call is not None and call.call_id == message.call_id:
            if message.sender in call.legs:
                await call.handle(message)
            elif call.was_leg(message.sender):
                await call.handle_late(message)
            else:  # a genuine message, but only the call's own peer may change the call
                self._wrong_call(message)
                detail = f"{message.sender} is not a party of this call"
                await call.report_dropped(message.sender, message.type, "wrong_call", detail)
            return
        self._wrong_call(message)

    async def _on_other_message(self, message: Message) -> None:
        handler = self._other_handlers.get(message.type)
        if handler is None:
            self.count_dropped("not_handled")
            _log.info(
                "%s: %s from %s dropped: nothing here handles it",
                self.address,
                message.type,
                message.sender,
            )
            return
        await handler(message)

    def _wrong_call(self, message: Message) -> None:
        active = self.active_call
        names_active = active is not None and active.call_id == message.call_id
        if message.type in ("cancel", "hangup", "decline", "busy") and not names_active:
            _log.info(
                "%s: late %s for an ended call from %s", self.address, message.type, message.sender
            )
            return
        err = RejectedMessage(
            RejectReason.WRONG_CALL,
            f"{message.type} from {message.sender} for call {message.call_id}, "
            "which is not a call with that peer",
        )
        self.signaling.rejected[err.reason] += 1
        _log.warning("%s: dropped a message in its inbox: %s", self.address, err)

    async def _send_or_log(
        self, to: str, message_type: str, call_id: str, body: dict[str, Any]
    ) -> None:
        """Send a message; a failure is logged (timers on both sides handle a lost message)."""
        try:
            await self.signaling.send(to, message_type, call_id, body)
        except SignalingError as err:
            _log.error("%s: could not send %s to %s: %s", self.address, message_type, to, err)

    async def _on_invite(self, message: Message) -> None:
        caller = message.sender
        contact = self.signaling.contacts.get(caller)
        if contact is not None and contact.blocked:
            _log.info("%s: call from blocked contact %s refused", self.address, caller)
            await self._send_or_log(caller, "decline", message.call_id, {"reason": "blocked"})
            return
        if self.is_call_in_progress():
            _log.info("%s: busy, call from %s refused", self.address, caller)
            await self._send_or_log(caller, "busy", message.call_id, {})
            await self.report_missed(
                self.profile_of(caller), bool(message.body.get("video", False))
            )
            return
        video = bool(message.body.get("video", False))
        profile = self.profile_of(caller)
        props = await notify("on_incoming", self._listener.on_incoming, profile, video)
        if props is None:
            await self._send_or_log(caller, "decline", message.call_id, {"reason": "notallowed"})
            return
        props.user = profile
        props.incoming = True
        props.bell = self._invite_bell(message)
        props.ice_servers = self._invite_relays(message) + props.ice_servers
        props.video.enabled = props.video.enabled and video
        call = Call(self, props, call_id=message.call_id, incoming=True, peer=profile)
        self.active_call = call
        await call.accept_invite(message)
        if call.is_ended():
            return
        await self._devices.start_ringing()
        shown = await notify(
            "on_show_user_interface", self._listener.on_show_user_interface, call, props
        )
        if not shown and not await self.show_call_ui(call):
            _log.info("%s: no default call UI on this endpoint; ringing without one", self.address)
        await call.start()
        unconfirmed = self.unconfirmed_key_changes() if props.auto_answer else []
        if unconfirmed:
            _log.warning(
                "%s: not answering automatically: the new key of %s is not confirmed",
                self.address,
                ", ".join(unconfirmed),
            )
        elif props.auto_answer:
            await call.answer(props.video.enabled)

    def _on_presence(self, address: str, online: bool) -> None:
        for listener in list(self.presence_listeners):
            listener(address, online)
        call = self.active_call
        if call is None:
            return
        if online and call.waits_for(address):
            self.spawn(call.invite_late_joiner(address))
            return
        if address not in call.legs:
            return
        if online:
            call.peer_came_online(address)
        else:
            self.spawn(call.peer_went_offline(address))

    def _on_rejected(self, sender: str, call_id: str, err: RejectedMessage) -> None:
        if err.reason is RejectReason.KEY_CHANGED:
            first = sender not in self.key_changes
            self.key_changes[sender] = str(err)
            if first and self._default_ui is not None:
                self.spawn(
                    notify("on_key_changed", self._default_ui.on_key_changed, sender, str(err))
                )
        # Counted and logged by the signaling; it never changes the call it names (anyone
        # can publish a forgery claiming the peer): the call's listeners are told.
        call = self.active_call
        if call is not None and call.call_id == call_id and not call.is_ended():
            _log.warning(
                "%s: call %s goes on: a message claiming to be from %s failed verification (%s)",
                self.address,
                call_id,
                sender,
                err.reason.value,
            )
            self.spawn(call.report_dropped(sender, "", err.reason.value, err.detail))
