"""`callbox run`, as a process, starts and restarts while an attacker holds 1,000 idle sockets.

Issue 15, finding 1: with a few hundred sockets that never sent CONNECT on the site broker, a
unit restarted meanwhile could not rejoin: `callbox run` waited 10 s for the broker and
exited 1, again and again. The broker's front closes such sockets and caps them per source.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from daemon_helpers import DaemonSite, callbox, start_daemon_site
from harness.idle_attacker import IdleAttacker


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[DaemonSite]:
    site = await start_daemon_site(tmp_path)
    yield site
    await site.close()


async def test_the_door_starts_and_rejoins_after_a_restart_under_1000_idle_sockets(
    site: DaemonSite,
) -> None:
    async with IdleAttacker(site.settings.port) as attacker:
        first = await site.start_daemon()  # READY=1: logged in to the broker
        await first.stop()
        assert first.process.returncode == 0, first.log()
        assert await site.notify.next_except_watchdog() == {"STOPPING": "1"}
        await site.start_daemon()  # the restarted unit rejoins
        result = await callbox("status", "--json", "--control", site.control_path)
        assert result.code == 0, result.stderr
        assert json.loads(result.stdout)["broker"]["connected"] is True
        pending = site.broker.fronts[0].admission.pending
    assert attacker.opened >= 1000
    assert pending <= site.settings.max_pending_per_source
