"""Drawing helpers on a HAL ``Canvas``: cached text, chips, buttons, initials, video.

Screens are drawn offscreen through ``hal.canvas`` (fills, rounded rectangles, discs, text
images, pixels copied in); the drawing library is the HAL back-end's business, nothing here
needs a display. Video frames become RGB arrays at their target size through PyAV's
reformatter (swscale), one reformatter kept per use so swscale's context is reused.
Everything runs in the UI's render thread.
"""

from __future__ import annotations

import collections
from typing import cast

from av import VideoFrame
from av.video.reformatter import Interpolation, VideoReformatter

from hal.canvas import Canvas, Font, Graphics, Image, Rgb, load_graphics
from hal.canvas import Pixels as Pixels  # re-exported: the frames the screens return
from services.ui.layout import ButtonStyle, Layout, Rect

WHITE: Rgb = (255, 255, 255)
MUTED_TEXT: Rgb = (190, 196, 210)
BACKGROUND: Rgb = (18, 24, 38)
PANEL: Rgb = (30, 38, 58)
TEXT_CACHE_SIZE = 256
ANCHORS: dict[str, tuple[int, int]] = {
    "topleft": (0, 0), "midtop": (1, 0), "topright": (2, 0),
    "midleft": (0, 1), "center": (1, 1), "midright": (2, 1),
    "bottomleft": (0, 2), "midbottom": (1, 2), "bottomright": (2, 2),
}  # fmt: skip
"""The points of a box ``Painter.blit_text`` can put at a position: name -> (column, row),
0 the left/top edge, 1 the middle, 2 the right/bottom edge (pygame's Rect names)."""


