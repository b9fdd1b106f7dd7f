"""A full-screen notice: a title, reason lines and what to do about them, at any display size.

For states in which the call UI does not run, such as the daemon's safe state (a
configuration that cannot be used). ``NoticeScreen(width, height).render(notice)`` returns
a (height, width, 3) RGB frame for a ``Display``; ``arrange(notice)`` says where every line
goes (the rectangles ``render`` draws), so a caller knows which reasons fit. Reasons are
word-wrapped to the screen; those that do not fit become one "… and N more" line. The hint
(what to do) always gets its place at the bottom. Drawing uses the HAL's fonts
(``hal.canvas``): call it off the event loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from hal.canvas import Canvas, Font, Graphics, Pixels
from services.ui.layout import AMBER, Layout, Rect
from services.ui.paint import BACKGROUND, MUTED_TEXT, PANEL, WHITE, Painter
from services.ui.screens import AMBER_BG

TITLE_SIZE = 40
REASON_SIZE = 24
HINT_SIZE = 22
"""Font sizes at 800x480 (scaled with the display, like the call screens)..."""
MIN_TITLE_PX = 22
MIN_TEXT_PX = 16
"""... but never smaller than these pixel sizes: a 480x320 panel must stay readable."""


@dataclasses.dataclass(frozen=True)
class Notice:
    """What a notice says: a title, the reasons (one line each) and what to do (one line each)."""

    title: str
    lines: tuple[str, ...] = ()
    hint: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class NoticeRow:
    """One line of text on the notice and the rectangle it is drawn in.

    ``kind``: ``title``, ``reason``, ``more`` (the "… and N more" line) or ``hint``;
    ``reason``: the index in ``Notice.lines`` of a reason's row (wrapped reasons have several).
    """

    kind: str
    text: str
    rect: Rect
    reason: int | None = None
    size: float = 0
    """The font size at 800x480 it is drawn in."""


@dataclasses.dataclass(frozen=True)
class NoticeLayout:
    """Where everything of one notice goes on one screen."""

    title_bar: Rect
    hint_box: Rect | None
    rows: tuple[NoticeRow, ...]
    shown: int
    """How many reasons (the first ones) are on the screen, the last maybe cut short."""
    hidden: int
    """How many reasons the "… and N more" line stands for (0: every reason is shown)."""

    def rows_of(self, kind: str) -> list[NoticeRow]:
        """The rows of ``kind``, top to bottom."""
        return [row for row in self.rows if row.kind == kind]


class NoticeScreen:
    """Draws notices at one display size, with the call UI's fonts and colours."""

    def __init__(self, width: int, height: int, graphics: Graphics | None = None) -> None:
        """A notice renderer for a ``width`` x ``height`` display, drawing with ``graphics``.

        ``graphics`` None: the default back-end of ``hal.canvas``.
        """
        self.layout = Layout(width, height)
        self.paint = Painter(self.layout, graphics)
        scale = self.layout.scale
        self.title_size = max(TITLE_SIZE, MIN_TITLE_PX / scale)
        self.reason_size = max(REASON_SIZE, MIN_TEXT_PX / scale)
        self.hint_size = max(HINT_SIZE, MIN_TEXT_PX / scale)
        """Font sizes (at 800x480 points) of the title, the reasons and the hint."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.layout.width, self.layout.height

    def arrange(self, notice: Notice) -> NoticeLayout:
        """Where the title, the reasons that fit, "… and N more" and the hint go."""
        lay = self.layout
        margin = lay.px(24)
        bar = Rect(0, 0, lay.width, lay.px(76))
        title = _centred(self._title(notice.title, lay.width - 2 * margin, margin), bar)
        hint_rows, hint_box = self._hint(notice.hint, margin, bar.h)
        top = bar.h + lay.px(18)
        bottom = (hint_box.y if hint_box else lay.height) - lay.px(12)
        reasons, shown, hidden = self._reasons(notice.lines, margin, top, bottom)
        rows = (title, *reasons, *hint_rows)
        return NoticeLayout(bar, hint_box, rows, shown, hidden)

    def render(self, notice: Notice) -> Pixels:
        """A new (height, width, 3) RGB frame showing ``notice``."""
        arranged = self.arrange(notice)
        lay = self.layout
        canvas = self.paint.canvas()
        canvas.fill(BACKGROUND)
        canvas.fill(AMBER_BG, arranged.title_bar.as_tuple())
        stripe = lay.px(4)
        bar = arranged.title_bar
        canvas.fill(AMBER, (bar.x, bar.y + bar.h - stripe, bar.w, stripe))
        if arranged.hint_box is not None:
            canvas.rect(PANEL, arranged.hint_box.as_tuple(), lay.px(12))
        for row in arranged.rows:
            self._draw(canvas, row, arranged)
        return canvas.pixels

    # pieces -----------------------------------------------------------------------------------

    def _row(
        self,
        kind: str,
        text: str,
        base: float,
        x: int,
        y: int,
        width: int,
        reason: int | None = None,
    ) -> NoticeRow:
        """A row of ``text`` at (x, y), cut short with "…" when wider than ``width``."""
        font = self.paint.font(base, bold=kind == "title")
        text = _ellipsized(font, text, width)
        w, h = font.size(text)
        return NoticeRow(kind, text, Rect(x, y, w, h), reason, base)

    def _title(self, title: str, width: int, x: int) -> NoticeRow:
        """The title at its size, or smaller (down to the reasons' size) to fit ``width``."""
        size = self.title_size
        while size > self.reason_size and self.paint.font(size, bold=True).size(title)[0] > width:
            size -= 2
        return self._row("title", title, size, x, 0, width)

    def _hint(
        self, hint: Sequence[str], margin: int, bar_h: int
    ) -> tuple[list[NoticeRow], Rect | None]:
        """The hint's rows in a box at the bottom (at most half the space under the title)."""
        if not hint:
            return [], None
        lay = self.layout
        pad = lay.px(12)
        width = lay.width - 2 * margin - 2 * pad
        size = self.hint_size
        step = self.paint.font(size).line_height + lay.px(3)
        lines = [part for line in hint for part in self.paint.wrap(line, size, width)]
        fitting = max(1, ((lay.height - bar_h) // 2 - 2 * pad) // step)
        if len(lines) > fitting:
            lines = [*lines[: fitting - 1], lines[fitting - 1] + " …"]
        box_h = len(lines) * step - lay.px(3) + 2 * pad
        box = Rect(margin, lay.height - margin // 2 - box_h, lay.width - 2 * margin, box_h)
        rows = [
            self._row("hint", line, size, box.x + pad, box.y + pad + i * step, width)
            for i, line in enumerate(lines)
        ]
        return rows, box

    def _reasons(
        self, reasons: Sequence[str], margin: int, top: int, bottom: int
    ) -> tuple[list[NoticeRow], int, int]:
        """Rows of the reasons that fit between ``top`` and ``bottom``, then "… and N more"."""
        lay = self.layout
        x = margin + lay.px(24)  # room for the bullet
        width = lay.width - x - margin
        size = self.reason_size
        step, gap = self.paint.font(size).line_height, lay.px(6)
        placed = self._fit(reasons, width, bottom - top, step, gap)
        rows: list[NoticeRow] = []
        y = top
        for index, lines in enumerate(placed):
            for line in lines:
                rows.append(self._row("reason", line, size, x, y, width, reason=index))
                y += step
            y += gap
        hidden = len(reasons) - len(placed)
        if hidden:
            rows.append(self._row("more", f"… and {hidden} more", size, x, y, width))
        return rows, len(placed), hidden

    def _fit(
        self, reasons: Sequence[str], width: int, height: int, step: int, gap: int
    ) -> list[list[str]]:
        """The wrapped lines of the first reasons that fit ``height`` whole.

        Leaves room for "… and N more" when others follow; a first reason taller than that is cut
        short.
        """
        placed: list[list[str]] = []
        used = 0
        for index, reason in enumerate(reasons):
            lines = self.paint.wrap(reason, self.reason_size, width)
            more = gap + step if index < len(reasons) - 1 else 0
            if used + len(lines) * step + more <= height:
                placed.append(lines)
                used += len(lines) * step + gap
                continue
            if not placed:
                keep = max(1, (height - more) // step)
                if keep < len(lines):
                    lines = [*lines[: keep - 1], lines[keep - 1] + " …"]
                placed.append(lines)
            break
        return placed

    def _draw(self, canvas: Canvas, row: NoticeRow, arranged: NoticeLayout) -> None:
        color = MUTED_TEXT if row.kind == "more" else WHITE
        if row.kind == "reason" and _first_row_of_its_reason(row, arranged):
            lay = self.layout
            r = lay.px(5)
            centre = (row.rect.x - lay.px(14), row.rect.y + row.rect.h // 2)
            canvas.circle(AMBER, centre, r)
        self.paint.blit_text(
            canvas, row.text, row.size, (row.rect.x, row.rect.y), color=color,
            bold=row.kind == "title",
        )  # fmt: skip


def _first_row_of_its_reason(row: NoticeRow, arranged: NoticeLayout) -> bool:
    for other in arranged.rows:
        if other.reason == row.reason:
            return other is row
    return False


def _centred(row: NoticeRow, bar: Rect) -> NoticeRow:
    """``row`` moved to the vertical middle of ``bar``."""
    rect = Rect(row.rect.x, bar.y + (bar.h - row.rect.h) // 2, row.rect.w, row.rect.h)
    return dataclasses.replace(row, rect=rect)


def _ellipsized(font: Font, text: str, width: int) -> str:
    """``text``, or its beginning and "…" when it is wider than ``width``."""
    if font.size(text)[0] <= width:
        return text
    while len(text) > 1 and font.size(text + "…")[0] > width:
        text = text[:-1]
    return text.rstrip() + "…"


def render_notice(
    size: tuple[int, int], title: str, lines: Sequence[str] = (), hint: Sequence[str] = ()
) -> Pixels:
    """A (height, width, 3) RGB frame of ``size`` (width, height) showing a notice."""
    return NoticeScreen(*size).render(Notice(title, tuple(lines), tuple(hint)))
