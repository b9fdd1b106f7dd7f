"""Staged ring groups (escalation): indoor units first, then phones, then a fallback.

A bell's plan (:func:`plan_stages`) is a list of stages, each a set of addresses and the
time after the press at which it starts ringing. The first stage is the call's own targets;
an `Escalation` adds the later ones to the same call (``Call.add_targets``) when their
time comes, or at once when a stage has nobody to ring (offline, do-not-disturb) or every
leg rung so far has ended (declined, gone offline). The first answer wins as in any ring
group; the door station stops the escalation when the call is answered or ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.callapi import Call, UserProfile
from services.intercom.settings import BellSettings, PanelSettings
from services.tasks import cancel_and_wait

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """One stage of a staged ring group: ``targets`` ring ``after_s`` after the press."""

    name: str
    after_s: float
    targets: tuple[str, ...]


def plan_stages(
    bell: BellSettings,
    panel: PanelSettings,
    *,
    addresses: Callable[[Sequence[str]], list[str]],
    is_phone: Callable[[str], bool],
) -> list[Stage]:
    """The stages of ``bell``, in order, each with someone listed (empty stages left out).

    ``addresses`` turns targets (addresses, ``flat:<flat>``) into the addresses that may be
    rung now (trusted, not in their do-not-disturb hours); ``is_phone`` tells a phone
    (role "web") from an indoor unit. Stage 1: the units; stage 2: the phones, at
    ``phones_after_s`` (0: with the units, one stage); stage 3: the fallback, at
    ``fallback_after_s``, less any address the bell already rings.
    """
    rung = addresses(bell.targets)
    units = tuple(a for a in rung if not is_phone(a))
    phones = tuple(a for a in rung if is_phone(a))
    phones_after = panel.phones_after_s if bell.phones_after_s is None else bell.phones_after_s
    fallback_after = (
        panel.fallback_after_s if bell.fallback_after_s is None else bell.fallback_after_s
    )
    if phones_after <= 0:
        stages = [Stage("indoor units and phones", 0.0, units + phones)]
    else:
        stages = [Stage("indoor units", 0.0, units), Stage("phones", phones_after, phones)]
    fallback = tuple(a for a in addresses(panel.fallback) if a not in rung)
    stages.append(Stage("fallback", fallback_after, fallback))
    return [stage for stage in stages if stage.targets]


StageRung = Callable[[Call, Stage, list[str]], None]
"""Told which addresses a stage rang (the door pushes the phones among them)."""


class Escalation:
    """Rings the later stages of one outgoing call until it is answered or ends.

    ``stages``: the stages after the first (which the call rings itself), in order.
    """

    def __init__(
        self,
        call: Call,
        stages: Sequence[Stage],
        *,
        profile_of: Callable[[str], UserProfile],
        on_stage: StageRung | None = None,
        label: str = "",
    ) -> None:
        self._call = call
        self._pending: deque[Stage] = deque(stages)
        self._profile_of = profile_of
        self._on_stage = on_stage
        self._label = label or call.call_id
        self._loop = asyncio.get_running_loop()
        self._pressed_at = self._loop.time()
        self._task: asyncio.Task[None] | None = None
        self._at_once = False

    @property
    def pending(self) -> list[Stage]:
        """The stages not rung yet."""
        return list(self._pending)

    def start(self) -> None:
        """Take over the call's next stage (call before ``call.start()``) and the stage timer."""
        self._call.set_next_stage(self.next_stage)
        if self._pending and self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"escalation-{self._label}")

    async def close(self) -> None:
        """Drop the pending stages (the call was answered, or ended); idempotent."""
        self._pending.clear()
        self._call.set_next_stage(None)
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            await cancel_and_wait([task])

    async def next_stage(self) -> bool:
        """Every leg so far has ended: ring the next stage with someone to ring, now."""
        while self._pending:
            stage = self._pending.popleft()
            if await self._ring(stage):
                return True
        return False

    def _rings(self) -> bool:
        call = self._call
        return not (call.is_ended() or call.is_answered())

    async def _run(self) -> None:
        while self._pending and self._rings():
            stage = self._pending[0]
            delay = self._pressed_at + stage.after_s - self._loop.time()
            if delay > 0 and not self._at_once:
                await asyncio.sleep(delay)  # the stage's time; next_stage() may take it first
                continue
            self._pending.popleft()
            self._at_once = not await self._ring(stage)  # nobody there: the next one now

    async def _ring(self, stage: Stage) -> bool:
        """Ring ``stage``; True when someone in it rings (or is being woken)."""
        if not self._rings():
            return False
        rung = await self._call.add_targets([self._profile_of(a) for a in stage.targets])
        if not rung:
            _log.info("%s: stage %r has nobody to ring: skipped", self._label, stage.name)
            return False
        _log.info("%s: stage %r rings %s", self._label, stage.name, ", ".join(rung))
        if self._on_stage is not None:
            self._on_stage(self._call, stage, rung)
        return True
