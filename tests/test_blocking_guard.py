"""The blockbuster fixture of tests/conftest.py is on.

Callbox code that blocks the event loop fails the test, and the same work in a thread passes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from blockbuster import BlockingError

from services.signaling.broker import BrokerSettings, write_broker_config


def _settings() -> BrokerSettings:
    return BrokerSettings(site="test", endpoints=("door",), port=1883, websockets_port=None)


async def test_fail__file_io_of_callbox_on_the_loop(tmp_path: Path) -> None:
    with pytest.raises(BlockingError):
        write_broker_config(_settings(), tmp_path)


async def test_ok__the_same_work_in_a_thread(tmp_path: Path) -> None:
    files = await asyncio.to_thread(write_broker_config, _settings(), tmp_path)
    assert files.config.is_file()


def test_ok__no_loop_no_guard(tmp_path: Path) -> None:
    assert write_broker_config(_settings(), tmp_path).config.is_file()
