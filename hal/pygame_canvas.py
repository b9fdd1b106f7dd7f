"""The pygame-ce drawing back-end of ``hal.canvas``: offscreen Surfaces and pygame's fonts.

Nothing here needs a display (no ``pygame.display`` call): a canvas is a numpy RGB array
with a Surface drawing straight into its memory, text comes from ``pygame.font``'s default
typeface. pygame is imported when ``PygameGraphics`` is made (DeviceUnavailableError when
it is missing), never when this module is. Use one ``PygameGraphics`` from one thread at a
time (the UI's render thread); it keeps the veils ``Canvas.shade`` lays, per size.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from hal.canvas import Box, Image, Pixels, Point, Rgb, put_pixels
from hal.errors import DeviceUnavailableError, HalError

if TYPE_CHECKING:
    import pygame


class PygameImage:
    """A rendered piece of text: a Surface with per-pixel alpha."""

    def __init__(self, surface: pygame.Surface) -> None:
        """Wrap ``surface``."""
        self.surface = surface

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.surface.get_size()


class PygameFont:
    """``pygame.font.Font`` behind the ``hal.canvas.Font`` interface."""

    def __init__(self, font: pygame.font.Font) -> None:
        """Wrap ``font``."""
        self._font = font

    def size(self, text: str) -> tuple[int, int]:
        """(width, height) in pixels of ``text`` in this font."""
        return self._font.size(text)

    @property
    def line_height(self) -> int:
        """The line spacing pygame recommends for this font."""
        return self._font.get_linesize()

    def render(self, text: str, color: Rgb) -> PygameImage:
        """``text`` antialiased on a transparent background."""
        return PygameImage(self._font.render(text, True, color))


class PygameCanvas:
    """A black RGB frame with a Surface drawing into its memory (``pixels`` is the frame)."""

    def __init__(self, graphics: PygameGraphics, width: int, height: int) -> None:
        """A ``width`` x ``height`` canvas of ``graphics`` (which keeps its veils)."""
        import pygame

        self._graphics = graphics
        self._pixels: Pixels = np.zeros((height, width, 3), np.uint8)
        self._surface = pygame.image.frombuffer(self._pixels.data, (width, height), "RGB")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self._surface.get_size()

    @property
    def pixels(self) -> Pixels:
        """The frame itself: what was drawn so far."""
        return self._pixels

    def fill(self, color: Rgb, box: Box | None = None) -> None:
        """Paint ``box`` (all of the canvas when None) in ``color``."""
        self._surface.fill(color, box)

    def rect(self, color: Rgb, box: Box, radius: int = 0) -> None:
        """A filled rectangle with corners rounded by ``radius`` pixels."""
        import pygame

        pygame.draw.rect(self._surface, color, box, border_radius=radius)

    def circle(self, color: Rgb, center: Point, radius: int) -> None:
        """A filled disc."""
        import pygame

        pygame.draw.circle(self._surface, color, center, radius)

    def shade(self, box: Box, alpha: int) -> None:
        """Blit a black veil of opacity ``alpha`` over ``box``."""
        x, y, w, h = box
        self._surface.blit(self._graphics.veil(w, h, alpha), (x, y))

    def blit(self, image: Image, pos: Point) -> None:
        """Draw ``image`` (made by this back-end's fonts) at ``pos``."""
        if not isinstance(image, PygameImage):
            raise HalError(f"a pygame canvas cannot draw a {type(image).__name__}")
        self._surface.blit(image.surface, pos)

    def put_pixels(self, pixels: Pixels, pos: Point) -> None:
        """Copy ``pixels`` into the frame at ``pos`` (clipped)."""
        put_pixels(self._pixels, pixels, pos)


class PygameGraphics:
    """Makes pygame canvases and fonts; initialises ``pygame.font`` (no display needed)."""

    def __init__(self) -> None:
        """Import pygame and initialise its fonts (DeviceUnavailableError when it cannot)."""
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # before the first import
        try:
            import pygame
        except ImportError as err:
            raise DeviceUnavailableError(f"pygame-ce is not installed: {err}") from err
        if not pygame.font.get_init():
            pygame.font.init()
        self._veils: dict[tuple[int, int, int], pygame.Surface] = {}

    def canvas(self, width: int, height: int) -> PygameCanvas:
        """A new black ``width`` x ``height`` canvas."""
        return PygameCanvas(self, width, height)

    def font(self, px: int, bold: bool = False) -> PygameFont:
        """The default pygame typeface at ``px`` pixels (``bold``: pygame's synthetic bold)."""
        import pygame

        font = pygame.font.Font(None, px)
        font.bold = bold
        return PygameFont(font)

    def veil(self, width: int, height: int, alpha: int) -> pygame.Surface:
        """A ``width`` x ``height`` black Surface of opacity ``alpha``, made once per size."""
        import pygame

        key = (width, height, alpha)
        veil = self._veils.get(key)
        if veil is None:
            veil = pygame.Surface((width, height), pygame.SRCALPHA)
            veil.fill((0, 0, 0, alpha))
            self._veils[key] = veil
        return veil
