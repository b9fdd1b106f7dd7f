"""What the RTSP stream costs the door: CPU with one RTSP viewer during a call, against the call.

Run: ``.venv/bin/python bench/rtsp_cost.py [--windows 7]``. Prints one JSON object.

The door station is a real ``callbox run`` process on the sim board with ``[rtsp]`` on; the
flat, an app in this process, calls it (a monitor call, auto-answered), so the door sends
its camera (VP8, as calls default to) and its microphone. The sim camera has no H.264
encoder, so the stream's frames are encoded with libx264 in the door process (640x480 at
15 fps): an upper bound of a Pi 4, whose camera's own H.264 goes out as it is (passthrough,
no encoding). In one run, same call, ``windows`` rounds of a window without a viewer then a
window with a new ffmpeg viewer (decoding to nothing; its own CPU is the NVR's, not
counted): alternating keeps the drift of the call's own cost out of the difference. A
second part measures the passthrough path alone (a Pi 4's camera: the picamera2 back-end
on the fake of picamera2, replaying a pre-encoded clip) in this process, alternating the
same way. Each figure is CPU seconds per wall second (1.0 = one core busy) of the door's
process and of its RTSP child (GStreamer), the median over the rounds, windows of
``WINDOW_S`` seconds.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tests_path  # noqa: F401 - puts tests/ on sys.path for the harness imports
from fake_picamera2 import FakePicamera2Library
from harness.bench_cli import run_and_print
from support import wait_for

from device.config import load_config, load_or_create_identity
from device.daemon import DeviceApp
from device.simulator import Unit, config_text, contact_toml
from hal.media_types import VideoFormat
from hal.picamera import PiCamera, PiCameraMode
from services.callapi import CallStatus
from services.media.tracks import CameraSource
from services.rtsp import CameraH264, RtspService, RtspSettings
from services.signaling.broker import free_port, start_loopback_broker
from services.tasks import cancel_and_wait

WINDOW_S = 3.0
CALL_SETTLE_S = 10.0
"""Wait after the call connects before measuring (its bitrate ramps up meanwhile)."""
VIEWER_SETTLE_S = 2.0
"""Wait after a viewer starts before measuring (it connects, the stream starts)."""
STOP_SETTLE_S = 1.0
"""Wait after a viewer stops before the next window (the stream stops)."""
CALLBOX = Path(sys.executable).with_name("callbox")
USER, PASSWORD = "nvr", "bench-pass"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rtsp_children(pid: int) -> list[int]:
    """The RTSP children (services/rtsp/_child.py) of process ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"_child.py" in cmdline:
                found.append(int(entry.name))
    return found


async def window(pids: dict[str, int]) -> dict[str, float]:
    """CPU per wall second of each process over one window."""
    start = {n: await asyncio.to_thread(cpu_seconds, p) for n, p in pids.items()}
    began = time.monotonic()
    await asyncio.sleep(WINDOW_S)  # the measuring window
    wall = time.monotonic() - began
    return {n: (await asyncio.to_thread(cpu_seconds, p) - start[n]) / wall for n, p in pids.items()}


def medians(shares: dict[str, list[float]]) -> dict[str, float]:
    """The median of each process's figures, rounded."""
    return {name: round(statistics.median(values), 3) for name, values in shares.items()}


async def paired(pids: dict[str, int], windows: int, url: str) -> dict[str, Any]:
    """``windows`` rounds of a window without a viewer then one with a new ffmpeg viewer.

    Alternating keeps a drift of the call's own cost (its bitrate ramping, the machine's
    other load) out of the difference: the cost is the median of the rounds' differences.
    """
    alone: dict[str, list[float]] = {name: [] for name in pids}
    watched: dict[str, list[float]] = {name: [] for name in pids}
    viewed: list[dict[str, Any]] = []
    for _ in range(windows):
        for name, share in (await window(pids)).items():
            alone[name].append(share)
        watching = await viewer(url)
        try:
            await asyncio.sleep(VIEWER_SETTLE_S)  # it connects, the stream starts at a keyframe
            for name, share in (await window(pids)).items():
                watched[name].append(share)
        finally:
            viewed.append(await stop_viewer(watching))
        await asyncio.sleep(STOP_SETTLE_S)  # the stream stops: nobody watches
    differences = {n: [w - a for w, a in zip(watched[n], alone[n], strict=True)] for n in pids}
    return {
        "alone": medians(alone),
        "with_one_viewer": medians(watched),
        "difference": medians(differences),
        "cost_cores": round(sum(medians(differences).values()), 3),
        "viewers": {
            "frames_decoded_each": [v["frames_decoded"] for v in viewed],
            "still_watching_at_stop": all(v["ended_before_stop"] is None for v in viewed),
            "warnings": sum(v["warnings"] for v in viewed),
            "first_warnings": viewed[0]["first_warnings"],
        },
    }


def rtsp_toml(port: int) -> str:
    """The door's [rtsp] table (loopback: the bench sends nothing elsewhere)."""
    return (
        f'[rtsp]\nenabled = true\naddress = "127.0.0.1"\nport = {port}\n'
        f'username = "{USER}"\npassword = "{PASSWORD}"\n'
    )


async def start_door(directory: Path, text: str) -> asyncio.subprocess.Process:
    """``callbox run`` with the door's config; its log goes to a file."""
    config = directory / "door" / "callbox.toml"
    await asyncio.to_thread(config.write_text, text)
    log = await asyncio.to_thread((directory / "door.log").open, "wb")
    try:
        return await asyncio.create_subprocess_exec(
            CALLBOX, "run", "--config", str(config),
            "--control", str(directory / "door.sock"),
            "--first-boot", str(directory / "no-first-boot.toml"),
            stdout=log, stderr=log,
        )  # fmt: skip
    finally:
        log.close()


