"""The broker's TLS listener takes plain MQTT from the machine itself, never from the LAN.

In a network namespace this test creates (``unshare -rn``) with one veth address besides
loopback: the only way to have a source address that is not loopback without sending
anything off this machine. Nothing leaves the namespace.
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
        "ip link set veth0 up",
        "ip link set veth1 up",
    ]
)


def test_plain_mqtt_only_from_loopback_tls_from_the_lan() -> None:
    for tool in ("unshare", "ip", "mosquitto"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.fail(f"{tool} is missing: make deps installs it")
    script = ROOT / "tests" / "netns" / "tls_listener_check.py"
    completed = subprocess.run(
        ["unshare", "-rn", "sh", "-c", f'{SETUP} && exec "{sys.executable}" "{script}"'],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["tls_from_lan"] == "ok"
    assert result["plain_from_loopback"] == "ok"
    assert result["plain_from_lan"] != "ok", "a unit on the LAN logged in without TLS"
    assert "no connection to the broker" in result["plain_from_lan"]
