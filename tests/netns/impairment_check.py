"""Runs inside the middle network namespace that test_impairment.py creates (``unshare -rn``).

Builds a ``harness.netlab.NetLab`` (two namespaces joined through the impairment forwarder),
probes a lossy, delayed path and an outage with ``harness.udp_probe`` and prints one JSON
line with what was measured.
"""

from __future__ import annotations

import asyncio
import json

from harness.impairment import Impairment
from harness.netlab import NetLab
from harness.udp_probe import check_outage, check_profile, probe


async def main() -> dict[str, object]:
    async with NetLab() as lab:
        clean = await probe(lab, count=300, interval_ms=5)
        lossy = await check_profile(
            lab, Impairment(loss=0.1, delay_ms=30, jitter_ms=10), count=1000, interval_ms=5
        )
        outage = await check_outage(lab, 1.0)
        stats = await lab.stats()
    return {"clean": clean, "lossy": lossy, "outage": outage, "stats": stats}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
