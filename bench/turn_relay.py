"""Call setup through the site's TURN relay against direct, in the same run.

Run: ``.venv/bin/python bench/turn_relay.py [--calls 20]``. Prints one JSON object.

One simulated site on loopback (mosquitto, a door station, an indoor unit) and a real coturn
started from the configuration callbox generates (tests/harness/turnrelay.py; on loopback it
must be allowed to relay to loopback, test-only lines callbox never writes). Calls alternate:
"direct" (no relay: host candidates on loopback) and "relay" (the door mints credentials into
each invite, both sides offer relayed candidates only, so every packet crosses coturn). Each
is the scripted doorbell call of device/simulator (press, ringing, preview, answer, audio,
hangup); figures are medians and 95th percentiles over the calls of each kind.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import tests_path  # noqa: F401 - puts tests/ on sys.path for the harness imports
from call_setup import FIGURES, summary
from harness.bench_cli import run_and_print
from harness.simsite import EndpointSpec, SimSite, start_site
from harness.turnrelay import LOOPBACK_PEERS, TurnRelay, start_turnserver

from device.simulator import Timeline, run_doorbell_call

MODES = ("direct", "relay")


async def one_call(site: SimSite, relay: TurnRelay, mode: str) -> Timeline:
    """One scripted doorbell call, direct or through ``relay`` only."""
    door, indoor = site["door"].calls, site["indoor1"].calls
    through_relay = mode == "relay"
    door.turn = relay.minter() if through_relay else None
    for calls in (door, indoor):
        calls.defaults.ice_relay_only = through_relay
    return await run_doorbell_call(door, indoor)


async def run(count: int) -> dict[str, Any]:
    """Measure both kinds, alternating, and build the JSON report."""
    timelines: dict[str, list[Timeline]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="callbox-bench-turn-") as directory:
        relay = await start_turnserver(Path(directory) / "turn", extra_lines=LOOPBACK_PEERS)
        site = await start_site(
            Path(directory),
            [EndpointSpec("door", role="door"), EndpointSpec("indoor1")],
            site="bench",
            invites_per_10s=10 * count,  # calls back to back, far above a doorbell's rate
        )
        try:
            for _ in range(count):
                for mode in MODES:
                    timelines[mode].append(await one_call(site, relay, mode))
        finally:
            await site.close()
            await relay.close()
    figures = {
        mode: {f: summary([getattr(t, f) for t in runs if t.ok]) for f in FIGURES}
        for mode, runs in timelines.items()
    }
    extra = {
        f: round(figures["relay"][f]["median"] - figures["direct"][f]["median"], 1)  # type: ignore[operator]
        for f in FIGURES
        if figures["relay"][f]["median"] is not None and figures["direct"][f]["median"] is not None
    }
    return {
        "calls_per_kind": count,
        "failed_calls": {mode: sum(not t.ok for t in runs) for mode, runs in timelines.items()},
        "failures": sorted({t.error for runs in timelines.values() for t in runs if not t.ok}),
        "direct": figures["direct"],
        "relay": figures["relay"],
        "relay_minus_direct_median_ms": extra,
    }


def main() -> None:
    """Parse arguments, run, print JSON."""
    run_and_print(__doc__, run, "calls", 20)


if __name__ == "__main__":
    main()
