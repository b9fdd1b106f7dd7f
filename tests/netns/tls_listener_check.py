"""Runs inside a network namespace that test_tls_listener.py creates (``unshare -rn``).

The site broker listens on every address of the namespace (loopback and veth0, 10.99.0.1)
with the site CA's certificate. From 10.99.0.1, as a unit on the LAN would, a login without
TLS must be refused and one that pins the site CA must succeed; from 127.0.0.1, as the
hosting unit's own daemon does, a plain login must succeed. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from services.signaling.broker import (
    BrokerSettings,
    MosquittoBroker,
    free_ports,
    write_broker_config,
)
from services.signaling.errors import SignalingError
from services.signaling.siteca import SiteCaFiles, ensure_site_tls
from services.signaling.transport import BrokerAddress, mqtt_transport

LAN = "10.99.0.1"
SITE = "netns"


async def login(broker: MosquittoBroker, host: str, ca_file: Path | None) -> str:
    """Whether ``door`` logs in at ``host`` (TLS pinning ``ca_file``, or plain): "ok" or why not."""
    transport = mqtt_transport(
        site=SITE,
        address="door",
        broker=BrokerAddress(
            host=host,
            port=broker.settings.port,
            username="door",
            password=broker.files.passwords["door"],
            ca_file=ca_file,
        ),
    )
    transport.on_message = lambda message: None
    try:
        await transport.start(timeout=5)
        return "ok"
    except SignalingError as err:
        return str(err)
    finally:
        await transport.close()


async def main() -> dict[str, str]:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        names = ("localhost", "127.0.0.1", LAN)
        site = await asyncio.to_thread(ensure_site_tls, SiteCaFiles(root / "tls"), names)
        port, bridge = free_ports(2)
        settings = BrokerSettings(
            site=SITE,
            endpoints=("door",),
            host="0.0.0.0",
            port=port,
            websockets_port=None,
            bridge_port=bridge,
            tls=site.files.tls_files(),
        )
        files = await asyncio.to_thread(write_broker_config, settings, root / "broker")
        broker = MosquittoBroker(files, settings)
        await broker.start()
        try:
            return {
                "plain_from_lan": await login(broker, LAN, None),
                "tls_from_lan": await login(broker, LAN, site.files.ca_cert),
                "plain_from_loopback": await login(broker, "127.0.0.1", None),
            }
        finally:
            await broker.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
    sys.exit(0)
