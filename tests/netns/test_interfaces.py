"""ICE host candidates come only from the configured interface.

Tested on a machine with several interfaces: a network namespace this test creates (``unshare -rn``)
with two veth interfaces and loopback. Nothing leaves the namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = " && ".join(
    [
        "ip link set lo up",
        "ip link add veth0 type veth peer name veth1",
        "ip addr add 10.99.0.1/24 dev veth0",
        "ip addr add 10.99.0.2/24 dev veth1",
        "ip link set veth0 up",
        "ip link set veth1 up",
    ]
)


def test_each_endpoint_offers_only_its_configured_interface() -> None:
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: install util-linux and iproute2 (make deps)")
    script = ROOT / "tests" / "netns" / "netns_call.py"
    # the script imports the test harness (tests/harness/): tests/ on its path
    path = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    completed = subprocess.run(
        ["unshare", "-rn", "sh", "-c", f'{SETUP} && exec "{sys.executable}" "{script}"'],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["ok"], result["error"]
    offered = result["offered"]
    assert offered["door"] and set(offered["door"]) == {"10.99.0.1"}
    assert offered["indoor1"] and set(offered["indoor1"]) == {"10.99.0.2"}
