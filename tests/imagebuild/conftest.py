"""image-build/ is not a package: its modules are imported from the directory itself."""

from __future__ import annotations

import sys
from pathlib import Path

IMAGE_BUILD = Path(__file__).resolve().parents[2] / "image-build"
if str(IMAGE_BUILD) not in sys.path:
    sys.path.insert(0, str(IMAGE_BUILD))
