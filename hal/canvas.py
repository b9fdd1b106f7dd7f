"""Offscreen drawing for screens: the ``Canvas`` the call UI draws on, its fonts and images.

The call UI (``services.ui``) draws every screen into an RGB frame for a ``Display``; it
does so only through these interfaces, so the drawing library stays a HAL back-end that
services/ never imports. A ``Graphics`` back-end makes canvases and fonts:

- ``Canvas``: a (height, width, 3) RGB frame (``pixels``) with the shapes the screens are
  made of (fills, rounded rectangles, discs, a darkening veil), images blitted onto it and
  video pixels copied into it;
- ``Font``: measures text (``size``, ``line_height``) and renders it into an ``Image``
  (antialiased, transparent background) that any canvas of the same back-end blits.

``load_graphics("pygame")`` is pygame-ce drawing offscreen (no display needed); the
back-end module and pygame itself are imported only when it is loaded. Rectangles are
``(x, y, width, height)`` tuples, points ``(x, y)``, colours ``(r, g, b)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from hal.errors import HalError

Rgb = tuple[int, int, int]
Point = tuple[int, int]
Box = tuple[int, int, int, int]
"""(x, y, width, height) in pixels."""
Pixels = npt.NDArray[np.uint8]
"""RGB pixels of shape (height, width, 3)."""


class Image(Protocol):
    """Pixels drawn once (rendered text) and blitted onto canvases of the same back-end."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        ...


class Font(Protocol):
    """A typeface at one pixel size: measures and renders single lines of text."""

    def size(self, text: str) -> tuple[int, int]:
        """(width, height) in pixels of ``text`` in this font, as pygame measures it.

        The width of its rendered image; the height of the font's line box, which the image may
        exceed by a pixel or two.
        """
        ...

    @property
    def line_height(self) -> int:
        """The distance in pixels from one line of text to the next."""
        ...

    def render(self, text: str, color: Rgb) -> Image:
        """``text`` in ``color``, antialiased, on a transparent background."""
        ...


class Canvas(Protocol):
    """An RGB frame in memory that screens are drawn on (starts black)."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        ...

    @property
    def pixels(self) -> Pixels:
        """The frame drawn so far: the (height, width, 3) RGB array itself, not a copy."""
        ...

    def fill(self, color: Rgb, box: Box | None = None) -> None:
        """Paint ``box`` (the whole canvas when None) in ``color``."""
        ...

    def rect(self, color: Rgb, box: Box, radius: int = 0) -> None:
        """A filled rectangle, its corners rounded with ``radius`` pixels (0: square)."""
        ...

    def circle(self, color: Rgb, center: Point, radius: int) -> None:
        """A filled disc."""
        ...

    def shade(self, box: Box, alpha: int) -> None:
        """Darken ``box``: black laid over it with opacity ``alpha`` (0..255)."""
        ...

    def blit(self, image: Image, pos: Point) -> None:
        """Draw ``image`` with its top-left corner at ``pos`` (blended, clipped)."""
        ...

    def put_pixels(self, pixels: Pixels, pos: Point) -> None:
        """Copy RGB ``pixels`` (a video frame) with their top-left corner at ``pos``, clipped."""
        ...


class Graphics(Protocol):
    """A drawing back-end: makes canvases and fonts that work together."""

    def canvas(self, width: int, height: int) -> Canvas:
        """A new black ``width`` x ``height`` canvas."""
        ...

    def font(self, px: int, bold: bool = False) -> Font:
        """The default typeface at ``px`` pixels, bold or regular."""
        ...


def _pygame() -> Graphics:
    from hal.pygame_canvas import PygameGraphics

    return PygameGraphics()


GRAPHICS: dict[str, Callable[[], Graphics]] = {"pygame": _pygame}
"""Drawing back-ends by name; each is imported when it is loaded."""


def load_graphics(name: str = "pygame") -> Graphics:
    """The drawing back-end ``name``.

    HalError naming the known ones when it is unknown; DeviceUnavailableError when its library is
    missing.
    """
    try:
        factory = GRAPHICS[name]
    except KeyError:
        known = ", ".join(sorted(GRAPHICS))
        raise HalError(f"unknown graphics back-end {name!r} (known: {known})") from None
    return factory()


def put_pixels(frame: Pixels, pixels: Pixels, pos: Point) -> None:
    """Copy ``pixels`` into ``frame`` with their top-left corner at ``pos``, clipped to it.

    The copy every back-end whose canvas is a numpy array can use for ``put_pixels``.
    """
    height, width = frame.shape[:2]
    x, y = pos
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + pixels.shape[1], width), min(y + pixels.shape[0], height)
    if x1 > x0 and y1 > y0:
        frame[y0:y1, x0:x1] = pixels[y0 - y : y1 - y, x0 - x : x1 - x]
