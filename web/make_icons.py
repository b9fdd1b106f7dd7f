"""Draw the phone page's icons (web/icons/*.png): a white door on the callbox green.

Run from the repository root after changing the drawing: ``python3 web/make_icons.py``. The
PNGs it writes are committed (the page's build does not need Python). Standard library only:
the shapes are sampled 4 x 4 per pixel (antialiased edges) and written with zlib.

- ``icon-192.png``, ``icon-512.png`` (purpose "any"): a rounded square on a transparent ground.
- ``icon-maskable-512.png`` (purpose "maskable"): the ground fills the square and the door
  stays inside the central circle of 40 % radius that every mask keeps (the "safe zone").
- ``apple-touch-icon.png`` (180 px): opaque, full square; iOS rounds the corners itself.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

GROUND = (0x1F, 0x6F, 0x5C)
DOOR = (0xFF, 0xFF, 0xFF)
KNOB = (0x1F, 0x6F, 0x5C)
SAMPLES = 4


def _inside_rounded(
    x: float, y: float, left: float, top: float, right: float, bottom: float, r: float
) -> bool:
    """True when (x, y) lies in the rectangle with corners rounded by radius `r`."""
    if not (left <= x <= right and top <= y <= bottom):
        return False
    cx = min(max(x, left + r), right - r)
    cy = min(max(y, top + r), bottom - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def _colour_at(x: float, y: float, maskable: bool, opaque: bool) -> tuple[int, int, int, int]:
    """The colour of the unit square's point (x, y) in [0, 1]²."""
    ground = maskable or opaque or _inside_rounded(x, y, 0.02, 0.02, 0.98, 0.98, 0.2)
    if not ground:
        return (0, 0, 0, 0)
    scale = 0.62 if maskable else 0.8  # the door of a maskable icon stays in the safe zone
    u, v = 0.5 + (x - 0.5) / scale, 0.5 + (y - 0.5) / scale
    # the door: a tall panel with a rounded top, its knob on the right
    if (u - 0.6) ** 2 + (v - 0.55) ** 2 <= 0.035**2:
        return (*KNOB, 255)
    if _inside_rounded(u, v, 0.3, 0.18, 0.7, 0.86, 0.06) or (
        0.3 <= u <= 0.7 and (u - 0.5) ** 2 + (v - 0.38) ** 2 <= 0.2**2 and v <= 0.38
    ):
        return (*DOOR, 255)
    if 0.22 <= u <= 0.78 and 0.86 <= v <= 0.9:  # the threshold
        return (*DOOR, 255)
    return (*GROUND, 255)


def draw(size: int, *, maskable: bool = False, opaque: bool = False) -> bytes:
    """The RGBA rows of one icon of `size` x `size` pixels, each row led by PNG filter 0."""
    rows = bytearray()
    step = 1.0 / (size * SAMPLES)
    for py in range(size):
        rows.append(0)
        for px in range(size):
            total = [0, 0, 0, 0]
            for sy in range(SAMPLES):
                for sx in range(SAMPLES):
                    x = px / size + (sx + 0.5) * step
                    y = py / size + (sy + 0.5) * step
                    r, g, b, a = _colour_at(x, y, maskable, opaque)
                    total[0] += r * a
                    total[1] += g * a
                    total[2] += b * a
                    total[3] += a
            alpha = total[3]
            n = SAMPLES * SAMPLES
            if alpha:
                rows += bytes((total[0] // alpha, total[1] // alpha, total[2] // alpha, alpha // n))
            else:
                rows += b"\0\0\0\0"
    return bytes(rows)


def png(size: int, rows: bytes) -> bytes:
    """A PNG file (8-bit RGBA) of `rows` as :func:`draw` makes them."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


ICONS = {
    "icon-192.png": (192, False, False),
    "icon-512.png": (512, False, False),
    "icon-maskable-512.png": (512, True, False),
    "apple-touch-icon.png": (180, False, True),
}
"""File name -> (size, maskable, opaque)."""


def main() -> int:
    """Write every icon into web/icons/."""
    directory = Path(__file__).resolve().parent / "icons"
    directory.mkdir(exist_ok=True)
    for name, (size, maskable, opaque) in ICONS.items():
        (directory / name).write_bytes(png(size, draw(size, maskable=maskable, opaque=opaque)))
        print(f"wrote {directory / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
