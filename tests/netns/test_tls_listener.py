"""The broker's TLS listener takes plain MQTT from the machine itself, never from the LAN.

In a network namespace this test creates (``unshare -rn``) with one veth address besides
loopback: the only way to have a source address that is not loopback without sending
anything off this machine. Nothing leaves the namespace.
"""

from __future__ import annotations

from private_netns import run_in_private_netns

SETUP = [
    "ip link add veth0 type veth peer name veth1",
    "ip addr add 10.99.0.1/24 dev veth0",
    "ip link set veth0 up",
    "ip link set veth1 up",
]


def test_plain_mqtt_only_from_loopback_tls_from_the_lan() -> None:
    tools = ("unshare", "ip", "mosquitto")
    result = run_in_private_netns("tls_listener_check.py", SETUP, tools)
    assert result["tls_from_lan"] == "ok"
    assert result["plain_from_loopback"] == "ok"
    assert result["plain_from_lan"] != "ok", "a unit on the LAN logged in without TLS"
    assert "no connection to the broker" in result["plain_from_lan"]