async def viewer(url: str) -> asyncio.subprocess.Process:
    """One NVR-like client: ffmpeg decoding the stream to nothing, its progress on stdout."""
    return await asyncio.create_subprocess_exec(
        "ffmpeg", "-nostdin", "-loglevel", "warning", "-progress", "pipe:1", "-nostats",
        "-rtsp_transport", "tcp", "-i", url, "-f", "null", "-",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def stop_viewer(process: asyncio.subprocess.Process) -> dict[str, Any]:
    """Stop the viewer; how many frames it decoded, and what it complained about."""
    ended_by_itself = process.returncode
    if ended_by_itself is None:
        process.terminate()
    out, err = await process.communicate()
    frames = [line for line in out.decode().split() if line.startswith("frame=")]
    warnings = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
    return {
        "frames_decoded": int(frames[-1].split("=")[1]) if frames else 0,
        "ended_before_stop": ended_by_itself,  # None: it was still watching
        "warnings": len(warnings),
        "first_warnings": warnings[:3],
    }


async def wait_child(door: int, timeout: float = 20.0) -> int:
    """The door's RTSP child, once it runs."""
    found: list[int] = []

    def running() -> bool:
        found[:] = rtsp_children(door)  # /proc: a few hundred small reads
        return bool(found)

    await wait_for(running, "the door's RTSP child", timeout)
    return found[0]


async def run(windows: int) -> dict[str, Any]:
    """Start the site, run the phases, build the JSON report."""
    load = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="callbox-bench-rtsp-") as tmp:
        directory = Path(tmp)
        broker = await start_loopback_broker(directory, site="bench", endpoints=("door", "flat"))
        settings, files = broker.settings, broker.files
        keys = {
            a: (await asyncio.to_thread(load_or_create_identity, directory / a)).public_keys
            for a in ("door", "flat")
        }
        port = free_port()
        door_text = config_text(
            Unit("door", "door", extra_toml=rtsp_toml(port)), "bench", settings.port,
            files.passwords["door"], contact_toml("flat", "indoor", keys["flat"]), ["flat"],
        ).replace("{state}", str(directory / "door"))  # fmt: skip
        flat_text = config_text(
            Unit("flat", "indoor"), "bench", settings.port, files.passwords["flat"],
            contact_toml("door", "door", keys["door"]), ["door"],
        ).replace("{state}", str(directory / "flat"))  # fmt: skip
        flat_path = directory / "flat" / "callbox.toml"
        await asyncio.to_thread(flat_path.write_text, flat_text)
        door = await start_door(directory, door_text)
        flat = DeviceApp(await asyncio.to_thread(load_config, flat_path))
        processes = [door]
        try:
            await flat.start()
            assert flat.endpoint is not None
            calls = flat.endpoint.calls
            await flat.endpoint.signaling.wait_presence("door", True, timeout=30)
            child = await wait_child(door.pid)
            pids = {"door": door.pid, "rtsp_child": child}
            props = calls.create_call_properties(True)
            props.user = calls.profile_of("door")
            call = calls.call(props)
            assert call is not None
            await call.start()
            await wait_for(lambda: call.status == CallStatus.CONNECTED, "the call connected", 20)
            await asyncio.sleep(CALL_SETTLE_S)  # the call's encoder and bitrate settle
            url = f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{port}/door"
            figures = await paired(pids, windows, url)
            connected = call.status == CallStatus.CONNECTED
            await call.hangup()
        finally:
            await flat.close()
            for process in processes:
                if process.returncode is None:
                    process.terminate()
                    await process.wait()
            await broker.close()
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "load_average_at_start": load,
        "rounds": windows,
        "window_s": WINDOW_S,
        "call_still_connected": connected,
        "sim_door_with_a_call": figures,
        "door_process_ratio_viewer_to_alone": round(
            figures["with_one_viewer"]["door"] / figures["alone"]["door"], 2
        ),
    }


async def passthrough(windows: int) -> dict[str, Any]:
    """The stream's cost when the camera's own H.264 goes out (a Pi 4), in this process.

    The camera is the picamera2 back-end on the fake of picamera2 replaying a pre-encoded
    clip (so its encoder costs nothing here, as the VideoCore's costs a Pi's CPU nothing);
    a reader takes every packet as a call's H.264 track would. Then one ffmpeg viewer.
    """
    fake = FakePicamera2Library(clip_frames=90)
    source = CameraSource(
        PiCamera("pi", mode=PiCameraMode.H264, library=fake), VideoFormat(640, 480, 30)
    )
    settings = RtspSettings(address="127.0.0.1", port=0, username=USER, password=PASSWORD)
    service = RtspService(settings, CameraH264(source))

    async def call_track() -> None:
        seq = 0
        while True:
            seq, _ = await source.encoded.next_packet(seq)

    reader = asyncio.create_task(call_track())
    try:
        await service.start()
        port = await service.wait_ready(20)
        assert service.child_pid is not None
        pids = {"process": os.getpid(), "rtsp_child": service.child_pid}
        await asyncio.sleep(CALL_SETTLE_S)  # the camera's clip is made, the reader runs
        figures = await paired(pids, windows, f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{port}/door")
        passthrough_on = bool(service.status()["passthrough"])
    finally:
        await cancel_and_wait([reader])
        await service.close()
        await source.close()
    return {"passthrough": passthrough_on, **figures}


async def run_all(windows: int) -> dict[str, Any]:
    """Both parts: the sim door with a call (encoding), then passthrough."""
    report = await run(windows)
    report["passthrough_pi_camera"] = await passthrough(windows)
    return report


def main() -> None:
    """Parse arguments, run, print JSON."""
    run_and_print(__doc__, run_all, "windows", 7)


if __name__ == "__main__":
    main()
