"""The SD image's tests: run by `make image-test` only (they need the image, root, mtools,
debugfs and qemu-system-aarch64, and take minutes). `make test` does not collect them."""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("CALLBOX_IMAGE_TEST") == "1" else ["test_*.py"]
