"""An endpoint in its own process and network namespace for the TURN lab (tests/netns/).

Usage: ``python -m harness.turn_peer CONFIG.json`` (``tests/`` on ``PYTHONPATH``). The file
says the role: ``door`` places one call to ``target`` (minting relay credentials when it has
``turn``), waits for media both ways, hangs up; ``phone`` answers the call it gets. Either
prints one JSON line when its call is over: the final status, the candidate types of the
nominated ICE pair, what it received, why its relay failed (if it did) and its error log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from device.daemon import compose_calls
from hal.board import build_sim_board
from harness.peer_process import AutoAnswer
from services.callapi import Call, CallProperties, Calls
from services.media.ice import IcePolicy
from services.media.turn import TurnMinter
from services.signaling.contacts import Contact, ContactBook
from services.signaling.identity import Identity, PublicKeys
from services.signaling.transport import BrokerAddress, mqtt_transport

MEDIA_TIMEOUT_S = 40.0
RECONNECT_GRACE_S = 6.0
"""Shorter than a unit's 30 s: a call without a path ends sooner in the lab."""


class ErrorLog(logging.Handler):
    """Keeps the text of every ERROR record (what a person reading the log would see)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def build(config: dict[str, Any]) -> Calls:
    """The endpoint ``config`` describes (not started)."""
    contacts = ContactBook()
    for address, keys in config["contacts"].items():
        contacts.add(Contact(address=address, keys=PublicKeys.from_json(keys), name=address))
    turn = config.get("turn")
    minter = TurnMinter(urls=tuple(turn["urls"]), secret=turn["secret"]) if turn else None
    return compose_calls(
        role=config["role"],
        name=config["address"],
        transport=mqtt_transport(
            site=config["site"], address=config["address"], broker=BrokerAddress(**config["broker"])
        ),
        identity=Identity.load(Path(config["identity_dir"])),
        contacts=contacts,
        board=build_sim_board(config["address"]),
        ice=IcePolicy(interfaces=("eth0",)),
        turn=minter,
        defaults=CallProperties(reconnect_grace_s=RECONNECT_GRACE_S),
    )


def report(call: Call | None, errors: ErrorLog) -> dict[str, Any]:
    """What this side saw of its call."""
    session = call.session if call is not None else None
    return {
        "status": call.status.name if call is not None else None,
        "pair": list(session.selected_pair() or ()) if session is not None else None,
        "video_frames": session.stats.video_frames if session is not None else 0,
        "audio_frames": session.stats.audio_frames if session is not None else 0,
        "relay_failure": session.relay_failure if session is not None else "",
        "errors": errors.lines,
    }


async def until(predicate: Any, timeout: float) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)  # a lab process: nothing else to wait on
    return True


def media_both_ways(call: Call) -> bool:
    session = call.session
    return session is not None and session.stats.video_frames > 5 and call.remote_frame.is_set()


async def door(calls: Calls, target: str, errors: ErrorLog) -> dict[str, Any]:
    """Call ``target``; once media flows both ways (or the call ends), report and hang up."""
    await calls.signaling.wait_presence(target, True, timeout=20)
    props = calls.create_call_properties(video=True)
    props.user = calls.profile_of(target)
    call = calls.call(props)
    assert call is not None
    await call.start()
    await until(lambda: call.is_ended() or (call.is_answered() and media_both_ways(call)), 60)
    result = report(call, errors)
    result["ended_by_itself"] = call.is_ended()
    await call.hangup()
    return result


async def phone(calls: Calls, errors: ErrorLog) -> dict[str, Any]:
    """Answer the one call that comes; report what was received when it ends."""
    calls.set_listener(AutoAnswer(calls))
    await until(lambda: calls.active_call is not None, 60)
    call = calls.active_call
    assert call is not None
    await until(lambda: call.is_ended() or media_both_ways(call), MEDIA_TIMEOUT_S)
    result = report(call, errors)
    await until(call.is_ended, 60)
    result["final_status"] = call.status.name
    return result


async def serve(config: dict[str, Any]) -> dict[str, Any]:
    """Run this side of the lab's call and return its report."""
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    calls = build(config)
    await calls.start(timeout=20)
    print("ready", flush=True)
    try:
        if config["role"] == "door":
            return await door(calls, config["target"], errors)
        return await phone(calls, errors)
    finally:
        await calls.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    outcome = asyncio.run(serve(json.loads(Path(sys.argv[1]).read_text())))
    print(json.dumps(outcome), flush=True)