def anchored(size: tuple[int, int], anchor: str, pos: tuple[int, int]) -> Rect:
    """The box of ``size`` (w, h) whose point ``anchor`` ("midtop", "center", …) is ``pos``."""
    try:
        column, row = ANCHORS[anchor]
    except KeyError:
        raise ValueError(f"unknown anchor {anchor!r}") from None
    w, h = size
    x = pos[0] - (0, w // 2, w)[column]
    y = pos[1] - (0, h // 2, h)[row]
    return Rect(x, y, w, h)


class Painter:
    """Fonts, a text cache and the drawing helpers of one layout."""

    def __init__(self, layout: Layout, graphics: Graphics | None = None) -> None:
        """Helpers for ``layout``, drawing with ``graphics`` (None: the default back-end)."""
        self.layout = layout
        self.graphics = graphics if graphics is not None else load_graphics()
        self._fonts: dict[tuple[int, bool], Font] = {}
        self._texts: collections.OrderedDict[tuple[str, int, Rgb, bool], Image] = (
            collections.OrderedDict()
        )

    def canvas(self) -> Canvas:
        """A new black canvas of the layout's size."""
        return self.graphics.canvas(self.layout.width, self.layout.height)

    def font(self, base_size: float, bold: bool = False) -> Font:
        """The default font at ``base_size`` (800x480 points), scaled."""
        size = self.layout.font_px(base_size)
        font = self._fonts.get((size, bold))
        if font is None:
            font = self.graphics.font(size, bold)
            self._fonts[(size, bold)] = font
        return font

    def text(self, text: str, base_size: float, color: Rgb = WHITE, bold: bool = False) -> Image:
        """``text`` rendered (antialiased, transparent background), cached."""
        key = (text, self.layout.font_px(base_size), color, bold)
        image = self._texts.get(key)
        if image is None:
            image = self.font(base_size, bold).render(text, color)
            self._texts[key] = image
            if len(self._texts) > TEXT_CACHE_SIZE:
                self._texts.popitem(last=False)
        else:
            self._texts.move_to_end(key)
        return image

    def fit_text(
        self, text: str, base_size: float, width: int, color: Rgb = WHITE, bold: bool = False
    ) -> Image:
        """``text`` at ``base_size`` or smaller, shortened with "..." to fit ``width``."""
        size = base_size
        while size > 12 and self.font(size, bold).size(text)[0] > width:
            size -= 2
        while len(text) > 1 and self.font(size, bold).size(text)[0] > width:
            text = text.removesuffix("…")[:-1] + "…"
        return self.text(text, size, color, bold)

    def wrap(self, text: str, base_size: float, width: int, bold: bool = False) -> list[str]:
        """``text`` as lines of at most ``width`` pixels at ``base_size``.

        Broken between words, inside a word only when it is wider than a whole line (a long path).
        """
        font = self.font(base_size, bold)
        lines: list[str] = []
        for paragraph in text.splitlines() or [""]:
            line = ""
            for word in paragraph.split():
                candidate = f"{line} {word}" if line else word
                if font.size(candidate)[0] <= width:
                    line = candidate
                    continue
                if line:
                    lines.append(line)
                line = word
                while len(line) > 1 and font.size(line)[0] > width:
                    cut = _fitting_prefix(font, line, width)
                    lines.append(line[:cut])
                    line = line[cut:]
            lines.append(line)
        return lines

    def blit_text(
        self,
        target: Canvas,
        text: str,
        base_size: float,
        pos: tuple[int, int],
        *,
        color: Rgb = WHITE,
        bold: bool = False,
        anchor: str = "topleft",
        width: int | None = None,
    ) -> Rect:
        """Draw ``text`` with its ``anchor`` (see ``anchored``) at ``pos``; its box."""
        if width is not None:
            image = self.fit_text(text, base_size, width, color, bold)
        else:
            image = self.text(text, base_size, color, bold)
        box = anchored(image.size, anchor, pos)
        target.blit(image, (box.x, box.y))
        return box

    def shade(self, target: Canvas, rect: Rect, alpha: int = 150) -> None:
        """Darken ``rect`` of ``target`` (text over video stays readable)."""
        target.shade(rect.as_tuple(), alpha)

    def button(self, target: Canvas, rect: Rect, style: ButtonStyle) -> None:
        """A rounded button with its title and, below it, what it does."""
        radius = self.layout.px(14)
        target.rect(style.color, rect.as_tuple(), radius)
        cx, cy = rect.center
        if style.subtitle:
            self.blit_text(
                target, style.title, 30, (cx, cy - self.layout.px(2)), bold=True,
                anchor="midbottom", width=rect.w - self.layout.px(12),
            )  # fmt: skip
            self.blit_text(
                target, style.subtitle, 20, (cx, cy + self.layout.px(4)), color=(235, 238, 245),
                anchor="midtop", width=rect.w - self.layout.px(12),
            )  # fmt: skip
        else:
            self.blit_text(target, style.title, 30, (cx, cy), bold=True, anchor="center")

    def chip(self, target: Canvas, text: str, pos: tuple[int, int], color: Rgb) -> Rect:
        """A small rounded label (a state: "Muted", "Handset", "Door opened"); its rect."""
        image = self.text(text, 22, WHITE, True)
        pad = self.layout.px(8)
        width, height = image.size
        box = Rect(pos[0], pos[1], width + 2 * pad, height + pad)
        target.rect(color, box.as_tuple(), box.h // 2)
        target.blit(image, (box.x + pad, box.y + pad // 2))
        return box

    def initials(self, target: Canvas, letters: str, center: tuple[int, int], r: int) -> None:
        """A disc with someone's initials (the caller's picture when there is no video)."""
        target.circle((70, 90, 140), center, r)
        size = r * 0.9 / self.layout.scale
        self.blit_text(target, letters, size, center, bold=True, anchor="center")


def _fitting_prefix(font: Font, text: str, width: int) -> int:
    """How many leading characters of ``text`` fit ``width`` (at least 1)."""
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if font.size(text[:middle])[0] <= width:
            low = middle
        else:
            high = middle - 1
    return low


class FrameConverter:
    """Converts video frames to RGB arrays of a given size with swscale (one context kept)."""

    def __init__(self) -> None:
        """A converter with its own reformatter."""
        self._reformatter = VideoReformatter()

    def rgb(self, frame: VideoFrame, width: int, height: int) -> Pixels:
        """``frame`` scaled to ``width`` x ``height``, as an (h, w, 3) RGB array."""
        out = self._reformatter.reformat(
            frame, width=width, height=height, format="rgb24", interpolation=Interpolation.BILINEAR
        )
        return cast(Pixels, out.to_ndarray())
