"""The replay memory outlives its endpoint: written to a file, taken over by the next one.

The clocks are injected, so "the next one starts 100 s later" needs no waiting.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from services.signaling.errors import RejectedMessage, RejectReason
from services.signaling.replay import ReplayGuard

NOW = 1_800_000_000.0
NONCE = b"\x01" * 16


class Clocks:
    """A wall clock and a monotonic clock that a test moves by hand."""

    def __init__(self, wall: float = NOW, monotonic: float = 1000.0) -> None:
        self.wall = wall
        self.mono = monotonic

    def guard(self, store: Path) -> ReplayGuard:
        """A guard on these clocks, remembering into ``store``."""
        return ReplayGuard(wall_clock=lambda: self.wall, monotonic=lambda: self.mono, store=store)


def reason(guard: ReplayGuard, sender: str, nonce: bytes, ts_s: float) -> RejectReason | None:
    """Why ``guard`` refuses the message, or None when it accepts it."""
    try:
        guard.check(sender, nonce, int(ts_s * 1000))
    except RejectedMessage as err:
        return err.reason
    return None


async def test_a_nonce_is_refused_by_the_next_guard_for_the_rest_of_the_window(
    tmp_path: Path,
) -> None:
    store = tmp_path / "replay.json"
    first = Clocks()
    guard = first.guard(store)
    await guard.load()
    assert reason(guard, "door", NONCE, NOW) is None
    guard.check_new_call("door", "call-1")
    await guard.flush()

    later = Clocks(wall=NOW + 100, monotonic=5.0)  # a restart: the monotonic clock began anew
    rebuilt = later.guard(store)
    await rebuilt.load()
    assert reason(rebuilt, "door", NONCE, NOW) is RejectReason.REPLAY
    assert reason(rebuilt, "door", b"\x02" * 16, NOW + 100) is None  # a fresh message is fine
    with pytest.raises(RejectedMessage) as refused:
        rebuilt.check_new_call("door", "call-1")
    assert refused.value.reason is RejectReason.REPLAY

    much_later = Clocks(wall=NOW + 500, monotonic=9.0)
    after_window = much_later.guard(store)
    await after_window.load()
    # the nonce is forgotten, and its timestamp is stale by now; the call id is kept
    assert reason(after_window, "door", NONCE, NOW) is RejectReason.STALE
    with pytest.raises(RejectedMessage):
        after_window.check_new_call("door", "call-1")


async def test_the_store_is_written_as_soon_as_a_message_is_accepted(tmp_path: Path) -> None:
    store = tmp_path / "replay.json"
    guard = Clocks().guard(store)
    await guard.load()
    assert reason(guard, "door", NONCE, NOW) is None
    await guard.flush()
    saved = json.loads(store.read_text())
    assert [entry[:2] for entry in saved["nonces"]] == [["door", "AQEBAQEBAQEBAQEBAQEBAQ"]]


async def test_a_damaged_store_is_logged_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "replay.json"
    store.write_text(json.dumps({"nonces": [["door", "not base64url!", NOW]], "call_ids": []}))
    guard = Clocks().guard(store)
    with caplog.at_level(logging.ERROR):
        await guard.load()
    assert any("is damaged, starting empty" in r.getMessage() for r in caplog.records)
    assert reason(guard, "door", NONCE, NOW) is None
    await guard.flush()
    assert json.loads(store.read_text())["nonces"][0][0] == "door"


async def test_a_store_that_cannot_be_written_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    guard = Clocks().guard(tmp_path / "missing-directory" / "replay.json")
    await guard.load()
    for n in range(5):
        assert reason(guard, "door", bytes([n]) * 16, NOW) is None
        await guard.flush()
    assert sum("cannot be written" in r.getMessage() for r in caplog.records) == 1
    assert reason(guard, "door", b"\x00" * 16, NOW) is RejectReason.REPLAY, "still in memory"
