"""The bounded queue between the camera and the RTSP child: it drops to the next keyframe."""

from __future__ import annotations

from services.rtsp.service import UnitQueue
from services.rtsp.source import AccessUnit


def unit(n: int, keyframe: bool = False) -> AccessUnit:
    return AccessUnit(bytes([n]), keyframe, n)


async def test_the_queue_starts_at_a_keyframe() -> None:
    queue = UnitQueue(limit=4)
    assert not queue.put(unit(1))
    assert queue.put(unit(2, keyframe=True)) and queue.put(unit(3))
    assert [await queue.get(), await queue.get()] == [unit(2, True), unit(3)]
    assert queue.dropped == 1


async def test_a_full_queue_drops_everything_and_waits_for_the_next_keyframe() -> None:
    queue = UnitQueue(limit=3)
    for item in (unit(1, True), unit(2), unit(3)):
        assert queue.put(item)
    assert not queue.put(unit(4))  # full: the three are dropped, and 4 depends on them
    assert queue.resyncing and queue.dropped == 4
    assert not queue.put(unit(5))
    assert queue.put(unit(6, keyframe=True))
    assert await queue.get() == unit(6, True)
    assert queue.dropped == 5


async def test_clear_forgets_and_resyncs() -> None:
    queue = UnitQueue(limit=3)
    queue.put(unit(1, True))
    queue.clear()
    assert queue.resyncing and not queue.put(unit(2))
