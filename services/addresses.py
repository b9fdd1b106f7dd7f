"""Whether a host name or address is this machine: the one loopback test of the project."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1): traffic that stays here.

    Takes a configured host as well as a peer address as ``accept()`` gives it: an IPv6 zone
    (``%lo``) is ignored and an IPv4-mapped address (``::ffff:127.0.0.1``) is its IPv4 one.
    False for a wildcard (``0.0.0.0``) or any other name or address.
    """
    if host in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
