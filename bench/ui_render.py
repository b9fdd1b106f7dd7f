"""CPU cost of showing a 640x480@30 remote video at 800x480 with the call UI's overlay.

Run: ``.venv/bin/python bench/ui_render.py [--repeats 3 --seconds 6]``. Prints one JSON
object.

Frames arrive as a decoder hands them out (``av.VideoFrame``, yuv420p, 640x480: the
stamped test pattern, made before anything is measured) at 30 fps, paced on an asyncio
loop. Two phases, interleaved, ``--repeats`` times each:

- ``ui``: what ``DefaultCallUi`` does on an indoor unit in a call: the newest frame is
  handed to the render thread, where ``ScreenRenderer`` converts it with swscale (fit to
  the screen, RGB) and draws the in-call overlay (status bar with name and timer, mute /
  speaker / door chips, three buttons, the local camera picture-in-picture fed at 10 fps),
  then ``SimDisplay.show`` takes the 800x480 frame;
- ``baseline``: the same frames, the same pacing and thread hand-off, only converted to
  640x480 RGB by PyAV's reformatter (a plain swscale loop, nothing drawn, nothing shown).

Figures per phase, over a ``--seconds`` window: ``cpu_core_s_per_s`` (the process's CPU
time, all threads, ``resource.getrusage``, per second of wall time: 1.0 is one core busy)
and ``fps`` (frames shown per second); medians over the repeats, and the ratio ui/baseline.
Targets: ``cpu_core_s_per_s`` <= 0.15, ``fps`` >= 29.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import av

from hal.camera import TestPatternCamera
from hal.display import SimDisplay
from hal.media_types import VideoFormat
from services.ui import ScreenRenderer, UiState
from services.ui.paint import FrameConverter

FPS = 30
SOURCE = VideoFormat(640, 480, FPS)
SCREEN = (800, 480)
PIP_EVERY = 3  # the PiP at 10 fps


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def make_frames(count: int) -> list[av.VideoFrame]:
    """``count`` decoded-looking frames of the moving, stamped test pattern."""
    camera = TestPatternCamera("bench")
    await camera.open(SOURCE)
    try:
        frames = [await camera.read() for _ in range(count)]
    finally:
        await camera.close()
    return [f if f.format.name == "yuv420p" else f.reformat(format="yuv420p") for f in frames]


IN_CALL = UiState(
    screen="in_call",
    status_text="In call with Front door 0:42",
    name="Flat 1",
    call_id="bench",
    peer_name="Front door",
    video=True,
    timer="0:42",
    audio_device="Speaker",
    door_text="Door opened",
    can_open_door=True,
    pip=True,
)


async def run_phase(
    frames: list[av.VideoFrame],
    seconds: float,
    render: Callable[[av.VideoFrame, av.VideoFrame | None], Any],
    show: Callable[[Any], Any] | None,
) -> dict[str, float]:
    """Feed ``frames`` at 30 fps for ``seconds``; the newest one is rendered in a thread."""
    loop = asyncio.get_running_loop()
    worker = concurrent.futures.ThreadPoolExecutor(1, "bench-render")
    latest: list[av.VideoFrame | None] = [None]
    local: list[av.VideoFrame | None] = [None]
    wake = asyncio.Event()
    shown = 0
    stop = False

    async def produce() -> None:
        start = time.monotonic()
        index = 0
        while not stop:
            latest[0] = frames[index % len(frames)]
            if index % PIP_EVERY == 0:
                local[0] = frames[(index * 7) % len(frames)]
            wake.set()
            index += 1
            await asyncio.sleep(max(0.0, start + index / FPS - time.monotonic()))  # pacing

    async def consume() -> None:
        nonlocal shown
        while not stop:
            await wake.wait()
            wake.clear()
            frame, latest[0] = latest[0], None
            pip, local[0] = local[0], None
            if frame is None:
                continue
            image = await loop.run_in_executor(worker, render, frame, pip)
            if show is not None:
                await show(image)
            shown += 1

    producer = asyncio.create_task(produce())
    consumer = asyncio.create_task(consume())
    await asyncio.sleep(1.0)  # warm-up: swscale contexts, fonts, caches
    shown, cpu0, wall0 = 0, cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)  # the measured window
    cpu, wall, count = cpu_seconds() - cpu0, time.monotonic() - wall0, shown
    stop = True
    wake.set()
    await asyncio.gather(producer, consumer)
    worker.shutdown(wait=True)
    return {"cpu_core_s_per_s": round(cpu / wall, 4), "fps": round(count / wall, 2)}


def _plain_converter() -> Callable[[av.VideoFrame, av.VideoFrame | None], Any]:
    converter = FrameConverter()

    def convert(frame: av.VideoFrame, pip: av.VideoFrame | None) -> Any:
        return converter.rgb(frame, SOURCE.width, SOURCE.height)

    return convert


async def main(repeats: int, seconds: float) -> dict[str, Any]:
    """Run the ``ui`` and ``baseline`` phases, interleaved, ``repeats`` times; the JSON report.

    Each phase measures a ``seconds`` window; the report has the medians over the repeats, the CPU
    ratio ui/baseline, the targets and every run's figures.
    """
    frames = await make_frames(FPS * 2)
    results: dict[str, list[dict[str, float]]] = {"ui": [], "baseline": []}
    for _ in range(repeats):
        renderer = ScreenRenderer(*SCREEN)
        display = SimDisplay(*SCREEN)
        results["ui"].append(
            await run_phase(
                frames, seconds, functools.partial(renderer.render, IN_CALL), display.show
            )
        )
        assert display.frames_shown > 0 and display.last_frame() is not None
        results["baseline"].append(await run_phase(frames, seconds, _plain_converter(), None))

    def median(phase: str, key: str) -> float:
        return round(statistics.median(r[key] for r in results[phase]), 4)

    ui_cpu, base_cpu = median("ui", "cpu_core_s_per_s"), median("baseline", "cpu_core_s_per_s")
    return {
        "bench": "ui_render",
        "source": f"{SOURCE.width}x{SOURCE.height}@{FPS} yuv420p",
        "screen": f"{SCREEN[0]}x{SCREEN[1]}",
        "machine": platform.machine(),
        "repeats": repeats,
        "seconds": seconds,
        "ui": {"cpu_core_s_per_s": ui_cpu, "fps": median("ui", "fps")},
        "baseline": {"cpu_core_s_per_s": base_cpu, "fps": median("baseline", "fps")},
        "cpu_ratio_ui_to_baseline": round(ui_cpu / base_cpu, 2) if base_cpu else None,
        "targets": {"cpu_core_s_per_s_max": 0.15, "fps_min": 29},
        "meets_targets": ui_cpu <= 0.15 and median("ui", "fps") >= 29,
        "runs": results,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.repeats, args.seconds)), indent=2))
