"""A call that only the TURN relay can carry, across network namespaces (tests/netns/turn_call.py).

The door station and the phone (aiortc endpoints, each in a namespace of its own) reach the
relay's namespace and not each other. With the site's secret, the door mints credentials into
its signed invite and the call connects through the relay: the nominated pair has a relayed
candidate on each side's view, and video and audio arrive both ways. With a wrong secret the
call ends, and both sides' logs name the TURN server and say the credentials were refused.
"""

from __future__ import annotations

from typing import Any

import pytest
from harness.turnrelay import turnserver_path
from private_netns import run_lab_script
from support import need

# a lab of namespaces, two endpoints and coturn in subprocesses: under the parallel suite's load
# the callee's ICE sometimes nominated late; it runs with the machine otherwise idle
pytestmark = pytest.mark.alone


def run_lab(scenario: str) -> dict[str, Any]:
    need(turnserver_path() is not None, "turnserver (Debian's coturn)")
    return run_lab_script("turn_call.py", scenario)


def test_the_relay_carries_a_call_the_network_does_not() -> None:
    result = run_lab("relay")
    door, phone = result["door"], result["phone"]
    assert door["status"] == "CONNECTED" and not door["ended_by_itself"], door
    assert "relay" in door["pair"] and "relay" in phone["pair"], (door, phone)
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
