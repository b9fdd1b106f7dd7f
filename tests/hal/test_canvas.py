"""hal.canvas: the drawing interface of the call UI and its pygame-ce back-end.

Checked on the RGB frame a canvas hands out; importing the interface or the UI loads no drawing
library.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hal.canvas import Canvas, Graphics, load_graphics, put_pixels
from hal.errors import HalError
from hal.pygame_canvas import PygameGraphics

RED = (200, 48, 48)
WHITE = (255, 255, 255)


@pytest.fixture
def graphics() -> Graphics:
    return load_graphics("pygame")


def test_a_new_canvas_is_black_and_its_pixels_are_the_frame(graphics: Graphics) -> None:
    canvas = graphics.canvas(64, 48)
    assert canvas.size == (64, 48)
    assert canvas.pixels.shape == (48, 64, 3) and canvas.pixels.dtype == np.uint8
    assert not canvas.pixels.any()
    canvas.fill(RED)
    assert (canvas.pixels == RED).all(), "drawing lands in the array handed out"


def test_fill_rect_and_circle_paint_only_their_area(graphics: Graphics) -> None:
    canvas = graphics.canvas(100, 80)
    canvas.fill(WHITE, (10, 20, 30, 5))
    frame = canvas.pixels
    assert (frame[20:25, 10:40] == WHITE).all()
    assert int(frame.any(axis=2).sum()) == 30 * 5
    canvas.rect(RED, (50, 40, 40, 30), radius=10)
    assert (frame[55, 70] == RED).all(), "the middle of the rectangle"
    assert not frame[40, 50].any(), "a rounded corner stays black"
    canvas.circle(RED, (20, 60), 8)
    assert (frame[60, 20] == RED).all() and not frame[52, 12].any()


def test_shade_darkens_by_its_alpha(graphics: Graphics) -> None:
    canvas = graphics.canvas(20, 20)
    canvas.fill(WHITE)
    canvas.shade((0, 0, 10, 20), 128)
    frame = canvas.pixels
    assert 120 <= int(frame[5, 5, 0]) <= 135, "half-way to black"
    assert (frame[5, 15] == WHITE).all(), "outside the box: untouched"


def test_text_is_measured_and_drawn_at_its_size(graphics: Graphics) -> None:
    font = graphics.font(24)
    width, height = font.size("Front door")
    assert width > font.size("Front")[0] > 0 and height > 0
    assert font.line_height >= height - 2
    assert graphics.font(24, bold=True).size("Front door")[0] >= width
    image = font.render("Front door", WHITE)
    assert image.size[0] == width and height <= image.size[1] <= height + 4, "see Font.size"
    canvas = graphics.canvas(200, 60)
    canvas.blit(image, (10, 10))
    lit = np.argwhere(canvas.pixels.min(axis=2) > 150)
    assert len(lit) > 50
    (top, left), (bottom, right) = lit.min(axis=0), lit.max(axis=0)
    assert 10 <= left <= right < 10 + width and 10 <= top <= bottom < 10 + height


def test_put_pixels_copies_and_clips(graphics: Graphics) -> None:
    canvas = graphics.canvas(10, 8)
    block = np.full((4, 6, 3), 7, np.uint8)
    canvas.put_pixels(block, (7, -2))
    frame = canvas.pixels
    assert (frame[0:2, 7:10] == 7).all()
    assert int((frame == 7).all(axis=2).sum()) == 2 * 3, "only the part on the canvas"
    canvas.put_pixels(block, (20, 20))  # entirely outside: nothing, no error
    assert int((frame == 7).all(axis=2).sum()) == 6


def test_put_pixels_of_a_plain_array() -> None:
    frame = np.zeros((4, 4, 3), np.uint8)
    put_pixels(frame, np.ones((2, 2, 3), np.uint8), (-1, 3))
    assert frame[3, 0].all() and int(frame.any(axis=2).sum()) == 1


def test_fail__an_unknown_back_end_or_a_foreign_image() -> None:
    with pytest.raises(HalError, match=r"unknown graphics back-end 'cairo' \(known: pygame\)"):
        load_graphics("cairo")

    class Foreign:
        size = (1, 1)

    canvas: Canvas = PygameGraphics().canvas(4, 4)
    with pytest.raises(HalError, match="cannot draw a Foreign"):
        canvas.blit(Foreign(), (0, 0))


def test_the_interface_and_the_call_ui_import_no_drawing_library() -> None:
    code = (
        "import sys, hal.canvas, hal.pygame_canvas, services.ui, services.ui.paint\n"
        "assert 'pygame' not in sys.modules, 'pygame was imported'\n"
        "hal.canvas.load_graphics()\n"
        "assert 'pygame' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
