"""Where `make image` leaves the generic image and its work files."""

from __future__ import annotations

import os
import struct
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("CALLBOX_IMAGE_DIR", REPO / "build/image"))


def generic_image() -> Path:
    """build/image/callbox-<version>.img (not a role image), or the test fails."""
    with (REPO / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    img = OUT / f"callbox-{version}.img"
    if not img.exists():
        pytest.fail(f"no {img.name} in {OUT}: run `make image` first")
    return img


def partitions(img: Path) -> list[tuple[int, int]]:
    """(byte offset, byte size) of the MBR's primary partitions."""
    with img.open("rb") as f:
        mbr = f.read(512)
    assert mbr[510:512] == b"\x55\xaa", "no MBR"
    parts = []
    for i in range(4):
        start, count = struct.unpack_from("<II", mbr, 0x1BE + 16 * i + 8)
        if count:
            parts.append((start * 512, count * 512))
    return parts
