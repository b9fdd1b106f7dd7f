"""What the call UI shows, as plain data: the screen, its words and the call's state.

``UiState`` is an immutable snapshot taken on the event loop and handed to the renderer
in its worker thread; two equal states draw the same picture. Nothing here draws.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.callapi.properties import Bell
from services.callapi.reasons import DOOR_OPENED
from services.callapi.status import CallStatus, HangupReason

SCREENS = (
    "idle",
    "incoming",
    "outgoing",
    "in_call",
    "reconnecting",
    "ended",
    "key_changed",
    "alarm",
    "blank",
)
"""Every screen ``DefaultCallUi.screen`` can name."""

VIDEO_SCREENS = frozenset({"incoming", "in_call", "reconnecting"})
"""Screens that show the peer's video (the visitor preview while ringing)."""


@dataclass(frozen=True)
class UiState:
    """One screenful of information; the renderer draws exactly this."""

    screen: str
    status_text: str
    name: str = ""
    """This unit's name (idle screen)."""
    clock: str = ""
    date: str = ""
    online: bool = True
    dnd: bool = False
    missed: int = 0
    call_id: str = ""
    peer_name: str = ""
    video: bool = False
    """The call carries the peer's video (the renderer shows it when frames come)."""
    timer: str = ""
    muted: bool = False
    audio_device: str = "Speaker"
    door_text: str = ""
    can_open_door: bool = False
    pip: bool = False
    """Show this unit's own camera picture-in-picture."""
    detail: str = ""
    """A second line: the ended reason's detail, the key change's explanation."""
    alarms: tuple[str, ...] = ()
    """A door's active alarms, one line each (the "alarm" screen while idle)."""
    bell: str = ""
    """Which bell of the door rang ("Flat 12 - Smith", "Flat 12 - Smith (dialled)"), or ""."""


def initials(name: str) -> str:
    """Up to two capital letters for a name ("Front door" -> "FD"; "" -> "?")."""
    words = [w for w in name.replace("-", " ").replace("_", " ").split() if w]
    letters = "".join(w[0] for w in words[:2]).upper()
    return letters or "?"


def timer_text(seconds: float) -> str:
    """A call timer: "0:07", "12:34", "1:02:03"."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


DEFAULT_BELL = "doorbell"
"""The name of a door's default bell (``services.intercom.settings.DEFAULT_BELL``)."""


def bell_words(bell: Bell | None) -> str:
    """The bell that rang, for people: its label (else name), "(dialled)" for a code.

    "" without a bell and for the door's default bell (``doorbell``: ``[inputs.doorbell]``
    and the top-level ``targets``), whose label is the door's own name, shown already.
    """
    if bell is None or bell.name == DEFAULT_BELL:
        return ""
    words = bell.label or bell.name
    return f"{words} (dialled)" if bell.via == "code" else words


def caller_words(peer: str, bell: str) -> str:
    """Who calls: "Front door · Flat 12 - Smith", or the peer alone without a bell."""
    return f"{peer} · {bell}" if bell and bell != peer else peer


def ended_words(
    status: CallStatus,
    *,
    incoming: bool,
    answered: bool,
    reason: HangupReason | None,
    peer: str,
    end_reason: str = "",
) -> tuple[str, str]:
    """Why a call ended, in words: (headline, detail) for the "ended" screen.

    ``end_reason``: the ``cancel`` reason that ended a ringing call (``Call.end_reason``);
    a door that stopped ringing because its door opened says "Door opened", not "Missed
    call".
    """
    who = peer or "The other side"
    if status == CallStatus.CANCEL and incoming and not answered and end_reason == DOOR_OPENED:
        return "Door opened", f"{who}: the door was opened while it rang"
    if status == CallStatus.COMPLETE:
        detail = "You hung up" if reason == HangupReason.USER else f"{who} hung up"
        return "Call ended", detail
    if status == CallStatus.CANCEL:
        if incoming and not answered:
            if reason == HangupReason.USER:
                return "Call declined", f"You declined the call from {who}"
            return "Missed call", f"{who} stopped calling"
        return "Call cancelled", "You hung up before anyone answered"
    table: dict[CallStatus, tuple[str, str]] = {
        CallStatus.NOANSWER: ("No answer", f"Nobody answered within the ring time ({who})"),
        CallStatus.BUSY: ("Line busy", f"{who} is busy or declined the call"),
        CallStatus.UNREACHABLE: ("Not reachable", f"{who} did not answer the network"),
        CallStatus.OFFLINE: ("Offline", f"{who} is not connected"),
        CallStatus.NOTALLOWED: ("Call refused", f"{who} does not take calls from here"),
        CallStatus.BLOCKED: ("Blocked", f"{who} blocks calls from here"),
        CallStatus.NOVIDEOCALLS: ("No video calls", f"{who} takes audio calls only"),
        CallStatus.DURATIONEXCEEDED: ("Time limit reached", "The call reached its maximum length"),
        CallStatus.NETWORKERROR: ("Connection lost", "The network failed and did not come back"),
        CallStatus.SECURITYERROR: (
            "Security check failed",
            "A message did not verify: the call was ended to protect you",
        ),
        CallStatus.HWERROR: ("Hardware error", "A camera or audio device failed"),
    }
    return table.get(status, ("Call failed", f"The call ended with {status.name.lower()}"))
