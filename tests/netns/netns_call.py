"""Runs inside a network namespace that test_interfaces.py creates (``unshare -rn``).

Two interfaces, veth0 (10.99.0.1) and veth1 (10.99.0.2), plus loopback for the broker. The door
offers host candidates from veth0 only, the indoor unit from veth1 only; one call is placed and
answered. Prints one JSON line: the candidate addresses each side offered and the frames and samples
each side received.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
from pathlib import Path

from harness.simsite import EndpointSpec, start_site

from device.simulator import run_doorbell_call
from services.media.ice import IcePolicy
from services.signaling.endpoint import Message, SignalingEndpoint

CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ udp \d+ (\S+) \d+ typ host", re.MULTILINE)


def spy_on_sdp(signaling: SignalingEndpoint, offered: dict[str, list[str]]) -> None:
    """Record the host candidates of every SDP that reaches ``signaling``, by sender."""
    handle = signaling.on_message
    assert handle is not None

    async def spy(message: Message) -> None:
        if "sdp" in message.body:
            found = CANDIDATE.findall(str(message.body["sdp"]))
            offered.setdefault(message.sender, []).extend(found)
        await handle(message)

    signaling.on_message = spy


async def main() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as directory:
        site = await start_site(
            Path(directory),
            [
                EndpointSpec("door", role="door", ice=IcePolicy(interfaces=("veth0",))),
                EndpointSpec("indoor1", ice=IcePolicy(interfaces=("veth1",))),
            ],
        )
        offered: dict[str, list[str]] = {}
        try:
            for endpoint in site.endpoints.values():
                spy_on_sdp(endpoint.signaling, offered)
            timeline = await run_doorbell_call(site["door"].calls, site["indoor1"].calls)
            return {"ok": timeline.ok, "error": timeline.error, "offered": offered}
        finally:
            await site.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
    sys.exit(0)
