"""Run a check script inside a network namespace of its own (``unshare -rn``).

The namespace has loopback and whatever ``setup`` (``ip`` commands) makes; nothing in it
reaches this machine's own interfaces. The script prints one JSON line last: its result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_in_private_netns(
    script: str, setup: list[str], tools: tuple[str, ...] = ("unshare", "ip")
) -> dict[str, Any]:
    """Run ``tests/netns/<script>`` after ``setup`` in a fresh namespace; its JSON result.

    Fails the test (never skips it) when one of ``tools`` is missing.
    """
    for tool in tools:
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.fail(f"{tool} is missing: make deps installs it")
    commands = " && ".join(["ip link set lo up", *setup])
    path = ROOT / "tests" / "netns" / script
    # the script imports the test harness (tests/harness/): tests/ on its path
    python_path = [str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    completed = subprocess.run(
        ["unshare", "-rn", "sh", "-c", f'{commands} && exec "{sys.executable}" "{path}"'],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, python_path))},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result
