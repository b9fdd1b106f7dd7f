"""The entrance panel's way in: keypads and card readers -> dial codes, access codes, the door.

A keypad's keys go through the keypad grammar (`services.access.KeypadEntry`): a dial code
goes to ``dial`` (the door station rings that bell or flat), an access code and every card
to `AccessControl`; a grant opens the door through the door's `DoorOpener`
(``code:<who>`` / ``card:<who>``), so it is rate limited, one pulse and recorded like every
release. Each outcome goes to ``on_feedback``: a tone on the door's speaker (`ToneFeedback`)
and a flash of its status LED (`LedFeedback`); each access attempt (code or card, granted
or refused) goes to the ``watchers`` as an `EntranceAttempt` (Home Assistant's Access
event): never the code, and a card's number only when the list does not know the card
(it is logged already, to enroll it). In card-and-code mode a valid card is told
``CODE`` ("enter the code": not an attempt of its own, the code's outcome is) and a timer
ends its wait when the time is up (refused, told and passed on). At most
``MAX_PENDING`` checks run at once; more keys or cards meanwhile are refused (logged).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from hal.cards import CardRead, CardReader
from hal.keypad import Keypad
from hal.leds import LedPattern
from services.access import AccessControl, AccessDecision, EntryResult, EntryType, KeypadEntry
from services.access.control import UNKNOWN_CARD
from services.callapi.calls import Calls
from services.callapi.door_release import UnlockRefused
from services.intercom.attempt import EntranceAttempt
from services.intercom.door_opener import DoorOpener
from services.media.tones import TonePattern
from services.tasks import cancel_and_wait

if TYPE_CHECKING:
    from services.intercom.observer import IntercomObserver

__all__ = [
    "FEEDBACK_LEDS",
    "FEEDBACK_TONES",
    "MAX_PENDING",
    "Entrance",
    "EntranceAttempt",
    "Feedback",
    "LedFeedback",
    "ToneFeedback",
]

_log = logging.getLogger(__name__)

ACCESS_OFF = "[access] is off"
"""The reason of an attempt refused because access codes and cards are off."""
MAX_PENDING = 4
"""Checks under way at once (a check hashes for tens of ms); more are refused, not queued."""


class Feedback(enum.Enum):
    """What the person at the panel is told."""

    GRANTED = "granted"
    REFUSED = "refused"
    LOCKED = "locked"
    UNKNOWN = "unknown"
    """A dial code no bell or flat has."""
    RINGING = "ringing"
    CODE = "code"
    """Card and code: the card is accepted, now the code."""


FEEDBACK_TONES = {
    Feedback.GRANTED: TonePattern("access-granted", 1400.0, (0.12, 0.06, 0.12, 0.05)),
    Feedback.REFUSED: TonePattern("access-refused", 400.0, (0.6, 0.05)),
    Feedback.LOCKED: TonePattern("access-locked", 400.0, (0.15, 0.1, 0.15, 0.1, 0.15, 0.05)),
    Feedback.UNKNOWN: TonePattern("dial-unknown", 600.0, (0.3, 0.1, 0.3, 0.05)),
    Feedback.CODE: TonePattern("access-code", 1000.0, (0.08, 0.08, 0.08, 0.05)),
}
"""The short tones a door station plays for each outcome (none for ringing: ringback)."""

FEEDBACK_LEDS = {
    Feedback.GRANTED: LedPattern.GRANTED,
    Feedback.REFUSED: LedPattern.REFUSED,
    Feedback.LOCKED: LedPattern.LOCKED,
    Feedback.UNKNOWN: LedPattern.UNKNOWN,
    Feedback.CODE: LedPattern.CODE,
}
"""The status LED's flash for each outcome (none for ringing: the LED shows the ringing)."""


