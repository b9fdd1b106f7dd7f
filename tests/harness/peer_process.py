"""An endpoint in its own process that auto-answers calls: a peer that can be killed -9.

Usage: ``python -m harness.peer_process CONFIG.json``, with ``tests/`` on ``PYTHONPATH``
(``start_peer_process`` below writes the file and starts it so). The file holds the broker
login, the site, this endpoint's address and identity directory, and its pinned contacts.
The process prints "ready" once it is online and then serves until it is killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from hal.board import build_sim_board
from harness.simsite import SimSite
from services.callapi import CallProperties, Calls, IncomingListener, UserProfile
from services.media.ice import LOOPBACK
from services.media.local import LocalMedia
from services.signaling.contacts import Contact, ContactBook
from services.signaling.endpoint import SignalingEndpoint
from services.signaling.identity import Identity, PublicKeys
from services.signaling.transport import BrokerAddress, mqtt_transport


class AutoAnswer(IncomingListener):
    """Accepts every call and answers it at once."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_incoming(self, profile: UserProfile, video: bool) -> CallProperties | None:
        props = self.calls.create_call_properties(video)
        props.auto_answer = True
        return props


def peer_signaling(config: dict[str, object], **options: Any) -> SignalingEndpoint:
    """The signaling endpoint a peer process's ``config`` describes.

    ``options``: more of `SignalingEndpoint`'s keyword arguments (an ``invite_limit``).
    """
    broker = config["broker"]
    assert isinstance(broker, dict)
    contacts = ContactBook()
    peers = config["contacts"]
    assert isinstance(peers, dict)
    for address, keys in peers.items():
        contacts.add(Contact(address=address, keys=PublicKeys.from_json(keys)))
    return SignalingEndpoint(
        transport=mqtt_transport(
            site=str(config["site"]),
            address=str(config["address"]),
            broker=BrokerAddress(**broker),
        ),
        identity=Identity.load(Path(str(config["identity_dir"]))),
        contacts=contacts,
        **options,
    )


async def serve(config: dict[str, object]) -> None:
    """Run the auto-answering endpoint described by ``config`` until killed."""
    signaling = peer_signaling(config)
    board = build_sim_board(str(config["address"]), tone_hz=660.0)
    calls = Calls(signaling, LocalMedia(board), ice=LOOPBACK)
    calls.set_listener(AutoAnswer(calls))
    await calls.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def write_peer_config(site: SimSite, address: str, directory: Path) -> Path:
    """Make endpoint ``address`` of ``site`` for a process of its own: its config file.

    A fresh identity saved under ``directory``, pinned in the door's contacts, pinning the
    door's keys, with ``address``'s broker login (it needs an account: ``extra_accounts``).
    """
    identity = Identity.generate()
    await asyncio.to_thread(identity.save, directory / address)
    door = site["door"]
    door.signaling.contacts.add(Contact(address=address, keys=identity.public_keys))
    broker = site.broker_address(address)
    config = {
        "site": site.site,
        "address": address,
        "identity_dir": str(directory / address),
        "broker": {
            "host": broker.host,
            "port": broker.port,
            "username": broker.username,
            "password": broker.password,
        },
        "contacts": {"door": door.identity.public_keys.to_json()},
    }
    path = directory / f"{address}.json"
    await asyncio.to_thread(path.write_text, json.dumps(config))
    return path


async def start_peer_process(
    site: SimSite, address: str, directory: Path
) -> asyncio.subprocess.Process:
    """Start an auto-answering endpoint ``address`` of ``site`` in its own process.

    It gets a fresh identity (saved under ``directory``), pins the door station's keys, and
    is pinned in the door's contacts; ``address`` must have a broker account
    (``start_site(..., extra_accounts=(address,))``). Returns once it is online.
    """
    return await spawn_peer(site, address, directory, "harness.peer_process")


async def spawn_peer(
    site: SimSite, address: str, directory: Path, module: str, *, stdin: bool = False
) -> asyncio.subprocess.Process:
    """Run ``python -m <module> CONFIG`` as endpoint ``address`` (see `write_peer_config`).

    Returns once it printed "ready" and the door sees it online; ``stdin``: a pipe to
    command it.
    """
    path = await write_peer_config(site, address, directory)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        str(path),
        stdin=asyncio.subprocess.PIPE if stdin else None,
        stdout=asyncio.subprocess.PIPE,
        env=_env_with_tests_on_path(),
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    if line.strip() != b"ready":
        process.kill()
        await process.wait()
        raise RuntimeError(f"the process {module} of {address} did not start: {line!r}")
    await site["door"].signaling.wait_presence(address, True, timeout=10)
    return process


def _env_with_tests_on_path() -> dict[str, str]:
    """This environment with ``tests/`` (where the ``harness`` package lives) on PYTHONPATH."""
    tests = str(Path(__file__).resolve().parents[1])
    inherited = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([tests, inherited] if inherited else [tests]),
    }


if __name__ == "__main__":
    asyncio.run(serve(json.loads(Path(sys.argv[1]).read_text())))
