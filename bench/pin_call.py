"""The doorbell call through the firmware against the same call placed directly on the Call API.

The firmware's path is GPIO pins -> call service -> Call API; both calls are placed in one run.

Run: ``.venv/bin/python bench/pin_call.py [--calls 10]``. Prints one JSON object.

callbox figures come from ``device/simulator/_pin_scenario.py`` (what ``callbox demo --scripted``
runs) repeated on one site of device apps built from callbox.toml files: the doorbell
pin, the handset lifted, the door-release pin, the handset back. The baseline is the
Call API's scripted call (``device/simulator/_scenario.py``, what ``bench/call_setup.py`` measures)
on a simulated site in the same process. The difference is what the firmware adds: the
50 ms minimum press that filters phantom rings, and the service's work per event.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import tests_path  # noqa: F401 - puts tests/ on sys.path for the harness imports
from call_setup import summary
from harness.bench_cli import run_and_print
from harness.simsite import EndpointSpec, start_site

from device.simulator import (
    PinTimeline,
    Unit,
    run_doorbell_call,
    run_pin_doorbell_call,
    start_intercom_site,
)
from services.intercom.door import DoorStation

PIN_FIGURES = (
    "press_to_ringing_ms",
    "press_to_preview_ms",
    "answer_to_audio_ms",
    "release_to_relay_ms",
    "relay_pulse_ms",
    "hangup_to_idle_ms",
)
SHARED = ("press_to_ringing_ms", "press_to_preview_ms", "answer_to_audio_ms", "hangup_to_idle_ms")


async def pin_calls(directory: Path, count: int) -> list[PinTimeline]:
    """``count`` pin-driven calls on one site of device apps."""
    site = await start_intercom_site(directory, [Unit("door", "door"), Unit("flat", "indoor")])
    flat = site["flat"].endpoint
    door = site["door"].endpoint
    assert flat is not None and door is not None and isinstance(door.service, DoorStation)
    # a benchmark rings and opens more often than a visitor: lift both rate limits
    flat.signaling.invite_limit.count = 10 * count
    door.service.opener.per_minute = 10 * count
    timelines = []
    try:
        for _ in range(count):
            timelines.append(await run_pin_doorbell_call(site, "door", "flat"))
            await door.calls.prewarm(count=1)  # idle again, offer ready: as before a press
    finally:
        await site.close()
    return timelines


async def api_calls(directory: Path, count: int) -> list[Any]:
    """``count`` Call API doorbell calls on a simulated site."""
    site = await start_site(
        directory,
        [EndpointSpec("door", role="door"), EndpointSpec("indoor1")],
        site="bench",
        invites_per_10s=10 * count,
    )
    try:
        return [
            await run_doorbell_call(site["door"].calls, site["indoor1"].calls) for _ in range(count)
        ]
    finally:
        await site.close()


async def run(count: int) -> dict[str, Any]:
    """Both kinds of call, then medians, p95 and the ratio per shared figure."""
    with tempfile.TemporaryDirectory(prefix="callbox-bench-") as directory:
        pins = await pin_calls(Path(directory) / "pins", count)
        api = await api_calls(Path(directory) / "api", count)
    ours = {f: summary([getattr(t, f) for t in pins if t.ok]) for f in PIN_FIGURES}
    base = {f: summary([getattr(t, f) for t in api if t.ok]) for f in SHARED}
    ratios = {
        f: round(ours[f]["median"] / base[f]["median"], 2)  # type: ignore[operator]
        for f in SHARED
        if ours[f]["median"] and base[f]["median"]
    }
    return {
        "calls": count,
        "failed_calls": sum(not t.ok for t in pins) + sum(not t.ok for t in api),
        "failures": sorted({t.error for t in [*pins, *api] if not t.ok}),
        "firmware_pins": ours,
        "baseline_call_api": base,
        "ratio_firmware_to_baseline_median": ratios,
        "relay_pulse_configured_ms": pins[0].relay_pulse_configured_ms if pins else None,
    }


def main() -> None:
    """Parse arguments, run, print JSON."""
    run_and_print(__doc__, run, "calls", 10)


if __name__ == "__main__":
    main()
