"""Where `make image` leaves the generic image and its work files."""

from __future__ import annotations

import os
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
