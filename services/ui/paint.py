"""Drawing primitives on pygame Surfaces: cached text, chips, buttons, initials, video.

pygame-ce renders offscreen here: Surfaces in memory, ``pygame.font`` for text, nothing
that needs a display (no ``pygame.display`` call). Video frames become RGB arrays at
their target size through PyAV's reformatter (swscale), one reformatter kept per use so
swscale's context is reused. Everything runs in the UI's render thread.
"""

from __future__ import annotations

import collections
import os
from typing import cast

import numpy as np
import numpy.typing as npt
from av import VideoFrame
from av.video.reformatter import Interpolation, VideoReformatter

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # before the first pygame import

import pygame

from services.ui.layout import ButtonStyle, Layout, Rect

Rgb = tuple[int, int, int]
Pixels = npt.NDArray[np.uint8]

WHITE: Rgb = (255, 255, 255)
MUTED_TEXT: Rgb = (190, 196, 210)
BACKGROUND: Rgb = (18, 24, 38)
PANEL: Rgb = (30, 38, 58)
TEXT_CACHE_SIZE = 256


class Painter:
    """Fonts, a text cache and the drawing helpers of one layout."""

    def __init__(self, layout: Layout) -> None:
        """Helpers for ``layout``; initialises ``pygame.font`` (no display needed)."""
        if not pygame.font.get_init():
            pygame.font.init()
        self.layout = layout
        self._fonts: dict[tuple[int, bool], pygame.font.Font] = {}
        self._texts: collections.OrderedDict[tuple[str, int, Rgb, bool], pygame.Surface] = (
            collections.OrderedDict()
        )
        self._shades: dict[tuple[int, int, int], pygame.Surface] = {}

    def font(self, base_size: float, bold: bool = False) -> pygame.font.Font:
        """The default font at ``base_size`` (800x480 points), scaled."""
        size = self.layout.font_px(base_size)
        font = self._fonts.get((size, bold))
        if font is None:
            font = pygame.font.Font(None, size)
            font.bold = bold
            self._fonts[(size, bold)] = font
        return font

    def text(
        self, text: str, base_size: float, color: Rgb = WHITE, bold: bool = False
    ) -> pygame.Surface:
        """``text`` rendered (antialiased, transparent background), cached."""
        key = (text, self.layout.font_px(base_size), color, bold)
        surface = self._texts.get(key)
        if surface is None:
            surface = self.font(base_size, bold).render(text, True, color)
            self._texts[key] = surface
            if len(self._texts) > TEXT_CACHE_SIZE:
                self._texts.popitem(last=False)
        else:
            self._texts.move_to_end(key)
        return surface

    def fit_text(
        self, text: str, base_size: float, width: int, color: Rgb = WHITE, bold: bool = False
    ) -> pygame.Surface:
        """``text`` at ``base_size`` or smaller, shortened with "..." to fit ``width``."""
        size = base_size
        while size > 12 and self.font(size, bold).size(text)[0] > width:
            size -= 2
        while len(text) > 1 and self.font(size, bold).size(text)[0] > width:
            text = text.removesuffix("…")[:-1] + "…"
        return self.text(text, size, color, bold)

    def wrap(self, text: str, base_size: float, width: int, bold: bool = False) -> list[str]:
        """``text`` as lines of at most ``width`` pixels at ``base_size``: broken between
        words, inside a word only when it is wider than a whole line (a long path)."""
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
        target: pygame.Surface,
        text: str,
        base_size: float,
        pos: tuple[int, int],
        *,
        color: Rgb = WHITE,
        bold: bool = False,
        anchor: str = "topleft",
        width: int | None = None,
    ) -> Rect:
        """Draw ``text`` with its ``anchor`` (a pygame Rect attribute) at ``pos``."""
        if width is not None:
            image = self.fit_text(text, base_size, width, color, bold)
        else:
            image = self.text(text, base_size, color, bold)
        box = image.get_rect(**{anchor: pos})
        target.blit(image, box)
        return Rect(box.x, box.y, box.w, box.h)

    def shade(self, target: pygame.Surface, rect: Rect, alpha: int = 150) -> None:
        """Darken ``rect`` of ``target`` (text over video stays readable)."""
        key = (rect.w, rect.h, alpha)
        veil = self._shades.get(key)
        if veil is None:
            veil = pygame.Surface((rect.w, rect.h), pygame.SRCALPHA)
            veil.fill((0, 0, 0, alpha))
            self._shades[key] = veil
        target.blit(veil, (rect.x, rect.y))

    def button(self, target: pygame.Surface, rect: Rect, style: ButtonStyle) -> None:
        """A rounded button with its title and, below it, what it does."""
        radius = self.layout.px(14)
        pygame.draw.rect(target, style.color, rect.as_tuple(), border_radius=radius)
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

    def chip(self, target: pygame.Surface, text: str, pos: tuple[int, int], color: Rgb) -> Rect:
        """A small rounded label (a state: "Muted", "Handset", "Door opened"); its rect."""
        image = self.text(text, 22, WHITE, True)
        pad = self.layout.px(8)
        box = Rect(pos[0], pos[1], image.get_width() + 2 * pad, image.get_height() + pad)
        pygame.draw.rect(target, color, box.as_tuple(), border_radius=box.h // 2)
        target.blit(image, (box.x + pad, box.y + pad // 2))
        return box

    def initials(
        self, target: pygame.Surface, letters: str, center: tuple[int, int], r: int
    ) -> None:
        """A disc with someone's initials (the caller's picture when there is no video)."""
        pygame.draw.circle(target, (70, 90, 140), center, r)
        size = r * 0.9 / self.layout.scale
        self.blit_text(target, letters, size, center, bold=True, anchor="center")


def _fitting_prefix(font: pygame.font.Font, text: str, width: int) -> int:
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


def put_pixels(canvas: Pixels, pixels: Pixels, rect: Rect) -> None:
    """Copy ``pixels`` into ``canvas`` at ``rect`` (clipped to the canvas)."""
    height, width = canvas.shape[:2]
    x0, y0 = max(rect.x, 0), max(rect.y, 0)
    x1, y1 = min(rect.x + pixels.shape[1], width), min(rect.y + pixels.shape[0], height)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = pixels[y0 - rect.y : y1 - rect.y, x0 - rect.x : x1 - rect.x]


def surface_of(canvas: Pixels) -> pygame.Surface:
    """A Surface drawing straight into ``canvas`` (an (h, w, 3) contiguous RGB array)."""
    height, width = canvas.shape[:2]
    return pygame.image.frombuffer(canvas.data, (width, height), "RGB")
