"""The full-screen notice (services.ui.notice): drawn offscreen at the panel sizes callbox supports.

Checked where a person would look: light text pixels in the title bar, in each reason's rows and in
the hint box, and nothing of a reason where it is not drawn.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.ui import Layout, Notice, NoticeLayout, NoticeScreen, Rect, render_notice
from services.ui.paint import Painter, Pixels

SIZES = [(800, 480), (1280, 720), (480, 320)]
TITLE = "Configuration problem — calls are off"
REASONS = (
    "/etc/callbox/callbox.toml: typo: unknown key",
    "/etc/callbox/callbox.toml: relay.pin: 'GPIO99' is not on the header: GPIO numbers are "
    "0 to 27, and BOARD pins 3 to 40",
)
HINT = (
    "Fix it over SSH: ssh anna@flat-1.local, then sudo callbox config edit",
    "This unit: flat-1.local (192.0.2.7)",
)


def light_pixels(frame: Pixels, rect: Rect) -> int:
    """Pixels of ``rect`` bright in every channel: text (the backgrounds are all dark)."""
    area = frame[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w]
    return int((area.min(axis=2) >= 150).sum())


def inside(rect: Rect, box: Rect) -> bool:
    return (
        box.x <= rect.x
        and box.y <= rect.y
        and rect.x + rect.w <= box.x + box.w
        and rect.y + rect.h <= box.y + box.h
    )


def overlap(a: Rect, b: Rect) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


def reasons_drawn(frame: Pixels, arranged: NoticeLayout, count: int) -> int:
    """How many of the first ``count`` reasons have text in every one of their rows."""
    drawn = 0
    for index in range(count):
        rows = [row for row in arranged.rows_of("reason") if row.reason == index]
        if rows and all(light_pixels(frame, row.rect) > 20 for row in rows):
            drawn += 1
    return drawn


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_title_every_reason_and_the_hint_are_drawn_where_arranged(
    size: tuple[int, int],
) -> None:
    width, height = size
    screen = NoticeScreen(width, height)
    notice = Notice(TITLE, REASONS, HINT)
    frame = screen.render(notice)
    assert frame.shape == (height, width, 3) and frame.dtype == np.uint8
    arranged = screen.arrange(notice)

    (title,) = arranged.rows_of("title")
    assert title.text == TITLE, "the title fits whole (smaller on a small panel)"
    assert inside(title.rect, arranged.title_bar)
    assert light_pixels(frame, title.rect) > 200
    assert (arranged.shown, arranged.hidden) == (2, 0)
    assert not arranged.rows_of("more")
    assert reasons_drawn(frame, arranged, len(REASONS)) == len(REASONS)
    assert arranged.hint_box is not None
    for row in arranged.rows_of("hint"):
        assert inside(row.rect, arranged.hint_box)
        assert light_pixels(frame, row.rect) > 20
    screen_rect = Rect(0, 0, width, height)
    rows = arranged.rows
    for i, row in enumerate(rows):
        assert inside(row.rect, screen_rect), f"{row} leaves the screen"
        assert not any(overlap(row.rect, other.rect) for other in rows[i + 1 :]), row

    without_second = screen.render(Notice(TITLE, REASONS[:1], HINT))
    for row in arranged.rows_of("reason"):
        if row.reason == 1:
            assert light_pixels(without_second, row.rect) == 0, "that text is the second reason"


def test_text_is_never_smaller_than_16_pixels_on_a_480x320_panel() -> None:
    screen = NoticeScreen(480, 320)
    arranged = screen.arrange(Notice(TITLE, REASONS, HINT))
    for row in arranged.rows:
        assert screen.layout.font_px(row.size) >= 16, row


def test_a_long_reason_wraps_between_words_within_the_screen() -> None:
    screen = NoticeScreen(480, 320)
    arranged = screen.arrange(Notice(TITLE, REASONS[1:], HINT))
    rows = arranged.rows_of("reason")
    assert len(rows) >= 2, "the relay reason is wider than a 480 pixel screen"
    assert " ".join(row.text for row in rows) == REASONS[1]
    assert all(row.rect.x + row.rect.w <= 480 - screen.layout.px(24) for row in rows)
    assert rows[0].rect.x == rows[1].rect.x, "continuation rows line up under the first"


def test_many_reasons_end_with_and_n_more_above_the_hint() -> None:
    reasons = tuple(f"/etc/callbox/callbox.toml: key{i}: unknown key" for i in range(15))
    screen = NoticeScreen(480, 320)
    notice = Notice(TITLE, reasons, HINT)
    frame = screen.render(notice)
    arranged = screen.arrange(notice)

    assert 0 < arranged.shown < len(reasons)
    assert arranged.shown + arranged.hidden == len(reasons)
    (more,) = arranged.rows_of("more")
    assert more.text == f"… and {arranged.hidden} more"
    assert light_pixels(frame, more.rect) > 20
    shown = [row.text for row in arranged.rows_of("reason")]
    assert shown == list(reasons[: arranged.shown]), "the first reasons, in order"
    assert reasons_drawn(frame, arranged, arranged.shown) == arranged.shown
    assert arranged.hint_box is not None
    assert more.rect.y + more.rect.h <= arranged.hint_box.y, "the hint stays visible"


def test_a_reason_taller_than_the_screen_is_cut_short() -> None:
    reason = "/etc/callbox/callbox.toml: contacts: " + "far too many words " * 200
    screen = NoticeScreen(480, 320)
    arranged = screen.arrange(Notice(TITLE, (reason, "and a second one"), HINT))
    rows = arranged.rows_of("reason")
    assert (arranged.shown, arranged.hidden) == (1, 1)
    assert rows[-1].text.endswith("…")
    assert arranged.rows_of("more")[0].text == "… and 1 more"
    assert arranged.hint_box is not None
    above_hint = [*rows, *arranged.rows_of("more")]
    assert all(row.rect.y + row.rect.h <= arranged.hint_box.y for row in above_hint)


def test_a_word_wider_than_a_line_is_broken_inside() -> None:
    painter = NoticeScreen(480, 320).paint
    path = "/var/lib/" + "very-long-directory-name/" * 6 + "callbox.toml:"
    lines = painter.wrap(f"{path} unreadable", 24, 300)
    assert len(lines) >= 3
    assert all(painter.font(24).size(line)[0] <= 300 for line in lines)
    assert "".join(lines).replace(" ", "") == f"{path}unreadable"


def test_wrap_keeps_short_text_on_one_line() -> None:
    painter = Painter(Layout(800, 480))
    assert painter.wrap("calls are off", 24, 700) == ["calls are off"]
    assert painter.wrap("", 24, 700) == [""]


def test_render_notice_is_the_screen_of_one_call() -> None:
    frame = render_notice((800, 480), TITLE, list(REASONS), list(HINT))
    again = NoticeScreen(800, 480).render(Notice(TITLE, REASONS, HINT))
    assert np.array_equal(frame, again)
