"""How fast the survivor notices a peer that died mid-call (kill -9).

Run: ``.venv/bin/python bench/peer_loss.py [--runs 10]``. Prints one JSON object.

Each run: a door station calls an endpoint running in its own process (the auto-answer
peer of ``tests/harness/peer_process.py``), waits for two-way media, kills the peer
with SIGKILL and times the door's NETWORKERROR. The baseline in the same run is what
aiortc alone would report: its connection state turns "failed" only when ICE consent
checks time out: a bare aiortc pair on loopback whose one side goes silent (its sockets
stop sending, as a dead process's would) is timed once until the other side's connection
state leaves "connected" (aiortc 1.16 reports "closed" when ICE consent expires).
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import tests_path  # noqa: F401 - puts tests/ on sys.path for the harness imports
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection
from harness.bench_cli import run_and_print
from harness.peer_process import start_peer_process
from harness.simsite import EndpointSpec, start_site

from services.callapi import Call, CallStatus, InProgressListener
from services.media.ice import LOOPBACK, ice_policy

PEER = "flat9"


class Ended(InProgressListener):
    """Notes when the call reaches CONNECTED and when it ends."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.ended = asyncio.Event()
        self.ended_at = 0.0
        self.status = CallStatus.NONE

    def on_status(self, call: Call, status: CallStatus, video: bool) -> None:
        """Set `connected` at CONNECTED; note the first terminal status and when it came."""
        if status == CallStatus.CONNECTED:
            self.connected.set()
        if status & 0x40 and not self.ended.is_set():
            self.status, self.ended_at = status, time.monotonic()
            self.ended.set()


async def one_run(directory: Path) -> float:
    """Milliseconds from SIGKILL of the peer to the door's terminal status."""
    site = await start_site(directory, [EndpointSpec("door", role="door")], extra_accounts=(PEER,))
    peer = await start_peer_process(site, PEER, directory)
    try:
        door = site["door"].calls
        props = door.create_call_properties(video=True)
        props.user = door.profile_of(PEER)
        listener = Ended()
        call = door.call(props)
        assert call is not None
        await call.start(listener)
        await asyncio.wait_for(listener.connected.wait(), 10)
        assert call.session is not None
        await asyncio.wait_for(call.session.first_audio.wait(), 10)
        killed = time.monotonic()
        peer.send_signal(signal.SIGKILL)
        await asyncio.wait_for(listener.ended.wait(), 60)
        assert listener.status == CallStatus.NETWORKERROR, listener.status.name
        return (listener.ended_at - killed) * 1000
    finally:
        if peer.returncode is None:
            peer.kill()
        await peer.wait()
        await site.close()


async def bare_aiortc_detection_ms() -> float:
    """Milliseconds until plain aiortc notices that its peer went silent."""
    cfg = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    survivor, victim = RTCPeerConnection(cfg), RTCPeerConnection(cfg)
    survivor.addTransceiver("audio")
    connected, gave_up = asyncio.Event(), asyncio.Event()

    @survivor.on("connectionstatechange")
    def changed() -> None:
        if survivor.connectionState == "connected":
            connected.set()
        if survivor.connectionState in ("failed", "closed"):
            gave_up.set()

    with ice_policy(LOOPBACK):
        await survivor.setLocalDescription(await survivor.createOffer())
        await victim.setRemoteDescription(survivor.localDescription)
        await victim.setLocalDescription(await victim.createAnswer())
    await survivor.setRemoteDescription(victim.localDescription)
    await asyncio.wait_for(connected.wait(), 10)
    for transceiver in victim.getTransceivers():
        connection = transceiver.sender.transport.transport.iceGatherer._connection
        for protocol in connection._protocols:
            protocol.transport.sendto = lambda *args, **kwargs: None  # type: ignore[method-assign]
    silent = time.monotonic()
    await asyncio.wait_for(gave_up.wait(), 120)
    detected = (time.monotonic() - silent) * 1000
    await survivor.close()
    await victim.close()
    return detected


async def run(runs: int) -> dict[str, Any]:
    """Measure and build the JSON report."""
    detected = []
    for index in range(runs):
        with tempfile.TemporaryDirectory(prefix="callbox-bench-") as directory:
            detected.append(await one_run(Path(directory) / str(index)))
    baseline = await bare_aiortc_detection_ms()
    median = statistics.median(detected)
    return {
        "runs": runs,
        "killed_peer_to_networkerror_ms": {
            "median": round(median, 1),
            "max": round(max(detected), 1),
        },
        "baseline_bare_aiortc_silent_peer_to_closed_ms": round(baseline, 1),
        "ratio_median_to_baseline": round(median / baseline, 5),
        "target_ms": 1000,
    }


def main() -> None:
    """Parse arguments, run, print JSON."""
    run_and_print(__doc__, run, "runs", 10)


if __name__ == "__main__":
    main()
