"""An endpoint in its own process that auto-answers calls: the peer a test can kill -9.

Usage: python tests/peer_process.py CONFIG.json. The file holds the broker login, the
site, this endpoint's address and identity directory, and the pinned contacts. The
process prints "ready" once it is online and then serves until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from hal.board import build_sim_board
from services.callapi import CallProperties, Calls, IncomingListener, UserProfile
from services.media.ice import LOOPBACK
from services.media.local import LocalMedia
from services.signaling.contacts import Contact, ContactBook
from services.signaling.endpoint import SignalingEndpoint
from services.signaling.identity import Identity, PublicKeys
from services.signaling.transport import BrokerAddress


class AutoAnswer(IncomingListener):
    """Accepts every call and answers it at once."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_incoming(self, profile: UserProfile, video: bool) -> CallProperties | None:
        props = self.calls.create_call_properties(video)
        props.auto_answer = True
        return props


async def serve(config: dict[str, object]) -> None:
    broker = config["broker"]
    assert isinstance(broker, dict)
    contacts = ContactBook()
    peers = config["contacts"]
    assert isinstance(peers, dict)
    for address, keys in peers.items():
        contacts.add(Contact(address=address, keys=PublicKeys.from_json(keys)))
    signaling = SignalingEndpoint(
        site=str(config["site"]),
        address=str(config["address"]),
        broker=BrokerAddress(**broker),
        identity=Identity.load(Path(str(config["identity_dir"]))),
        contacts=contacts,
    )
    board = build_sim_board(str(config["address"]), tone_hz=660.0)
    calls = Calls(signaling, LocalMedia(board), ice=LOOPBACK)
    calls.set_listener(AutoAnswer(calls))
    await calls.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(json.loads(Path(sys.argv[1]).read_text())))
