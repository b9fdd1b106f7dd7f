"""The demo's entrance panel: the door's panel tables, its resident, and the scripted act.

``callbox demo`` (the simulator page) and ``callbox demo --scripted`` give the door station
a bell "flat1" (dial code 1) ringing the indoor unit, a 3x4 keypad, a Wiegand reader
"entrance", ``[access]`` with one resident's code and card (enrolled before the door
starts), a door contact and a tamper switch. On the sim board the keypad and the reader are
``SimKeypad`` / ``SimCardReader``, the switches MockFactory pins.

`run_panel_act` is the scripted demo's second act, after the doorbell call: a visitor dials
the bell's code on the keypad, the flat rings showing the bell, the resident's card opens
the door and the flat stops ringing ("door-opened"). Each step is timed from the key or the
card to the event that proves it happened.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from device.simulator._devicesite import IntercomSite
from device.simulator._pin_scenario import StatusTimes
from device.simulator._scenario import ms_between, run_steps
from hal.cards import SimCardReader
from hal.keypad import SimKeypad
from services.access import AccessStore, EntryKind
from services.access.enroll import Enrollment, add_entry
from services.callapi import DOOR_OPENED, CallStatus

DEMO_CODE = "2580"
"""The demo resident's access code: ``*2580#`` on the keypad."""
DEMO_CARD = "wiegand26:12:34567"
"""The demo resident's card (``<format>:<number>``, as ``callbox access add --card``)."""
DIAL_CODE = "1"
"""The dial code of the demo's bell "flat1"."""
BELL_LABEL = "Flat 1 - Demo"


ENTRANCE_TOML = """
[keypad]
kind = "matrix"
rows = ["GPIO4", "GPIO14", "GPIO15", "GPIO18"]
columns = ["GPIO23", "GPIO25", "GPIO8"]
keys = ["123", "456", "789", "*0#"]

[[card_readers]]
name = "entrance"
kind = "wiegand"
d0 = "GPIO12"
d1 = "GPIO9"

[access]
enabled = true
"""
"""A door's 3x4 keypad, its Wiegand reader "entrance" and ``[access]`` on: the way in."""


def panel_toml(flat: str) -> str:
    """The door's entrance panel tables, its bell "flat1" ringing ``flat``."""
    return f"""
[[bells]]
name = "flat1"
label = "{BELL_LABEL}"
targets = ["{flat}"]
code = "{DIAL_CODE}"
{ENTRANCE_TOML}
[door_contact]
pin = "GPIO21"
pull_up = false  # the simulated pins rest low: the door is closed until the page opens it

[tamper]
pin = "GPIO7"
pull_up = false  # likewise: the housing is shut
"""


def enroll_demo_resident(state_dir: Path) -> None:
    """Add the demo resident's code and card to the door's access list (blocking: slow KDF)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    store = AccessStore(state_dir)
    for kind, secret in ((EntryKind.PIN, DEMO_CODE), (EntryKind.CARD, DEMO_CARD)):
        add_entry(store, Enrollment(kind, "Demo resident", secret, flat="1"))


@dataclass
class PanelTimeline:
    """The entrance-panel act's figures, in milliseconds (None where a step failed)."""

    dial_to_ringing_ms: float | None = None
    """The bell's code and ``#`` on the keypad -> the indoor unit rings."""
    card_to_relay_ms: float | None = None
    """The resident's card at the reader -> the relay pulses (the access check included)."""
    relay_to_ring_stop_ms: float | None = None
    """The relay pulse -> the indoor unit's ring ended with "door-opened"."""
    bell: str = ""
    """The bell label the indoor unit was shown."""
    ok: bool = False
    error: str = ""
    step: str = field(default="", repr=False)

    def as_json(self) -> dict[str, object]:
        """The ``panel`` object of ``callbox demo --json``."""
        fields = asdict(self)
        del fields["step"]
        return fields


async def run_panel_act(site: IntercomSite, door: str, indoor: str) -> PanelTimeline:
    """Dial ``door``'s bell on its keypad, let the resident's card open the door; time it."""
    timeline = PanelTimeline()
    watch = StatusTimes()
    watch.watch(site, door, indoor)
    try:
        await run_steps(timeline, _steps(site, door, indoor, watch, timeline))
    finally:
        await watch.stop_watching(site)
    return timeline


async def _steps(
    site: IntercomSite, door: str, indoor: str, watch: StatusTimes, timeline: PanelTimeline
) -> None:
    endpoint = site[door].endpoint
    assert endpoint is not None
    keypad, reader = endpoint.board.io.keypad, endpoint.board.io.card_readers.get("entrance")
    assert isinstance(keypad, SimKeypad), f"{door} has no simulated keypad"
    assert isinstance(reader, SimCardReader), f"{door} has no simulated reader 'entrance'"
    opener = getattr(endpoint.service, "opener", None)
    assert opener is not None, f"{door} is not a door station"

    timeline.step = "the indoor unit to ring for the dialled bell"
    dialled = time.monotonic()
    keypad.press(f"{DIAL_CODE}#")
    rang = await watch.wait(indoor, CallStatus.INCOMING)
    timeline.dial_to_ringing_ms = ms_between(dialled, rang)
    incoming = watch.calls[indoor]
    bell = incoming.props.bell
    assert bell is not None and bell.via == "code", f"the flat was not shown the bell: {bell}"
    timeline.bell = bell.label

    timeline.step = "the resident's card to open the door"
    recorded = asyncio.Event()
    chained = opener.on_record

    def seen(record: Any) -> None:  # the opener records every release, once
        if chained is not None:
            chained(record)
        recorded.set()

    opener.on_record = seen
    card_format, _, number = DEMO_CARD.partition(":")
    try:
        shown = time.monotonic()
        reader.present(card_format, number)
        await recorded.wait()
    finally:
        opener.on_record = chained
    record = opener.records[-1]
    assert record.opened, f"the card did not open the door: {record.reason}"
    timeline.card_to_relay_ms = ms_between(shown, record.monotonic_at)

    timeline.step = "the indoor unit to stop ringing"
    await incoming.ended.wait()
    assert incoming.ended_at is not None
    assert (incoming.status, incoming.end_reason) == (CallStatus.CANCEL, DOOR_OPENED), (
        f"the ring ended {incoming.status.name} ({incoming.end_reason!r}), not door-opened"
    )
    timeline.relay_to_ring_stop_ms = ms_between(record.monotonic_at, incoming.ended_at)
    timeline.step = "the end of the relay pulse"
    await opener.wait_idle()
