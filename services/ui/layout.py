"""Where things go on the screen, for any size: everything scales with the display.

Sizes are designed for 800x480 and multiplied by ``scale = min(width / 800, height / 480)``;
the button bar spans the bottom, the status bar the top. The touch targets of every screen
are ``Layout.buttons(state)``: name -> rectangle, the same rectangles the renderer draws.

On-screen buttons (touch), left to right:

- incoming: ``decline`` ("stop ringing"), ``answer`` ("talk and see");
- outgoing, reconnecting: ``hangup``;
- in call: ``mute`` (microphone on/off), ``door_release`` (calls with a door), ``hangup``;
- key changed: ``confirm_key`` (pin the contact's new key);
- idle: ``clear_missed``, the missed-call badge (top right), while there are missed calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.ui.model import UiState

BASE_WIDTH = 800
BASE_HEIGHT = 480


@dataclass(frozen=True)
class Rect:
    """A rectangle in pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    def contains(self, x: int, y: int) -> bool:
        """True when pixel (x, y) is inside."""
        return self.x <= x < self.x + self.w and self.y <= y < self.y + self.h

    @property
    def center(self) -> tuple[int, int]:
        """The middle pixel."""
        return self.x + self.w // 2, self.y + self.h // 2

    def as_tuple(self) -> tuple[int, int, int, int]:
        """(x, y, w, h), what a ``hal.canvas.Canvas`` takes."""
        return self.x, self.y, self.w, self.h


@dataclass(frozen=True)
class ButtonStyle:
    """How one on-screen button looks: title, what it does, colour."""

    title: str
    subtitle: str
    color: tuple[int, int, int]


GREEN = (34, 160, 84)
RED = (200, 48, 48)
BLUE = (40, 110, 200)
GREY = (90, 96, 110)
AMBER = (214, 140, 20)


def button_style(name: str, state: UiState) -> ButtonStyle:
    """The look of button ``name`` on ``state``'s screen."""
    if name == "answer":
        return ButtonStyle("Answer", "talk and see", GREEN)
    if name == "decline":
        return ButtonStyle("Decline", "stop ringing", RED)
    if name == "hangup":
        return ButtonStyle("Hang up", "end the call", RED)
    if name == "door_release":
        return ButtonStyle("Open door", "release the lock", BLUE)
    if name == "mute":
        if state.muted:
            return ButtonStyle("Unmute", "microphone is off", AMBER)
        return ButtonStyle("Mute", "microphone is on", GREY)
    if name == "confirm_key":
        return ButtonStyle("Confirm new key", "after checking it", AMBER)
    return ButtonStyle(name, "", GREY)


def button_names(state: UiState) -> list[str]:
    """The buttons of ``state``'s screen, left to right (the badge excluded)."""
    screen = state.screen
    if screen == "incoming":
        return ["decline", "answer"]
    if screen in ("outgoing", "reconnecting"):
        return ["hangup"]
    if screen == "in_call":
        return ["mute", *(["door_release"] if state.can_open_door else []), "hangup"]
    if screen == "key_changed":
        return ["confirm_key"]
    return []


class Layout:
    """The geometry of one display size."""

    def __init__(self, width: int, height: int) -> None:
        """Geometry for a ``width`` x ``height`` screen."""
        self.width = width
        self.height = height
        self.scale = min(width / BASE_WIDTH, height / BASE_HEIGHT)
        self.margin = self.px(16)
        self.top_bar = Rect(0, 0, width, self.px(56))
        bar_h = self.px(100)
        self.button_bar = Rect(0, height - bar_h, width, bar_h)
        self.full = Rect(0, 0, width, height)
        above_buttons = height - bar_h
        preview_w = min(width * 2 // 3, above_buttons * 4 // 3)
        self.preview = Rect(0, 0, preview_w, above_buttons)
        self.side = Rect(preview_w, 0, width - preview_w, above_buttons)
        pip_w = self.px(176)
        pip_h = pip_w * 3 // 4
        self.pip = Rect(
            width - pip_w - self.margin,
            self.button_bar.y - pip_h - self.margin,
            pip_w,
            pip_h,
        )
        badge = self.px(64)
        self.badge = Rect(width - badge - self.margin, self.margin, badge, badge)

    def px(self, base: float) -> int:
        """``base`` pixels at 800x480, at this size (at least 1)."""
        return max(1, round(base * self.scale))

    def font_px(self, base: float) -> int:
        """A font size designed for 800x480, at this size."""
        return max(8, round(base * self.scale))

    def buttons(self, state: UiState) -> dict[str, Rect]:
        """Touch targets of ``state``'s screen: name -> rectangle."""
        targets: dict[str, Rect] = {}
        if state.screen == "idle" and state.missed > 0:
            targets["clear_missed"] = self.badge
        names = button_names(state)
        if not names:
            return targets
        bar = self.button_bar
        gap = self.margin
        width = min(self.px(230), (bar.w - gap * (len(names) + 1)) // len(names))
        height = bar.h - 2 * self.px(14)
        total = width * len(names) + gap * (len(names) - 1)
        left = bar.x + (bar.w - total) // 2
        top = bar.y + (bar.h - height) // 2
        for index, name in enumerate(names):
            targets[name] = Rect(left + index * (width + gap), top, width, height)
        return targets

    def button_at(self, state: UiState, x: int, y: int) -> str | None:
        """The button of ``state``'s screen under pixel (x, y), or None."""
        for name, rect in self.buttons(state).items():
            if rect.contains(x, y):
                return name
        return None


def fit(src_w: int, src_h: int, box: Rect) -> Rect:
    """The largest rectangle of ``src``'s aspect ratio inside ``box``, centred, even sizes."""
    if src_w <= 0 or src_h <= 0:
        return box
    scale = min(box.w / src_w, box.h / src_h)
    w = max(2, int(src_w * scale) // 2 * 2)
    h = max(2, int(src_h * scale) // 2 * 2)
    return Rect(box.x + (box.w - w) // 2, box.y + (box.h - h) // 2, w, h)
