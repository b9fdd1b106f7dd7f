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
camera and microphone, SDP relayed by this script). Both stacks speak with
``hal.audio.VoiceMicrophone``, a speech-like source: libopus stops coding in-band FEC for
a steady tone, which would hide what FEC does. Once media flows both ways the window
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
import json
import logging
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tests_path  # noqa: F401 - puts tests/ on sys.path for the harness imports
from harness.impairment import Impairment
from harness.netlab import SIDES, NetLab, env_with_tests_on_path, reexec_in_private_netns
from harness.udp_probe import check_outage, check_profile
from impaired_figures import figures, is_terminal, markdown, summarize

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
    for side, address, peer, tone, voice in (
        ("a", "door", "indoor1", 440.0, 120.0),
        ("b", "indoor1", "door", 660.0, 210.0),
    ):
        identities[address].save(directory / address)
        configs[side] = {
            "stack": "callbox",
            "role": "door" if address == "door" else "indoor",
            "address": address,
            "site": "bench",
            "tone_hz": tone,
            "voice_hz": voice,
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
        side: {
            "stack": "bare",
            "role": role,
            "tone_hz": tone,
            "voice_hz": voice,
            "video": list(video),
        }
        for side, role, tone, voice in (("a", "door", 440.0, 120.0), ("b", "indoor", 660.0, 210.0))
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
            **figures(reports, started, t0, t1, events),
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
