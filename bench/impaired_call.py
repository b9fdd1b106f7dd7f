"""Calls over impaired networks: callbox against bare aiortc, per network profile.

Run: ``.venv/bin/python bench/impaired_call.py [--quick] [--profile NAME ...] [--runs 2]
[--seconds 30] [--stacks callbox bare] [--out FILE]``. Prints (or writes) one JSON object.

The script re-executes itself under ``unshare -rn`` and builds a ``harness.netlab.NetLab``:
the door station in one network namespace (with the broker, on its own address), the
indoor unit in another, and between them the userspace impairment forwarder
(``harness.impairment``), through which every packet goes: the media's UDP and the indoor
unit's MQTT connection. Nothing leaves the namespaces; no STUN server is used.

First the forwarder is verified: a UDP probe measures loss, one-way delay and rate for
each static profile (and an outage) and compares them with what the profile should do.
Then, per profile, ``--runs`` calls per stack, alternating: the door calls the indoor unit,
which answers at once (``callbox``: the installed Call API, each endpoint a process of
``bench/impaired_endpoint.py``; ``bare``: two plain RTCPeerConnections with the same fake
camera and microphone, SDP relayed by this script). Once media flows both ways the window
(``--seconds``) starts; events (outage, broker kill, indoor SIGKILL) happen ``LEAD_S`` into
it. Per direction: video fps (median and worst whole second), the longest freeze (largest
gap between decoded frames, window edges included), video latency (capture stamp in the
frame's luma to decode; every namespace shares CLOCK_MONOTONIC), audio missing (gaps in the
decoded audio's pts, plus silence at the window's edges), relative audio delay (arrival
minus pts, above its minimum: jitter plus whatever the receive buffer adds; the only audio
delay bare aiortc lets one derive), and whatever the installed session's
``audio_receive_stats()`` (and similar) report. Figures are medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tests_path  # noqa: F401 - puts tests/ on sys.path for the harness imports
from harness.impairment import Impairment
from harness.netlab import SIDES, NetLab, env_with_tests_on_path, reexec_in_private_netns
from harness.udp_probe import check_outage, check_profile

from services.callapi import CallStatus
from services.signaling.broker import BrokerSettings, write_broker_config
from services.signaling.identity import Identity

ENDPOINT = Path(__file__).resolve().parent / "impaired_endpoint.py"
BROKER_PORT = 18830
LEAD_S = 5.0
OUTAGE_S = 20.0
BROKER_DOWN_S = 5.0
SETUP_TIMEOUT_S = 45.0


@dataclass(frozen=True)
class Profile:
    """A network profile: the same impairment both ways, and an event in the window."""

    name: str
    path: Impairment = field(default_factory=Impairment)
    event: str = ""  # "", "outage", "broker_restart", "kill_indoor"
    description: str = ""


PROFILES = {
    p.name: p
    for p in (
        Profile("clean", description="no impairment"),
        Profile(
            "loss1_20ms",
            Impairment(loss=0.01, delay_ms=20, jitter_ms=5),
            description="1 % random loss, 20 ± 5 ms",
        ),
        Profile(
            "loss5_50ms",
            Impairment(loss=0.05, delay_ms=50, jitter_ms=20),
            description="5 % random loss, 50 ± 20 ms",
        ),
        Profile(
            "cap500k_30ms",
            Impairment(rate_kbps=500, queue_ms=100, delay_ms=30),
            description="500 kbit/s cap (100 ms queue), 30 ms",
        ),
        Profile(
            "burst3_40ms",
            Impairment(burst_p=0.01, burst_r=0.3, delay_ms=40),
            description="Gilbert-Elliott bursts, ~3.2 % loss (mean burst 3.3 packets), 40 ms",
        ),
        Profile("outage20", event="outage", description=f"{OUTAGE_S:.0f} s outage, both ways"),
        Profile(
            "broker_restart",
            event="broker_restart",
            description=f"mosquitto SIGKILLed, back after {BROKER_DOWN_S:.0f} s",
        ),
        Profile("kill_indoor", event="kill_indoor", description="indoor unit SIGKILLed"),
    )
}


class Endpoint:
    """One endpoint process and its JSON-lines command channel."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process

    async def read(self, timeout: float) -> dict[str, Any]:
        """The next JSON line the endpoint prints."""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.name} exited (code {await self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def ask(self, command: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Send a command; its answer (RuntimeError if it failed)."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()
        answer = await self.read(timeout)
        if not answer.get("ok"):
            raise RuntimeError(f"{self.name} {command['cmd']}: {answer.get('error')}")
        return answer

    async def stop(self) -> None:
        """Ask it to quit; kill it if it does not within 10 s."""
        process = self.process
        if process.returncode is None and process.stdin is not None:
            try:
                process.stdin.write(b'{"cmd": "quit"}\n')
                await process.stdin.drain()
                process.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()

    @property
    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.returncode is None


def callbox_configs(directory: Path, video: tuple[int, int, int]) -> dict[str, dict[str, Any]]:
    """The door's and indoor unit's configs: identities, each other's keys, the broker."""
    accounts = ("door", "indoor1")
    settings = BrokerSettings(
        site="bench", endpoints=accounts, host=SIDES["a"][0], port=BROKER_PORT,
        websockets_port=None,
    )  # fmt: skip
    files = write_broker_config(settings, directory / "broker")
    identities = {a: Identity.generate() for a in accounts}
    configs = {}
    for side, address, peer, tone in (
        ("a", "door", "indoor1", 440.0),
        ("b", "indoor1", "door", 660.0),
    ):
        identities[address].save(directory / address)
        configs[side] = {
            "stack": "callbox",
            "role": "door" if address == "door" else "indoor",
            "address": address,
            "site": "bench",
            "tone_hz": tone,
            "video": list(video),
            "identity_dir": str(directory / address),
            "peer": {"address": peer, "keys": identities[peer].public_keys.to_json()},
            "broker": {
                "host": SIDES["a"][0],
                "port": BROKER_PORT,
                "password": files.passwords[address],
                "accounts": list(accounts),
                "directory": str(directory / "broker"),
            },
        }
    return configs


def bare_configs(video: tuple[int, int, int]) -> dict[str, dict[str, Any]]:
    """The two bare aiortc endpoints' configs."""
    return {
        side: {"stack": "bare", "role": role, "tone_hz": tone, "video": list(video)}
        for side, role, tone in (("a", "door", 440.0), ("b", "indoor", 660.0))
    }


async def start_endpoints(
    lab: NetLab, configs: dict[str, dict[str, Any]], directory: Path
) -> dict[str, Endpoint]:
    """Start both endpoint processes in their sides and wait until both say ready."""
    endpoints = {}
    # mosquitto's generated config runs it as $USER: inside unshare -r only root can be
    env = env_with_tests_on_path({"USER": "root", "LOGNAME": "root"})
    for side, config in configs.items():
        path = directory / f"{side}.json"
        path.write_text(json.dumps(config))
        process = await lab.spawn(
            side,
            [sys.executable, str(ENDPOINT), str(path)],
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,
        )
        endpoints[side] = Endpoint("door" if side == "a" else "indoor", process)
    await asyncio.gather(*(e.read(SETUP_TIMEOUT_S) for e in endpoints.values()))
    return endpoints


def is_terminal(status: str) -> bool:
    """Whether a recorded status ends the call (callbox status, or bare pc state)."""
    if status in ("pc:failed", "pc:closed"):
        return True
    return status in CallStatus.__members__ and bool(CallStatus[status] & 0x40)


async def wait_media(endpoints: dict[str, Endpoint], timeout: float) -> bool:
    """Wait until both sides decoded video and audio; False on timeout or an ended call."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = [await e.ask({"cmd": "counts"}) for e in endpoints.values()]
        if all(c["video"] > 0 and c["audio"] > 0 for c in counts):
            return True
        if any(is_terminal(s) for c in counts for s in c["status"]):
            return False
        await asyncio.sleep(0.25)
    return False


async def connect(stack: str, endpoints: dict[str, Endpoint]) -> None:
    """Place the call (callbox) or exchange the SDP (bare)."""
    door, indoor = endpoints["a"], endpoints["b"]
    if stack == "callbox":
        await door.ask({"cmd": "call"}, SETUP_TIMEOUT_S)
        return
    offer = await door.ask({"cmd": "offer"})
    answer = await indoor.ask({"cmd": "answer", "sdp": offer["sdp"]})
    await door.ask({"cmd": "apply", "sdp": answer["sdp"]})


async def wait_end(door: Endpoint, timeout: float) -> float | None:
    """Monotonic time when the door's call ended, polling; None if it did not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = await door.ask({"cmd": "report"})
        for at, status in report["status"]:
            if is_terminal(status):
                return float(at)
        await asyncio.sleep(0.2)
    return None


async def run_event(
    lab: NetLab, profile: Profile, endpoints: dict[str, Endpoint], t0: float, window: float
) -> dict[str, Any]:
    """Wait ``LEAD_S``, do the profile's event, wait out the window; the event's times."""
    events: dict[str, Any] = {}
    await asyncio.sleep(max(0.0, t0 + LEAD_S - time.monotonic()))
    if profile.event == "outage":
        events["outage_start"] = time.monotonic()
        await lab.outage(OUTAGE_S)
        events["outage_end"] = events["outage_start"] + OUTAGE_S
    elif profile.event == "broker_restart":
        events["broker_killed"] = time.monotonic()
        await endpoints["a"].ask({"cmd": "broker_kill"})
        await asyncio.sleep(BROKER_DOWN_S)
        await endpoints["a"].ask({"cmd": "broker_start"})
        events["broker_back"] = time.monotonic()
    elif profile.event == "kill_indoor":
        events["killed"] = time.monotonic()
        endpoints["b"].process.send_signal(signal.SIGKILL)
        await endpoints["b"].process.wait()
        ended = await wait_end(endpoints["a"], 90.0)
        events["door_ended"] = ended
        return events
    await asyncio.sleep(max(0.0, t0 + window - time.monotonic()))
    return events


def window_for(profile: Profile, seconds: float) -> float:
    """How long the measured window lasts: long enough for the event and a recovery."""
    if profile.event == "outage":
        return max(seconds, LEAD_S + OUTAGE_S + 15.0)
    if profile.event == "broker_restart":
        return max(seconds, LEAD_S + BROKER_DOWN_S + 10.0)
    return seconds


async def one_call(
    lab: NetLab,
    stack: str,
    profile: Profile,
    seconds: float,
    video: tuple[int, int, int],
    directory: Path,
) -> dict[str, Any]:
    """One call over ``profile`` with ``stack``: raw timelines reduced to figures."""
    await lab.set_profile(asdict(profile.path), asdict(profile.path))
    configs = (
        await asyncio.to_thread(callbox_configs, directory, video)
        if stack == "callbox"
        else bare_configs(video)
    )
    before = await lab.stats()
    endpoints = await start_endpoints(lab, configs, directory)
    try:
        started = time.monotonic()
        await connect(stack, endpoints)
        if not await wait_media(endpoints, SETUP_TIMEOUT_S):
            reports = {s: await e.ask({"cmd": "report"}) for s, e in endpoints.items()}
            return {"ok": False, "error": "no two-way media", "status": _statuses(reports)}
        t0 = time.monotonic()
        window = window_for(profile, seconds)
        events = await run_event(lab, profile, endpoints, t0, window)
        t1 = time.monotonic() if profile.event == "kill_indoor" else t0 + window
        if endpoints["a"].alive:
            await endpoints["a"].ask({"cmd": "hangup"})
        await asyncio.sleep(2.0)  # the hangup reaches the indoor unit
        reports = {s: await e.ask({"cmd": "report"}) for s, e in endpoints.items() if e.alive}
        after = await lab.stats()
        return {
            "ok": True,
            **figures(reports, started, t0, t1, events, profile),
            "forwarder": forwarder_delta(before, after),
        }
    finally:
        for endpoint in endpoints.values():
            await endpoint.stop()


def _statuses(reports: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    return {side: [s for _, s in r["status"]] for side, r in reports.items()}


def forwarder_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the forwarder did during one call, per direction."""
    delta = {}
    for name, direction in after["directions"].items():
        old = before["directions"][name]["stats"]
        delta[name] = {k: v - old[k] for k, v in direction["stats"].items()}
    return delta


def figures(
    reports: dict[str, dict[str, Any]],
    started: float,
    t0: float,
    t1: float,
    events: dict[str, Any],
    profile: Profile,
) -> dict[str, Any]:
    """Per direction (named by sender), the window's figures and the event's outcome."""
    result: dict[str, Any] = {"window_s": round(t1 - t0, 1), "setup_s": round(t0 - started, 2)}
    for side, direction in (("b", "door_to_indoor"), ("a", "indoor_to_door")):
        report = reports.get(side)
        if report is None:
            result[direction] = None
            continue
        result[direction] = {
            **video_figures(report["video"], t0, t1),
            **audio_figures(report["audio"], t0, t1),
            "receive_stats": stats_figures(report["samples"], t0, t1),
            **event_figures(report, events, t1),
        }
    if "door_ended" in events:
        ended = events["door_ended"]
        result["door_call_end_after_kill_s"] = (
            round(ended - events["killed"], 2) if ended is not None else None
        )
        door = reports.get("a")
        result["door_end_status"] = _first_terminal(door["status"]) if door else None
    return result


def video_figures(frames: list[list[Any]], t0: float, t1: float) -> dict[str, Any]:
    """Frames per whole second (median, worst), the longest freeze, the latency.

    ``video_stale_frames``: decoded frames whose capture counter is not above every earlier
    one, i.e. an old picture shown again (a decoder fed frames whose references were lost).
    """
    times = [f[0] for f in frames if t0 <= f[0] <= t1]
    seconds = max(1, int(t1 - t0))
    counts = [0] * seconds
    for t in times:
        index = int(t - t0)
        if index < seconds:
            counts[index] += 1
    edges = [t0, *times, t1]
    freeze = max(b - a for a, b in itertools.pairwise(edges))
    latencies = [f[1] for f in frames if t0 <= f[0] <= t1 and f[1] is not None]
    tail = [f[1] for f in frames if t1 - 5 <= f[0] <= t1 and f[1] is not None]
    stale, newest = 0, -1
    for f in frames:  # a counter not above every earlier one: an old picture shown again
        counter = f[2] if len(f) > 2 else None
        if counter is None:
            continue
        if counter <= newest and t0 <= f[0] <= t1:
            stale += 1
        newest = max(newest, counter)
    return {
        "video_fps_median": statistics.median(counts),
        "video_fps_worst": min(counts),
        "video_longest_freeze_ms": round(freeze * 1000),
        "video_latency_ms_median": _round(_median(latencies)),
        "video_latency_ms_p95": _round(_percentile(latencies, 95)),
        "video_latency_ms_last5s": _round(_median(tail)),
        "video_frames": len(times),
        "video_stale_frames": stale,
    }


def audio_figures(frames: list[list[Any]], t0: float, t1: float) -> dict[str, Any]:
    """Missing audio from pts gaps and the window's silent edges; relative delay."""
    inside = [f for f in frames if t0 <= f[0] <= t1 and f[1] is not None]
    if not inside:
        return {"audio_missing_ms": round((t1 - t0) * 1000), "audio_frames": 0}
    missing = max(0.0, inside[0][0] - t0 - 0.02) + max(0.0, t1 - inside[-1][0] - 0.02)
    longest = 0.0
    delays: list[float] = []
    segment: list[float] = []
    for previous, current in itertools.pairwise(inside):
        expected = previous[1] + previous[2] / previous[3]
        gap = current[1] - expected
        if -0.001 <= gap < 60:  # the same stream: a pts gap is audio that never came
            missing += max(0.0, gap)
            longest = max(longest, gap)
        else:  # a new stream (a rebuilt session): what the arrival times say is missing
            arrival_gap = current[0] - previous[0] - previous[2] / previous[3]
            missing += max(0.0, arrival_gap)
            longest = max(longest, arrival_gap)
            delays += _relative(segment)
            segment = []
        segment.append(current[0] - current[1])
    delays += _relative(segment)
    return {
        "audio_missing_ms": round(missing * 1000),
        "audio_longest_gap_ms": round(longest * 1000),
        "audio_relative_delay_ms_median": _round(_median(delays)),
        "audio_relative_delay_ms_p95": _round(_percentile(delays, 95)),
        "audio_frames": len(inside),
    }


def _relative(delays: list[float]) -> list[float]:
    """Delays above the segment's smallest one, in ms."""
    if not delays:
        return []
    low = min(delays)
    return [(d - low) * 1000 for d in delays]


def stats_figures(samples: list[list[Any]], t0: float, t1: float) -> dict[str, Any]:
    """The receive statistics sampled in the window: last values, medians of numbers.

    Whatever the installed session reports (``audio_receive_stats()`` and the like) is
    flattened to ``name.field`` keys; for each number the last sample in the window, its
    change over the window (``delta``: what a counter counted in it) and the median over the
    window's samples are given. aiortc's inbound RTP counters come too.
    """
    inside = [values for at, values in samples if t0 <= at <= t1]
    if not inside:
        return {}
    series: dict[str, list[float]] = {}
    for values in inside:
        for key, number in _flatten(values):
            series.setdefault(key, []).append(number)
    return {
        key: {
            "last": _round(numbers[-1]),
            "delta": _round(numbers[-1] - numbers[0]),
            "median": _round(statistics.median(numbers)),
        }
        for key, numbers in series.items()
    }


def _flatten(values: Any, prefix: str = "") -> Iterable[tuple[str, float]]:
    if isinstance(values, dict):
        for key, value in values.items():
            yield from _flatten(value, f"{prefix}{key}.")
    elif isinstance(values, (bool, int | float)):
        yield prefix.rstrip("."), float(values)


def event_figures(report: dict[str, Any], events: dict[str, Any], t1: float) -> dict[str, Any]:
    """The call's fate on this side: ended or not, RECONNECTING, media back after an outage."""
    statuses = [(at, s) for at, s in report["status"] if at <= t1]
    ended = _first_terminal(statuses)
    result: dict[str, Any] = {"survived_window": ended is None, "ended_with": ended}
    after = [(at, s) for at, s in report["status"] if at > t1]
    result["end_status_after_hangup"] = _first_terminal(after)
    start = events.get("outage_start") or events.get("broker_killed")
    if start is not None:
        ended_at = next((at for at, s in statuses if at >= start and is_terminal(s)), None)
        result["ended_after_event_s"] = _round(ended_at - start if ended_at else None, 2)
        result["reconnecting_after_s"] = next(
            (round(at - start, 2) for at, s in statuses if at >= start and s == "RECONNECTING"),
            None,
        )
    back = events.get("outage_end")
    if back is not None:
        audio = next((f[0] for f in report["audio"] if f[0] > back), None)
        video = next((f[0] for f in report["video"] if f[0] > back), None)
        result["audio_back_after_path_s"] = _round(audio - back if audio else None, 2)
        result["video_back_after_path_s"] = _round(video - back if video else None, 2)
    return result


def _first_terminal(statuses: Iterable[Any]) -> str | None:
    return next((s for _, s in statuses if is_terminal(s)), None)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _percentile(values: list[float], percent: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100)[percent - 1]


def _round(value: float | None, digits: int = 1) -> float | None:
    return round(value, digits) if value is not None else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs of every number, the list of values of everything else."""
    good = [r for r in runs if r.get("ok")]
    if not good:
        return {"ok_runs": 0, "errors": [r.get("error") for r in runs]}
    return {"ok_runs": len(good), "of_runs": len(runs), **_merge(good)}


def _merge(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(isinstance(v, dict) for v in present):
        keys = dict.fromkeys(k for v in present for k in v)
        return {k: _merge([v.get(k) for v in present]) for k in keys}
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return _round(statistics.median(present), 2)
    distinct = list(dict.fromkeys(json.dumps(v) for v in values))
    return json.loads(distinct[0]) if len(distinct) == 1 else [json.loads(d) for d in distinct]


async def verify_forwarder(lab: NetLab, quick: bool) -> dict[str, Any]:
    """The forwarder measured with the UDP probe, per static profile, and an outage."""
    count = 400 if quick else 1000
    result: dict[str, Any] = {}
    for profile in PROFILES.values():
        if profile.event:
            continue
        if profile.path.rate_kbps:  # offer 2 Mbit/s: the cap must hold it to its rate
            check = await check_profile(lab, profile.path, count=count, interval_ms=4, size=1000)
        elif profile.path.burst_p:  # bursts of ~3 packets: 3x the packets for the same spread
            check = await check_profile(
                lab, profile.path, count=3 * count, interval_ms=2, loss_tol=0.015
            )
        else:
            check = await check_profile(lab, profile.path, count=count, loss_tol=0.02)
        result[profile.name] = check
    result["outage"] = await check_outage(lab, 1.0)
    await lab.set_profile({}, {})
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Verify the forwarder, then call over every chosen profile; the JSON report."""
    video = tuple(int(v) for v in args.video.replace("@", "x").split("x"))
    assert len(video) == 3, "--video WxH@FPS"
    seconds = 8.0 if args.quick and args.seconds is None else float(args.seconds or 30.0)
    runs = 1 if args.quick and args.runs is None else int(args.runs or 2)
    report: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "seconds": seconds,
        "runs": runs,
        "video": args.video,
        "stacks": args.stacks,
    }
    async with NetLab() as lab:
        if not args.skip_verify:
            report["forwarder_verification"] = await verify_forwarder(lab, args.quick)
        results: dict[str, Any] = {}
        for name in [] if args.verify_only else args.profile or list(PROFILES):
            profile = PROFILES[name]
            raw: dict[str, list[dict[str, Any]]] = {stack: [] for stack in args.stacks}
            for index in range(runs):
                for stack in args.stacks:
                    if stack == "bare" and profile.event == "broker_restart":
                        continue  # bare aiortc has no broker: the clean profile is its figure
                    with tempfile.TemporaryDirectory(prefix="callbox-impaired-") as directory:
                        try:
                            outcome = await one_call(
                                lab, stack, profile, seconds, video, Path(directory)
                            )
                        except (RuntimeError, TimeoutError) as err:
                            outcome = {"ok": False, "error": repr(err)}
                    outcome["run"] = index
                    raw[stack].append(outcome)
                    _log(f"{name} {stack} run {index}: ok={outcome.get('ok')}")
            results[name] = {
                "description": profile.description,
                "impairment": asdict(profile.path),
                **{stack: summarize(outcomes) for stack, outcomes in raw.items() if outcomes},
            }
            if args.raw:
                results[name]["raw"] = raw
        report["profiles"] = results
    return report


def _pair(figures: dict[str, Any], key: str, fmt: str = "{:g}") -> str:
    """``door->indoor / indoor->door`` of one figure ("—" where a side has none)."""
    values = []
    for direction in ("door_to_indoor", "indoor_to_door"):
        value = (figures.get(direction) or {}).get(key)
        values.append("—" if value is None else fmt.format(value))
    return " / ".join(values)


def _stat(figures: dict[str, Any], path: str, field: str) -> str:
    """A receive statistic of both directions (``audio_receive_stats.concealed``, ...)."""
    values = []
    for direction in ("door_to_indoor", "indoor_to_door"):
        stats = (figures.get(direction) or {}).get("receive_stats") or {}
        value = (stats.get(path) or {}).get(field)
        values.append("—" if value is None else f"{value:g}")
    return " / ".join(values)


def _outcome(figures: dict[str, Any]) -> str:
    """How the call fared: survived, or how it ended; media back after an outage."""
    if figures.get("door_call_end_after_kill_s") is not None:
        ended = figures["door_call_end_after_kill_s"]
        return f"door ended {figures['door_end_status']} after {ended} s"
    parts = []
    for direction, side in (("indoor_to_door", "door"), ("door_to_indoor", "indoor")):
        fate = figures.get(direction) or {}
        if fate.get("ended_with"):
            after = fate.get("ended_after_event_s")
            when = f" {after} s after the event" if after is not None else ""
            parts.append(f"{side}: {fate['ended_with']}{when}")
        elif fate.get("audio_back_after_path_s") is not None:
            parts.append(
                f"{side}: audio back {fate['audio_back_after_path_s']} s, video "
                f"{fate.get('video_back_after_path_s')} s after the path"
            )
        if fate.get("reconnecting_after_s") is not None:
            parts.append(f"{side} RECONNECTING after {fate['reconnecting_after_s']} s")
    ends = dict.fromkeys(
        str((figures.get(d) or {}).get("end_status_after_hangup")) for d in FIGURE_SIDES
    )  # a list where the runs differ
    if not parts:
        parts.append(f"survived, hangup -> {' / '.join(ends)}")
    return "; ".join(parts)


FIGURE_SIDES = ("door_to_indoor", "indoor_to_door")
RECEIVE_PATH = (
    ("audio concealed", "audio_receive_stats.concealed", "delta"),
    ("FEC", "audio_receive_stats.recovered_fec", "delta"),
    ("playout delay ms", "audio_receive_stats.delay_ms", "median"),
    ("video NACK-recovered", "video_receive_counters.packets_recovered", "delta"),
    ("given up", "video_receive_counters.packets_given_up", "delta"),
    ("frames dropped", "video_receive_counters.frames_dropped", "delta"),
)
"""The receive-path figures of the table: counts in the window, delays as medians."""


def _receive_path(figures: dict[str, Any]) -> str:
    """The receive-path statistics the installed session reported, both directions."""
    cells = []
    for label, path, figure in RECEIVE_PATH:
        pair = _stat(figures, path, figure)
        if pair != "— / —":
            cells.append(f"{label} {pair}")
    return "; ".join(cells) or "—"


def markdown(report: dict[str, Any]) -> str:
    """The report as the table of docs/performance.md (each cell: door->indoor / indoor->door)."""
    lines = [
        "| profile | stack | runs ok | video fps median (worst s) | longest freeze ms "
        "| video latency ms median | audio missing ms | audio rel. delay ms median (p95) "
        "| receive path (when installed) | outcome |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, profile in report["profiles"].items():
        for stack in ("callbox", "bare"):
            figures = profile.get(stack)
            if not figures:
                continue
            if not figures.get("ok_runs"):
                lines.append(f"| {name} | {stack} | 0 | {figures.get('errors')} |||||||")
                continue
            fps = " / ".join(
                f"{(figures.get(d) or {}).get('video_fps_median', '—')} "
                f"({(figures.get(d) or {}).get('video_fps_worst', '—')})"
                for d in FIGURE_SIDES
            )
            delay = " / ".join(
                f"{(figures.get(d) or {}).get('audio_relative_delay_ms_median', '—')} "
                f"({(figures.get(d) or {}).get('audio_relative_delay_ms_p95', '—')})"
                for d in FIGURE_SIDES
            )
            receive_path = _receive_path(figures)
            lines.append(
                f"| {name} | {stack} | {figures['ok_runs']}/{figures['of_runs']} | {fps} "
                f"| {_pair(figures, 'video_longest_freeze_ms')} "
                f"| {_pair(figures, 'video_latency_ms_median')} "
                f"| {_pair(figures, 'audio_missing_ms')} | {delay} | {receive_path} "
                f"| {_outcome(figures)} |"
            )
    return "\n".join(lines)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> None:
    """Parse arguments, build the lab (re-executing under unshare -rn), run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="append", choices=list(PROFILES))
    parser.add_argument("--runs", type=int, default=None, help="calls per profile (2; quick: 1)")
    parser.add_argument("--seconds", type=float, default=None, help="window (30; quick: 8)")
    parser.add_argument("--quick", action="store_true", help="short windows, one run")
    parser.add_argument("--stacks", nargs="+", default=["callbox", "bare"])
    parser.add_argument("--video", default="320x240@15", help="WxH@FPS of both stacks")
    parser.add_argument("--skip-verify", action="store_true")
    parser.add_argument("--verify-only", action="store_true", help="the forwarder's check only")
    parser.add_argument("--raw", action="store_true", help="keep every run's figures")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--markdown", type=Path, help="print the table of a JSON report written before, and exit"
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    reexec_in_private_netns()
    logging.basicConfig(level=logging.ERROR)
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
