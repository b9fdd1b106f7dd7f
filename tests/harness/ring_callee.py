"""A callee in its own process that reports when it rings and when it stops (bench/ring_stop.py).

Usage: ``python -m harness.ring_callee CONFIG.json`` (the file of
``harness.peer_process.write_peer_config``), with ``tests/`` on ``PYTHONPATH``. It takes
every call and prints, each on a line with ``time.monotonic()`` (CLOCK_MONOTONIC: the same
clock in every process of the machine): ``ready``, ``ringing <t>`` once a call rings,
``stopped <t>`` once its ringtone stopped, ``ended <t> <status> <reason>`` once the call
ended (media closed too; ``<reason>`` the cancel's, ``-`` for none). A line ``answer`` on
its standard input answers the ringing call.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from hal.board import build_sim_board
from harness.peer_process import peer_signaling
from services.callapi import (
    Call,
    CallProperties,
    Calls,
    CallStatus,
    HangupReason,
    IncomingListener,
    InProgressListener,
    UserProfile,
)
from services.media.ice import LOOPBACK
from services.media.local import LocalMedia
from services.signaling.endpoint import InviteRateLimit


def say(*words: object) -> None:
    """One line to the bench."""
    print(*words, flush=True)


class Reporting(IncomingListener, InProgressListener):
    """Takes every call and reports its ringing and its end."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.call: Call | None = None

    def on_incoming(self, profile: UserProfile, video: bool) -> CallProperties | None:
        """Take the call."""
        return self.calls.create_call_properties(video)

    async def on_show_user_interface(self, call: Call, props: CallProperties) -> bool:
        """Start the call with this listener."""
        self.call = call
        await call.start(self)
        return True

    def on_status(self, call: Call, status: CallStatus, video: bool) -> None:
        """Report the ringing."""
        if status == CallStatus.INCOMING:
            say("ringing", time.monotonic())

    def on_hangup(self, call: Call, reason: HangupReason) -> None:
        """Report the end."""
        say("ended", time.monotonic(), call.status.name, call.end_reason or "-")


async def commands(app: Reporting) -> None:
    """Answer the ringing call on each ``answer`` line of standard input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"answer" and app.call is not None:
            await app.call.answer()


async def serve(config: dict[str, object]) -> None:
    """Run the callee described by ``config`` until its standard input closes."""
    rings_back_to_back = InviteRateLimit(count=1000, period_s=10.0)
    signaling = peer_signaling(config, invite_limit=rings_back_to_back)
    board = build_sim_board(str(config["address"]), tone_hz=660.0)
    calls = Calls(signaling, LocalMedia(board), ice=LOOPBACK)
    app = Reporting(calls)
    calls.set_listener(app)
    stop_ringing = calls.devices.stop_ringing

    async def reporting_stop() -> None:  # the moment the ringtone stops
        await stop_ringing()
        say("stopped", time.monotonic())

    calls.devices.stop_ringing = reporting_stop  # type: ignore[method-assign]
    await calls.start()
    say("ready")
    try:
        await commands(app)
    finally:
        await calls.close()
        await board.close()


if __name__ == "__main__":
    asyncio.run(serve(json.loads(Path(sys.argv[1]).read_text())))
