"""A call that only the TURN relay can carry, across network namespaces (tests/netns/turn_call.py).

The door station and the phone (aiortc endpoints, each in a namespace of its own) reach the
relay's namespace and not each other. With the site's secret, the door mints credentials into
its signed invite and the call connects through the relay: the nominated pair has a relayed
candidate on each side's view, and video and audio arrive both ways. With a wrong secret the
call ends, and both sides' logs name the TURN server and say the credentials were refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness.netlab import MARKER, missing_tools
from harness.turnrelay import turnserver_path
from support import need

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "netns" / "turn_call.py"


def run_lab(scenario: str) -> dict[str, Any]:
    missing = missing_tools()
    if missing:
        pytest.fail(f"the network lab needs {', '.join(missing)}: install util-linux, iproute2")
    need(turnserver_path() is not None, "turnserver (Debian's coturn)")
    tests = str(ROOT / "tests")
    path = os.pathsep.join(filter(None, [tests, str(ROOT), os.environ.get("PYTHONPATH")]))
    completed = subprocess.run(
        [
            "unshare",
            "-rn",
            sys.executable,
            str(ROOT / "tests" / "netns" / "turn_call.py"),
            scenario,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path, MARKER: "1"},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def test_the_relay_carries_a_call_the_network_does_not() -> None:
    result = run_lab("relay")
    door, phone = result["door"], result["phone"]
    assert door["status"] == "CONNECTED" and not door["ended_by_itself"], door
    assert "relay" in door["pair"] and "relay" in phone["pair"], (door["pair"], phone["pair"])
    for side in (door, phone):
        assert side["video_frames"] > 5 and side["audio_frames"] > 0, side
        assert side["relay_failure"] == "" and side["errors"] == [], side
    assert phone["final_status"] == "COMPLETE"


def test_refused_credentials_end_the_call_and_say_so() -> None:
    result = run_lab("wrong")
    door, phone = result["door"], result["phone"]
    assert door["ended_by_itself"] and door["status"] == "NETWORKERROR", door
    assert phone["final_status"] == "NETWORKERROR", phone
    server = f"TURN server 10.16.1.1:{result['relay_port']}"
    for side in (door, phone):
        assert side["video_frames"] == 0, side
        assert any(server in line and "credentials refused" in line for line in side["errors"])
