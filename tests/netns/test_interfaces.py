"""ICE host candidates come only from the configured interface.

Tested on a machine with several interfaces: a network namespace this test creates (``unshare -rn``)
with two veth interfaces and loopback. Nothing leaves the namespace.
"""

from __future__ import annotations

from private_netns import run_in_private_netns

SETUP = [
    "ip link add veth0 type veth peer name veth1",
    "ip addr add 10.99.0.1/24 dev veth0",
    "ip addr add 10.99.0.2/24 dev veth1",
    "ip link set veth0 up",
    "ip link set veth1 up",
]


def test_each_endpoint_offers_only_its_configured_interface() -> None:
    result = run_in_private_netns("netns_call.py", SETUP)
    assert result["ok"], result["error"]
    offered = result["offered"]
    assert offered["door"] and set(offered["door"]) == {"10.99.0.1"}
    assert offered["indoor1"] and set(offered["indoor1"]) == {"10.99.0.2"}
