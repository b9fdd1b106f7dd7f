"""An entrance panel's bells at a door station: which bell rings whom, and in which stages.

``EntrancePanel`` answers the door station's questions about its bells (``[[bells]]`` and the
default bell, ``doorbell``): the bell a button or a dialled code names, the stages a bell
rings in (escalation.py's ``plan_stages``, with the targets' do-not-disturb hours), and it
keeps the ``Escalation`` of the call that rings now, dropped at its answer or end.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable, Sequence
from typing import Protocol

from services.callapi import Bell, Call, UserProfile
from services.intercom.escalation import Escalation, Stage, StageRung, plan_stages
from services.intercom.settings import BellSettings, IntercomSettings

_log = logging.getLogger(__name__)

FLAT_PREFIX = "flat:"
"""A target ``flat:<flat>`` rings that flat's entries of the site directory."""
DIAL_CODE = re.compile(r"\d{1,8}")
"""A keypad dial code: 1 to 8 digits."""


class PanelDoor(Protocol):
    """What the panel needs of its door station."""

    @property
    def settings(self) -> IntercomSettings:
        """The door's current settings (they change on a reload)."""
        ...

    def reachable_targets(self, targets: Sequence[str] | None = None) -> list[str]:
        """The addresses ``targets`` name whose keys are pinned."""
        ...

    def profile_of(self, address: str) -> UserProfile:
        """The best profile known of ``address`` (its role tells a phone)."""
        ...

    def in_flat(self, flat: str) -> list[str]:
        """The site directory's indoor units and phones of ``flat``."""
        ...


class EntrancePanel:
    """The bells of one door station and the escalation of the call that rings now."""

    def __init__(self, door: PanelDoor, *, name: str = "") -> None:
        self._door = door
        self._name = name
        self.clock: Callable[[], datetime.datetime] = datetime.datetime.now
        """Local time, for the targets' do-not-disturb hours (a test injects its own)."""
        self._escalation: Escalation | None = None

    def bell(self, name: str, *, via: str = "button") -> Bell:
        """The bell called ``name`` (``flat:<flat>``: that flat of the site directory)."""
        settings = self._door.settings.bells().get(name)
        if settings is not None:
            return Bell(name=name, label=settings.label, via=via)
        flat = name.removeprefix(FLAT_PREFIX)
        label = f"Flat {flat}" if name.startswith(FLAT_PREFIX) else ""
        return Bell(name=name, label=label, via=via)

    def bell_for_code(self, code: str) -> Bell | None:
        """The bell a dialled ``code`` rings, or None for an unknown code.

        A bell's own ``code`` first; else, with ``[panel] dial_directory``, the site
        directory's flat of that number (``flat:<code>``, labelled "Flat <code>").
        """
        if not DIAL_CODE.fullmatch(code):
            return None
        settings = self._door.settings
        for bell in settings.bells().values():
            if bell.code == code:
                return self.bell(bell.name, via="code")
        if settings.panel.dial_directory and self._door.in_flat(code):
            return self.bell(FLAT_PREFIX + code, via="code")
        return None

    def stages(self, bell: Bell) -> list[Stage]:
        """The stages in which ``bell`` rings now (trusted targets, none in its DND hours)."""
        settings = self._door.settings
        own = settings.bells().get(bell.name) or BellSettings(
            name=bell.name, targets=(bell.name,) if bell.name.startswith(FLAT_PREFIX) else ()
        )
        return plan_stages(own, settings.panel, addresses=self._ringable, is_phone=self._is_phone)

    def _ringable(self, targets: Sequence[str]) -> list[str]:
        now = self.clock()
        dnd = self._door.settings.panel.target_dnd
        ringable = []
        for address in self._door.reachable_targets(targets):
            schedule = dnd.get(address)
            if schedule is not None and schedule.is_active(now):
                _log.info("%s: %s is in its do-not-disturb hours: not rung", self._name, address)
            else:
                ringable.append(address)
        return ringable

    def _is_phone(self, address: str) -> bool:
        return self._door.profile_of(address).role == "web"

    # the escalation of the call that rings now -------------------------------------------------

    @property
    def escalation(self) -> Escalation | None:
        """The stages still to ring of the call that rings now (None: none pending)."""
        return self._escalation

    async def escalate(self, call: Call, later: Sequence[Stage], on_stage: StageRung) -> None:
        """Ring the ``later`` stages of ``call`` in their time (call before ``call.start()``)."""
        await self.stop()
        self._escalation = Escalation(
            call,
            later,
            profile_of=self._door.profile_of,
            on_stage=on_stage,
            label=f"{self._name}: call {call.call_id}",
        )
        self._escalation.start()

    async def stop(self) -> None:
        """Drop the pending stages (the call was answered or ended); idempotent."""
        escalation, self._escalation = self._escalation, None
        if escalation is not None:
            await escalation.close()