class Entrance:
    """Binds the keypad and card readers to the access check, the dial and the door."""

    def __init__(
        self,
        *,
        opener: DoorOpener,
        access: AccessControl | None,
        dial: Callable[[str], Awaitable[bool]] | None,
        keypad: Keypad | None = None,
        readers: Sequence[CardReader] = (),
        entry_timeout_s: float = 10.0,
        on_feedback: Callable[[Feedback], None] | None = None,
        watchers: list[IntercomObserver] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``access`` None: codes and cards are off; ``dial`` None: no dial codes.

        ``watchers``: told of every access attempt (the door station's own list, so Home
        Assistant's bridge, attached to the service, sees them).
        """
        self.opener = opener
        self.access = access
        self.dial = dial
        self.keypad = keypad
        self.readers = tuple(readers)
        self.entry = KeypadEntry(timeout_s=entry_timeout_s)
        self.on_feedback = on_feedback
        self.watchers = watchers if watchers is not None else []
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._second_timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Receive keys and cards (the devices themselves are started by their owner)."""
        if self.access is not None:
            await self.access.load()
        if self.keypad is not None:
            self.keypad.on_key = self.key_pressed
        for reader in self.readers:
            reader.on_card = self.card_read
        self._started = True

    async def close(self) -> None:
        """Stop receiving and wait out (cancel) checks under way; idempotent."""
        self._started = False
        if self.keypad is not None and self.keypad.on_key == self.key_pressed:
            self.keypad.on_key = None
        for reader in self.readers:
            if reader.on_card == self.card_read:
                reader.on_card = None
        self.entry.clear()
        self._stop_second_timer()
        await cancel_and_wait(list(self._tasks))

    def key_pressed(self, key: str) -> None:
        """One key from the keypad (the loop thread)."""
        if not self._started:
            return
        result = self.entry.press(key, self.clock())
        if result is not None:
            via = self.keypad.name if self.keypad is not None else "keypad"
            self._spawn(self._entered(result, via), "keypad entry")

    def card_read(self, read: CardRead) -> None:
        """One card from a reader (the loop thread)."""
        if self._started:
            self._spawn(self._card(read), f"card at {read.reader}")

    def _spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        if len(self._tasks) >= MAX_PENDING:
            _log.warning("entrance: %s ignored: %d checks under way", what, len(self._tasks))
            work.close()
            self._tell(Feedback.REFUSED)
            return
        task = asyncio.create_task(work, name=f"entrance {what}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("entrance: a check failed: %r", task.exception())

    async def _entered(self, result: EntryResult, via: str) -> None:
        if result.kind is EntryType.TOO_LONG:
            _log.warning(
                "entrance: an entry of more than %d digits at %s refused",
                self.entry.max_digits,
                via,
            )
            self._tell(Feedback.REFUSED)
            self._attempted(
                EntranceAttempt(
                    False, "code", via, reason=f"more than {self.entry.max_digits} digits"
                )
            )
        elif result.kind is EntryType.DIAL:
            await self._dial(result.digits)
        elif self.access is None:
            _log.warning("entrance: an access code at %s refused: [access] is off", via)
            self._tell(Feedback.REFUSED)
            self._attempted(EntranceAttempt(False, "code", via, reason=ACCESS_OFF))
        else:
            decision = await self.access.check_code(result.digits, via=via)
            await self._decided(decision, "code", via)

    async def _dial(self, code: str) -> None:
        rang = await self.dial(code) if self.dial is not None else False
        if not rang:
            # never the digits: a resident who forgot the "*" has just typed their code
            _log.info("entrance: a dial code of %d digits: no such bell or flat", len(code))
        self._tell(Feedback.RINGING if rang else Feedback.UNKNOWN)

    async def _card(self, read: CardRead) -> None:
        if self.access is None:
            _log.warning(
                "entrance: card %s at %s ignored: [access] is off", read.card_id, read.reader
            )
            self._tell(Feedback.REFUSED)
            # the card may be on the (unused) list: its number is not passed on
            self._attempted(EntranceAttempt(False, "card", read.reader, reason=ACCESS_OFF))
            return
        decision = await self.access.check_card(read)
        unknown = read.card_id if decision.reason == UNKNOWN_CARD else ""
        await self._decided(decision, "card", read.reader, card=unknown)

    async def _decided(
        self, decision: AccessDecision, how: str, via: str, *, card: str = ""
    ) -> None:
        if decision.awaiting_code:
            self._await_code(via)
            return
        if decision.with_card:
            how = "card+code"
        attempt = EntranceAttempt(decision.granted, how, via, decision.who, decision.reason, card)
        if not decision.granted:
            self._tell(Feedback.LOCKED if decision.locked else Feedback.REFUSED)
            self._attempted(attempt)
            return
        try:
            await self.opener.open(f"{how}:{decision.who}")
        except UnlockRefused as err:  # recorded and logged by the opener (rate limit, relay)
            self._tell(Feedback.REFUSED)
            self._attempted(
                EntranceAttempt(False, how, via, decision.who, f"door not opened: {err}")
            )
            return
        self._tell(Feedback.GRANTED)
        self._attempted(attempt)

    def _await_code(self, via: str) -> None:
        """A card waits for its code: tell the person, and end the wait when it is up."""
        self._tell(Feedback.CODE)
        second = self.access.second if self.access is not None else None
        if second is None:
            return
        self._stop_second_timer()
        loop = asyncio.get_running_loop()
        # a little after the window: the check's own clock says whether it is over
        self._second_timer = loop.call_later(second.window_s + 0.1, self._second_timeout, via)

    def _second_timeout(self, via: str) -> None:
        self._second_timer = None
        expired = self.access.expire_second_factor() if self.access is not None else None
        if expired is not None:
            self._tell(Feedback.REFUSED)
            self._attempted(EntranceAttempt(False, "card", via, expired.who, expired.reason))

    def _stop_second_timer(self) -> None:
        if self._second_timer is not None:
            self._second_timer.cancel()
            self._second_timer = None

    def _attempted(self, attempt: EntranceAttempt) -> None:
        for watcher in list(self.watchers):
            watcher.access_attempted(attempt)

    def _tell(self, feedback: Feedback) -> None:
        if self.on_feedback is None:
            return
        try:
            self.on_feedback(feedback)
        except Exception:  # noqa: BLE001 - a feedback that fails never stops the entrance
            _log.exception("entrance: feedback %s failed", feedback.value)


class ToneFeedback:
    """A door station's feedback: each outcome as a short tone on its speaker, when idle.

    During a call the speaker carries the call (the person at the door hears the callee);
    ringing has no tone of its own (the ringback follows).
    """

    def __init__(self, calls: Calls) -> None:
        """Tones on the speaker of ``calls``' media (none when the endpoint has no speaker)."""
        self.calls = calls
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, feedback: Feedback) -> None:
        """Play the tone of ``feedback`` once, unless a call is in progress."""
        pattern = FEEDBACK_TONES.get(feedback)
        tones = self.calls.media.tones
        if pattern is None or tones is None or self.calls.is_call_in_progress():
            return
        task = asyncio.create_task(tones.play(pattern, loops=1), name=f"tone {pattern.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop starting tones (one playing ends by itself within a second)."""
        await cancel_and_wait(list(self._tasks))


class LedFeedback:
    """A door station's feedback on its status LED: each outcome as a short flash.

    ``flash`` is the call service's (`IntercomService.flash_led`): it owns the LED, puts
    the call-state pattern back after the flash, and a call-state change in between wins.
    """

    def __init__(self, flash: Callable[[LedPattern], None]) -> None:
        """Flashes go to ``flash``."""
        self.flash = flash

    def __call__(self, feedback: Feedback) -> None:
        """Flash the pattern of ``feedback`` (nothing for ringing)."""
        pattern = FEEDBACK_LEDS.get(feedback)
        if pattern is not None:
            self.flash(pattern)
