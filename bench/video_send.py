"""CPU cost of sending 720p30 video: H.264 passthrough against re-encoding the same stream.

Run: ``.venv/bin/python bench/video_send.py [--repeats 3 --seconds 8]``. Prints one JSON
object.

The sender is a MediaSession on a CameraSource whose camera is hal.picamera.PiCamera, run
in three ways, interleaved, ``--repeats`` times each:

- ``passthrough``: H.264 negotiated, the camera's hardware encoder output goes out as it is;
- ``reencode``: H.264 negotiated, the camera hands out raw YUV420 frames and aiortc encodes
  them with libx264 (a Pi 5, or callbox without passthrough);
- ``vp8``: VP8 negotiated, raw frames encoded by aiortc's libvpx (for reference).

picamera2 cannot run here, so the camera runs on tests/fake_picamera2.py in replay mode: a
2 s clip of the stamped test pattern, with sensor-like grain (``--noise``: a clean
synthetic picture is far cheaper to encode than a camera's), is rendered and H.264-encoded
once, before anything is measured, and then replayed at 30 fps, the way the VideoCore
would deliver it; so the "hardware" encoding is not counted on the CPU, and the raw frames
and the packets are the same pictures. The receiver is a MediaSession in a child process
(its decoding is not counted either). Figures per phase, over a ``--seconds`` window after
``--warmup`` s:

- ``cpu_core_s_per_s``: the sending process's CPU time (user + system, all threads, from
  ``resource.getrusage``) per second of wall time: 1.0 is one core busy;
- ``received_fps``: frames the receiver decoded per second in the window;
- ``emit_to_decoded_ms``: from the moment the camera delivered a frame (the sensor thread
  of the fake) to the moment the receiver's aiortc handed it out decoded: the glass-to-glass
  path minus the sensor and the hardware encoder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import time
from multiprocessing.connection import Connection
from typing import Any

import tests_path  # noqa: F401 - puts tests/ on sys.path for the one fake
from fake_picamera2 import FakePicamera2Library

from hal.camera import decode_stamp
from hal.media_types import VideoFormat
from hal.picamera import PiCamera, PiCameraMode
from services.media.ice import LOOPBACK
from services.media.session import MediaSession, MediaSettings
from services.media.tracks import CameraSource

PHASES = {
    "passthrough": (PiCameraMode.H264, "H264"),
    "reencode": (PiCameraMode.RAW, "H264"),
    "vp8": (PiCameraMode.RAW, "VP8"),
}
TARGET_RATIO = 0.25
CLIP_FRAMES = 60


# the receiver, in a child process ----------------------------------------------------------


def _recorder(arrivals: list[tuple[int, float]]) -> Any:
    def record(frame: Any) -> None:
        arrivals.append((decode_stamp(frame)[0], time.monotonic()))

    return record


async def _receive(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    while True:
        message = await loop.run_in_executor(None, conn.recv)
        if message[0] == "exit":
            return
        _, codec, offer = message
        arrivals: list[tuple[int, float]] = []
        session = MediaSession(
            MediaSettings(video_codec=codec, ice=LOOPBACK),
            video_source=None,
            audio_source=None,
            speaker=None,
            label="receiver",
        )
        session.on_video_frame = _recorder(arrivals)
        conn.send(await session.accept_offer(offer))
        await loop.run_in_executor(None, conn.recv)  # "stop"
        await session.close()
        conn.send((arrivals, session.stats.video_size))


def receiver_main(conn: Connection) -> None:
    """The child process: answers offers and reports what it decoded."""
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_receive(conn))


# the sender, measured ----------------------------------------------------------------------


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _latencies(emitted: list[tuple[int, float]], arrivals: list[tuple[int, float]]) -> list[float]:
    """Per decoded frame: its arrival minus the last emission of that picture before it."""
    latencies = []
    for counter, arrived in arrivals:
        sent = [t for c, t in emitted if c == counter and t <= arrived]
        if sent:
            latencies.append((arrived - max(sent)) * 1000)
    return latencies


async def run_phase(
    name: str, conn: Connection, fake: FakePicamera2Library, fmt: VideoFormat, args: Any
) -> dict[str, Any]:
    """One call of ``name``: warm up, then measure CPU and what the receiver decoded."""
    mode, codec = PHASES[name]
    loop = asyncio.get_running_loop()
    camera = PiCamera("bench", mode=mode, library=fake, bitrate_bps=1_000_000)
    source = CameraSource(camera, fmt)
    sender = MediaSession(
        MediaSettings(video_codec=codec, ice=LOOPBACK),
        video_source=source.shared,
        audio_source=None,
        speaker=None,
        label=name,
    )
    try:
        conn.send(("offer", codec, await sender.create_offer()))
        await sender.apply_answer(await loop.run_in_executor(None, conn.recv))
        sender.set_sending(audio=False, video=True)
        await asyncio.wait_for(sender.connected.wait(), 10)
        await asyncio.sleep(args.warmup)
        start, cpu_start = time.monotonic(), _cpu_seconds()
        await asyncio.sleep(args.seconds)
        end, cpu_end = time.monotonic(), _cpu_seconds()
        passthrough = sender.video_passthrough
        encoder = sender.video_encoder()
        conn.send(("stop",))
        arrivals, size = await loop.run_in_executor(None, conn.recv)
    finally:
        await sender.close()
        await source.close()
    window = [(c, t) for c, t in arrivals if start <= t <= end]
    latencies = _latencies(fake.camera.emitted, window)
    return {
        "cpu_core_s_per_s": (cpu_end - cpu_start) / (end - start),
        "received_fps": len(window) / (end - start),
        "emit_to_decoded_ms": statistics.median(latencies) if latencies else None,
        "received_size": list(size),
        "passthrough": passthrough,
        "frames_encoded_by_aiortc": encoder.frames_encoded if encoder else None,
    }


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return round(statistics.median(values), 3) if values else None


async def bench(args: argparse.Namespace, conn: Connection) -> dict[str, Any]:
    """Every phase ``args.repeats`` times, interleaved; medians and the ratio."""
    fmt = VideoFormat(args.width, args.height, args.fps)
    fake = FakePicamera2Library(clip_frames=CLIP_FRAMES, noise=args.noise)
    warm = PiCamera("clip", library=fake)
    await warm.open(fmt)  # renders and encodes the replayed clip once, before any phase
    await warm.close()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in PHASES}
    for _ in range(args.repeats):
        for name in PHASES:
            runs[name].append(await run_phase(name, conn, fake, fmt, args))
    phases: dict[str, dict[str, Any]] = {
        name: {
            "cpu_core_s_per_s": _median(results, "cpu_core_s_per_s"),
            "received_fps": _median(results, "received_fps"),
            "emit_to_decoded_ms": _median(results, "emit_to_decoded_ms"),
            "runs": [{k: _round(v) for k, v in r.items()} for r in results],
        }
        for name, results in runs.items()
    }
    passthrough = phases["passthrough"]["cpu_core_s_per_s"]
    reencode = phases["reencode"]["cpu_core_s_per_s"]
    ratio = round(passthrough / reencode, 3) if passthrough and reencode else None
    return {
        "video": f"{fmt.width}x{fmt.height}@{fmt.fps}",
        "bitrate_bps": 1_000_000,
        "noise": args.noise,
        "window_s": args.seconds,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "phases": phases,
        "passthrough_to_reencode_cpu_ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio is not None and ratio <= TARGET_RATIO,
    }


def _round(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def main() -> None:
    """Parse the arguments, start the receiver process, print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument(
        "--noise", type=int, default=4, help="sensor-like grain (+- levels) in the picture"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    receiver = context.Process(target=receiver_main, args=(child,), name="receiver")
    receiver.start()
    try:
        result = asyncio.run(bench(args, parent))
    finally:
        parent.send(("exit",))
        receiver.join(10)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
