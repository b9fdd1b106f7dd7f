"""Which local addresses ICE may offer as host candidates.

aioice offers every address of every interface except 127.0.0.1. An intercom must
choose (a Pi has wlan0, eth0, docker bridges) and tests must stay on loopback, so
callbox restricts host candidates to configured interfaces or addresses.

aioice has no per-connection option for this. It asks the module function
``aioice.ice.get_host_addresses`` while gathering, inside the task that awaits
``setLocalDescription``. We wrap that function once with one that consults a
context variable, so each gathering sees the restriction of the session that
started it, and two endpoints in one process keep separate restrictions.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aioice.ice
import ifaddr

from services.media.errors import MediaError


@dataclass(frozen=True)
class IcePolicy:
    """Where host candidates may come from.

    ``interfaces``: names such as ``eth0`` or ``lo``; ``addresses``: literal IPs.
    Both empty means aioice's own choice (every non-loopback address).
    """

    interfaces: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for address in self.addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError as err:
                raise MediaError(f"ice address {address!r} is not an IP address") from err

    @property
    def restricted(self) -> bool:
        """True when the policy narrows the library's default choice."""
        return bool(self.interfaces or self.addresses)

    def host_addresses(self, use_ipv4: bool, use_ipv6: bool) -> list[str]:
        """The local addresses allowed by this policy, in interface order."""
        allowed: list[str] = []
        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                address = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
                is_v4 = isinstance(ip.ip, str)
                if (is_v4 and not use_ipv4) or (not is_v4 and not use_ipv6):
                    continue
                if not is_v4 and ip.ip[2] != 0:  # link-local scope ids are not routable
                    continue
                if adapter.nice_name in self.interfaces or address in self.addresses:
                    allowed.append(address)
        return allowed


LOOPBACK = IcePolicy(addresses=("127.0.0.1",))

_active_policy: contextvars.ContextVar[IcePolicy | None] = contextvars.ContextVar(
    "callbox_ice_policy", default=None
)


def _install_wrapper() -> None:
    current = aioice.ice.get_host_addresses
    if getattr(current, "__callbox_wrapper__", False):
        return
    library_default: Callable[[bool, bool], list[str]] = current

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        policy = _active_policy.get()
        if policy is None or not policy.restricted:
            return library_default(use_ipv4, use_ipv6)
        return policy.host_addresses(use_ipv4, use_ipv6)

    host_addresses.__callbox_wrapper__ = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = host_addresses


@contextlib.contextmanager
def ice_policy(policy: IcePolicy) -> Iterator[None]:
    """Apply ``policy`` to every ICE gathering started inside this block (and its tasks)."""
    _install_wrapper()
    token = _active_policy.set(policy)
    try:
        yield
    finally:
        _active_policy.reset(token)
