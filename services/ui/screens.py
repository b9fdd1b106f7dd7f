"""The screens of the call UI, drawn offscreen into RGB arrays for a ``Display``.

``ScreenRenderer.render(state, remote, local)`` draws ``state`` (a ``UiState``) with the
newest remote video frame and local camera frame it was given, and returns a fresh
(height, width, 3) array. It keeps the last converted frames, so a state change re-draws
without a new frame. Call it from one thread only (the UI's render thread): video
conversion (swscale) and drawing never run on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable

from av import VideoFrame

from hal.canvas import Canvas, Graphics, Pixels
from services.ui.layout import GREEN, RED, Layout, Rect, button_style, fit
from services.ui.model import UiState, initials
from services.ui.paint import (
    BACKGROUND,
    MUTED_TEXT,
    PANEL,
    FrameConverter,
    Painter,
)

AMBER_BG = (92, 60, 8)
ALARM_BG = (110, 20, 20)
DOOR_OK = (34, 140, 80)
DOOR_FAIL = (170, 60, 40)
BELL_TEXT = (250, 200, 90)


class _Video:
    """The last frame of one stream and its conversion for one target box."""

    def __init__(self) -> None:
        self.source: VideoFrame | None = None
        self.pixels: Pixels | None = None
        self.rect: Rect | None = None
        self.box: Rect | None = None
        self.converter = FrameConverter()

    def take(self, frame: VideoFrame) -> None:
        self.source = frame
        self.pixels = None

    def clear(self) -> None:
        self.source = self.pixels = None
        self.rect = self.box = None

    def for_box(self, box: Rect) -> tuple[Pixels, Rect] | None:
        """The frame converted to fit ``box`` (converted again only when needed)."""
        if self.source is None:
            return None
        if self.pixels is None or self.box != box:
            rect = fit(self.source.width, self.source.height, box)
            self.pixels = self.converter.rgb(self.source, rect.w, rect.h)
            self.rect, self.box = rect, box
        assert self.rect is not None
        return self.pixels, self.rect


class ScreenRenderer:
    """Draws every screen of the call UI at one size."""

    def __init__(self, width: int, height: int, graphics: Graphics | None = None) -> None:
        """A renderer for a ``width`` x ``height`` display, drawing with ``graphics``.

        ``graphics`` None: the default back-end of ``hal.canvas``.
        """
        self.layout = Layout(width, height)
        self.paint = Painter(self.layout, graphics)
        self._remote = _Video()
        self._local = _Video()
        self._picture = _Video()
        self._call_id = ""
        self._screens: dict[str, Callable[[Canvas, UiState], None]] = {
            "idle": self._idle,
            "incoming": self._incoming,
            "outgoing": self._outgoing,
            "in_call": self._in_call,
            "reconnecting": self._reconnecting,
            "ended": self._ended,
            "key_changed": self._key_changed,
            "alarm": self._alarm,
            "blank": self._blank,
        }

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.layout.width, self.layout.height

    def render(
        self,
        state: UiState,
        remote: VideoFrame | None = None,
        local: VideoFrame | None = None,
    ) -> Pixels:
        """A new frame showing ``state``; ``remote``/``local``: newer video frames, if any."""
        if state.call_id != self._call_id:
            self._call_id = state.call_id
            self._remote.clear()
            self._picture.clear()
        if remote is not None:
            self._remote.take(remote)
            if self._picture.source is None:
                self._picture.take(remote)  # the visitor snapshot: the first preview frame
        if local is not None:
            self._local.take(local)
        canvas = self.paint.canvas()
        self._screens[state.screen](canvas, state)
        for name, rect in self.layout.buttons(state).items():
            if name != "clear_missed":
                self.paint.button(canvas, rect, button_style(name, state))
        return canvas.pixels

    # pieces -----------------------------------------------------------------------------------

    def _video(self, canvas: Canvas, box: Rect) -> Rect | None:
        converted = self._remote.for_box(box)
        if converted is None:
            return None
        pixels, rect = converted
        canvas.put_pixels(pixels, (rect.x, rect.y))
        return rect

    def _no_video(self, canvas: Canvas, state: UiState, box: Rect, words: str) -> None:
        lay = self.layout
        canvas.fill(PANEL, box.as_tuple())
        cx, cy = box.center
        radius = min(box.w, box.h) // 4
        self.paint.initials(canvas, initials(state.peer_name), (cx, cy - lay.px(16)), radius)
        self.paint.blit_text(
            canvas, words, 24, (cx, cy + radius), color=MUTED_TEXT, anchor="midtop"
        )

    def _status_bar(self, canvas: Canvas, state: UiState, right: str) -> None:
        lay = self.layout
        bar = lay.top_bar
        self.paint.shade(canvas, bar, 150)
        mid = bar.y + bar.h // 2
        self.paint.blit_text(
            canvas, state.peer_name or "Call", 32, (lay.margin, mid), bold=True,
            anchor="midleft", width=bar.w // 2,
        )  # fmt: skip
        self.paint.blit_text(
            canvas, right, 30, (bar.w - lay.margin, mid), bold=True, anchor="midright"
        )

    def _chips(self, canvas: Canvas, state: UiState) -> None:
        lay = self.layout
        x, y = lay.margin, lay.top_bar.h + lay.px(8)
        chips = [
            ("Muted" if state.muted else "Mic on", RED if state.muted else (60, 70, 90)),
            (state.audio_device, (60, 70, 90)),
        ]
        if state.door_text:
            chips.append((state.door_text, DOOR_OK if "opened" in state.door_text else DOOR_FAIL))
        for text, color in chips:
            box = self.paint.chip(canvas, text, (x, y), color)
            x += box.w + lay.px(8)

    def _pip(self, canvas: Canvas, state: UiState) -> None:
        if not state.pip:
            return
        pip = self.layout.pip
        converted = self._local.for_box(pip)
        if converted is None:
            return
        pixels, rect = converted
        border = self.layout.px(2)
        outline = (rect.x - border, rect.y - border, rect.w + 2 * border, rect.h + 2 * border)
        canvas.rect((240, 240, 240), outline)
        canvas.put_pixels(pixels, (rect.x, rect.y))

    # screens ----------------------------------------------------------------------------------

    def _idle(self, canvas: Canvas, state: UiState) -> None:
        lay = self.layout
        paint = self.paint
        canvas.fill(BACKGROUND)
        paint.blit_text(
            canvas, state.name, 34, (lay.margin, lay.margin), bold=True,
            width=lay.width - lay.badge.w - 3 * lay.margin,
        )  # fmt: skip
        cx = lay.width // 2
        clock = paint.blit_text(
            canvas, state.clock, 120, (cx, lay.height * 2 // 5), bold=True, anchor="center"
        )
        paint.blit_text(
            canvas, state.date, 30, (cx, clock.y + clock.h + lay.px(8)), color=MUTED_TEXT,
            anchor="midtop",
        )  # fmt: skip
        y = lay.height - lay.margin - lay.px(34)
        dot = lay.px(9)
        color = GREEN if state.online else RED
        canvas.circle(color, (lay.margin + dot, y + lay.px(15)), dot)
        x = lay.margin + 3 * dot
        words = "Connected" if state.online else "Offline: no calls possible"
        box = paint.blit_text(canvas, words, 26, (x, y + lay.px(15)), anchor="midleft")
        if state.dnd:
            paint.chip(canvas, "Do not disturb", (box.x + box.w + lay.px(24), y), RED)
        if state.missed > 0:
            badge = lay.badge
            canvas.circle(RED, badge.center, badge.w // 2)
            count = str(state.missed) if state.missed < 100 else "99+"
            paint.blit_text(canvas, count, 40, badge.center, bold=True, anchor="center")
            label = "missed call" if state.missed == 1 else "missed calls"
            paint.blit_text(
                canvas, label, 20, (badge.center[0], badge.y + badge.h + lay.px(4)),
                color=MUTED_TEXT, anchor="midtop",
            )  # fmt: skip

    def _incoming(self, canvas: Canvas, state: UiState) -> None:
        lay = self.layout
        paint = self.paint
        canvas.fill(BACKGROUND)
        preview = lay.preview
        canvas.fill((0, 0, 0), preview.as_tuple())
        if self._video(canvas, preview) is None:
            words = "waiting for the picture" if state.video else "audio call"
            self._no_video(canvas, state, preview, words)
        side = lay.side
        canvas.fill(PANEL, side.as_tuple())
        cx = side.x + side.w // 2
        size = min(side.w - 2 * lay.margin, lay.px(150))
        picture = Rect(cx - size // 2, lay.margin * 2, size, size * 3 // 4)
        snapshot = self._picture.for_box(picture)
        if snapshot is not None:
            pixels, rect = snapshot
            canvas.put_pixels(pixels, (rect.x, rect.y))
        else:
            r = picture.h // 2
            paint.initials(canvas, initials(state.peer_name), picture.center, r)
        y = picture.y + picture.h + lay.px(14)
        name = paint.blit_text(
            canvas, state.peer_name, 36, (cx, y), bold=True, anchor="midtop",
            width=side.w - 2 * lay.margin,
        )  # fmt: skip
        below = name.y + name.h + lay.px(6)
        if state.bell:  # which flat's bell or code rang (an entrance panel)
            bell = paint.blit_text(
                canvas, state.bell, 28, (cx, below), bold=True, color=BELL_TEXT,
                anchor="midtop", width=side.w - 2 * lay.margin,
            )  # fmt: skip
            below = bell.y + bell.h + lay.px(6)
        paint.blit_text(canvas, "is calling", 26, (cx, below), color=MUTED_TEXT, anchor="midtop")
        hint = "Answer: talk and see" if state.video else "Answer: talk"
        y = side.y + side.h - lay.px(60)
        paint.blit_text(canvas, hint, 20, (cx, y), color=MUTED_TEXT, anchor="midtop")
        paint.blit_text(
            canvas, "Decline: stop ringing", 20, (cx, y + lay.px(24)), color=MUTED_TEXT,
            anchor="midtop",
        )  # fmt: skip

    def _outgoing(self, canvas: Canvas, state: UiState) -> None:
        lay = self.layout
        paint = self.paint
        canvas.fill(BACKGROUND)
        cx = lay.width // 2
        area_h = lay.button_bar.y
        radius = lay.px(64)
        paint.initials(canvas, initials(state.peer_name), (cx, area_h // 3), radius)
        name = paint.blit_text(
            canvas, f"Calling {state.peer_name}", 40, (cx, area_h // 3 + radius + lay.px(16)),
            bold=True, anchor="midtop", width=lay.width - 2 * lay.margin,
        )  # fmt: skip
        paint.blit_text(
            canvas, state.status_text, 30, (cx, name.y + name.h + lay.px(10)),
            color=MUTED_TEXT, anchor="midtop",
        )  # fmt: skip
        if state.detail:
            paint.blit_text(
                canvas, state.detail, 22, (cx, name.y + name.h + lay.px(48)),
                color=MUTED_TEXT, anchor="midtop",
            )  # fmt: skip

    def _in_call(self, canvas: Canvas, state: UiState) -> None:
        if self._video(canvas, self.layout.full) is None:
            words = "no video from the other side" if state.video else "audio call"
            self._no_video(canvas, state, self.layout.full, words)
        self._pip(canvas, state)
        self._status_bar(canvas, state, state.timer)
        self._chips(canvas, state)
        self.paint.shade(canvas, self.layout.button_bar, 110)

    def _reconnecting(self, canvas: Canvas, state: UiState) -> None:
        lay = self.layout
        if self._video(canvas, lay.full) is None:
            canvas.fill(PANEL)
        self.paint.shade(canvas, lay.full, 170)
        self._status_bar(canvas, state, state.timer)
        cx, cy = lay.width // 2, lay.button_bar.y // 2
        self.paint.blit_text(canvas, "Reconnecting…", 48, (cx, cy), bold=True, anchor="center")
        self.paint.blit_text(
            canvas, "the connection dropped; trying again", 24, (cx, cy + lay.px(40)),
            color=MUTED_TEXT, anchor="midtop",
        )  # fmt: skip

    def _ended(self, canvas: Canvas, state: UiState) -> None:
        lay = self.layout
        canvas.fill(BACKGROUND)
        cx, cy = lay.width // 2, lay.height // 2
        self.paint.initials(canvas, initials(state.peer_name), (cx, cy - lay.px(110)), lay.px(48))
        title = self.paint.blit_text(
            canvas, state.status_text, 48, (cx, cy - lay.px(40)), bold=True, anchor="midtop",
            width=lay.width - 2 * lay.margin,
        )  # fmt: skip
        self.paint.blit_text(
            canvas, state.detail, 26, (cx, title.y + title.h + lay.px(14)), color=MUTED_TEXT,
            anchor="midtop", width=lay.width - 2 * lay.margin,
        )  # fmt: skip
        if state.timer:
            self.paint.blit_text(
                canvas, f"Duration {state.timer}", 24, (cx, title.y + title.h + lay.px(54)),
                color=MUTED_TEXT, anchor="midtop",
            )  # fmt: skip

    def _key_changed(self, canvas: Canvas, state: UiState) -> None:
        lay = self.layout
        canvas.fill(AMBER_BG)
        cx = lay.width // 2
        y = lay.px(40)
        title = self.paint.blit_text(
            canvas, "Security key changed", 48, (cx, y), bold=True, anchor="midtop"
        )
        lines = [
            f"{state.peer_name} now uses a new key.",
            "Its calls are refused and nothing happens automatically",
            "until you confirm the key (compare the safety number",
            "with `callbox keys` or the installer first).",
        ]
        y = title.y + title.h + lay.px(24)
        for line in lines:
            box = self.paint.blit_text(
                canvas, line, 26, (cx, y), anchor="midtop", width=lay.width - 2 * lay.margin
            )
            y += box.h + lay.px(8)

    def _alarm(self, canvas: Canvas, state: UiState) -> None:
        """A notice of a door's active alarms, one line each, until the door clears them."""
        lay = self.layout
        canvas.fill(ALARM_BG)
        cx = lay.width // 2
        width = lay.width - 2 * lay.margin
        title = self.paint.blit_text(
            canvas, "Alarm at the door", 48, (cx, lay.px(40)), bold=True, anchor="midtop"
        )
        y = title.y + title.h + lay.px(28)
        for line in state.alarms:
            box = self.paint.blit_text(
                canvas, line, 30, (cx, y), bold=True, anchor="midtop", width=width
            )
            y += box.h + lay.px(12)
        self.paint.blit_text(
            canvas, "It goes away when the door station clears it.", 22,
            (cx, lay.height - lay.margin), color=MUTED_TEXT, anchor="midbottom", width=width,
        )  # fmt: skip

    def _blank(self, canvas: Canvas, state: UiState) -> None:
        """Nothing: the canvas stays black."""
