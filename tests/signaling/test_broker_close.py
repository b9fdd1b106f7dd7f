"""MosquittoBroker.close() is idempotent, and a second call waits for mosquitto to exit."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.signaling.broker import (
    BrokerSettings,
    MosquittoBroker,
    free_ports,
    write_broker_config,
)


async def test_ok__broker_second_close_waits_for_mosquitto_to_exit(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    settings = BrokerSettings(site="test", endpoints=("door",), port=port, websockets_port=None)
    files = await asyncio.to_thread(write_broker_config, settings, tmp_path)
    broker = MosquittoBroker(files, settings)
    await broker.start()
    process = broker._process
    assert process is not None
    first = asyncio.create_task(broker.close())
    await asyncio.sleep(0)  # the first close is under way (SIGTERM sent, waiting)
    await broker.close()
    assert process.returncode is not None, "close() returned while mosquitto still ran"
    await first
