"""Visitor snapshots: real JPEGs from real frames, atomic names, retention by count and age.

Labels that cannot escape the directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import av
import numpy as np
import pytest

from services.intercom.snapshots import SnapshotError, SnapshotStore, sanitize_label

NAME = re.compile(r"(\d{8}T\d{6})-([a-z0-9_-]+)-[0-9a-f]+\.jpg")


def gradient_frame(width: int = 320, height: int = 240) -> av.VideoFrame:
    """Dark on the left, bright on the right, with a red band at the top."""
    ramp = np.linspace(0, 255, width, dtype=np.float32).astype(np.uint8)
    image = np.repeat(np.repeat(ramp[None, :, None], height, axis=0), 3, axis=2)
    image[: height // 8, :, :] = (255, 0, 0)
    return av.VideoFrame.from_ndarray(image, format="rgb24")


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


def make_files(store: SnapshotStore, ages_s: list[float], now: float) -> list[Path]:
    """One snapshot file per age (seconds before `now`), with that modification time."""
    paths = []
    store.directory.mkdir(parents=True, exist_ok=True)
    for index, age in enumerate(ages_s):
        path = store.directory / f"20240101T0000{index:02d}-door-{index:08x}.jpg"
        path.write_bytes(b"\xff\xd8 fake jpeg")
        os.utime(path, (now - age, now - age))
        paths.append(path)
    return paths


async def test_ok__saved_jpeg_shows_the_frame(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    before = time.gmtime(time.time() - 1)
    path = await store.save(gradient_frame(), "Front door")
    match = NAME.fullmatch(path.name)
    assert match is not None, path.name
    assert path.parent == store.directory
    assert match.group(2) == "front_door"
    assert match.group(1) >= time.strftime("%Y%m%dT%H%M%S", before)
    assert path.read_bytes()[:2] == b"\xff\xd8"  # JPEG SOI marker
    pixels = decode(path).astype(int)
    assert pixels.shape == (240, 320, 3)
    assert pixels.std() > 30  # not a uniform picture
    body = pixels[60:, :, :]
    assert body[:, :40].mean() < 40 < 215 < body[:, -40:].mean()  # the gradient survived
    red = pixels[5:25, 100:200].mean(axis=(0, 1))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60  # the red band too
    assert await asyncio.to_thread(store.list) == [path]
    assert [p.name for p in store.directory.iterdir()] == [path.name]  # no temp file left


async def test_ok__any_pixel_format(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    frame = gradient_frame(160, 120).reformat(format="yuv420p")
    path = await store.save(frame, "door")
    assert decode(path).shape == (120, 160, 3)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("door", "door"),
        ("Flat 1", "flat_1"),
        ("../../etc/passwd", "etc_passwd"),
        ("/abs/path", "abs_path"),
        ("..", "snapshot"),
        ("", "snapshot"),
        ("Über-Tür", "ber-t_r"),
        ("x" * 100, "x" * 32),
    ],
)
def test_ok__sanitize_label(label: str, expected: str) -> None:
    assert sanitize_label(label) == expected


async def test_ok__label_cannot_escape_the_directory(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    path = await store.save(gradient_frame(64, 48), "../../outside/x")
    assert path.parent == store.directory
    assert "/" not in path.name and ".." not in path.name
    assert [p.name for p in await asyncio.to_thread(lambda: list(tmp_path.rglob("*.jpg")))] == [
        path.name
    ]


async def test_ok__prune_keeps_the_newest_count(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep_count=3)
    now = time.time()
    paths = make_files(store, [50, 10, 40, 20, 30], now)
    assert await asyncio.to_thread(store.list) == [paths[1], paths[3], paths[4], paths[2], paths[0]]
    removed = await store.prune(now)
    assert sorted(removed) == sorted([paths[2], paths[0]])
    assert await asyncio.to_thread(store.list) == [paths[1], paths[3], paths[4]]


async def test_ok__prune_removes_old_files(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep_count=50, max_age_s=3600)
    now = time.time()
    paths = make_files(store, [10, 3599, 3601, 86400], now)
    assert sorted(await store.prune(now)) == sorted(paths[2:])
    assert await asyncio.to_thread(store.list) == paths[:2]
    assert await store.prune(now) == []


async def test_ok__save_prunes(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep_count=2, max_age_s=3600)
    now = time.time()
    old = make_files(store, [7200, 60, 30], now)
    path = await store.save(gradient_frame(64, 48), "door")
    assert await asyncio.to_thread(store.list) == [path, old[2]]


async def test_ok__list_ignores_other_files(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "missing")
    assert await asyncio.to_thread(store.list) == []
    assert await store.prune() == []
    store.directory.mkdir()
    (store.directory / "notes.txt").write_text("keep me")
    (store.directory / ".20240101T000000-door-00.jpg.tmp").write_bytes(b"partial")
    (store.directory / "20240101T000000-door-00.jpg").mkdir()
    store_one = SnapshotStore(store.directory, keep_count=1)
    assert await asyncio.to_thread(store_one.list) == []
    assert await store_one.prune() == []
    assert (store.directory / "notes.txt").read_text() == "keep me"


def test_fail__bad_limits(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_count must be >= 1"):
        SnapshotStore(tmp_path, keep_count=0)
    with pytest.raises(ValueError, match="max_age_s must be > 0"):
        SnapshotStore(tmp_path, max_age_s=0)


async def test_fail__unwritable_directory_names_it(tmp_path: Path) -> None:
    blocker = tmp_path / "snapshots"
    blocker.write_text("a file where the directory should be")
    store = SnapshotStore(blocker)
    with pytest.raises(SnapshotError, match=f"{blocker}: cannot create directory"):
        await store.save(gradient_frame(64, 48), "door")
    assert blocker.read_text() == "a file where the directory should be"
