"""The browser phone's bell checks (web/src/bell.js), run by node's test runner.

The page is plain ES modules; ``web/test/bell.test.mjs`` imports the module as the page
does and checks what the page shows of an invite's ``bell`` and of a ring push's ``bell``
label (and what it ignores). The
Chromium test of a staged ring group (tests/browser/test_staged_ring.py) shows it end to end.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from support import need

WEB = Path(__file__).resolve().parents[2] / "web"


def test_bell_checks_pass_under_node() -> None:
    node = shutil.which("node")
    need(node is not None, "node (it builds the page)")
    assert node is not None
    result = subprocess.run(
        [node, "--test", str(WEB / "test" / "bell.test.mjs")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# pass 4" in result.stdout, result.stdout
