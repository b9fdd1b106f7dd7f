"""Run a check script inside a network namespace of its own (``unshare -rn``).

The namespace has loopback and whatever ``setup`` (``ip`` commands) makes; nothing in it
reaches this machine's own interfaces. The script prints one JSON line last: its result.
:func:`run_lab_script` runs a script that builds namespaces of its own in there
(tests/harness/netlab.py).
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
from harness.netlab import MARKER, missing_tools

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
    argv = ["unshare", "-rn", "sh", "-c", f'{commands} && exec "{sys.executable}" "{path}"']
    return _json_result(argv, timeout=120, env=_env_with_harness())


def run_lab_script(script: str, *args: str) -> dict[str, Any]:
    """Run ``tests/netns/<script> args`` as a network lab (netlab's MARKER set); its JSON result.

    Fails the test (never skips it) when a tool or device the lab needs is missing.
    """
    missing = missing_tools()
    if missing:
        pytest.fail(f"the network lab needs {', '.join(missing)}: install util-linux, iproute2")
    argv = ["unshare", "-rn", sys.executable, str(ROOT / "tests" / "netns" / script), *args]
    return _json_result(argv, timeout=180, env={**_env_with_harness(), MARKER: "1"})


def _env_with_harness() -> dict[str, str]:
    """This environment with tests/ (the scripts import the harness) and the tree on the path."""
    python_path = [str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, python_path))}


def _json_result(argv: list[str], timeout: float, env: dict[str, str]) -> dict[str, Any]:
    """Run ``argv``; assert it succeeded and return the JSON of its last line of output."""
    completed = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result
