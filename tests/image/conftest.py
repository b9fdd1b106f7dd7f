"""The SD image's tests: run by `make image-test` only; `make test` does not collect them.

They need the image, root, mtools, debugfs and qemu-system-aarch64, and take minutes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

collect_ignore_glob = [] if os.environ.get("CALLBOX_IMAGE_TEST") == "1" else ["test_*.py"]

# image-build/ is not a package: test_boot_files.py reads the initramfs with its code
IMAGE_BUILD = Path(__file__).resolve().parents[2] / "image-build"
if str(IMAGE_BUILD) not in sys.path:
    sys.path.insert(0, str(IMAGE_BUILD))
