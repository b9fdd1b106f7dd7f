"""One endpoint of bench/impaired_call.py, run in its own network namespace of the lab.

``python bench/impaired_endpoint.py CONFIG.json``. The config says the stack (``callbox``:
the installed Call API on a simulated board; ``bare``: two plain aiortc peer connections
with the same fake camera and microphone), the role (``door`` calls, ``indoor`` answers) and,
for callbox, the identities, the broker (which the door runs) and the video format. The
orchestrator drives it with one JSON command per stdin line and reads one JSON answer line
each (after a first ``{"ready": ...}`` line). What arrives is recorded with CLOCK_MONOTONIC
times, which every namespace shares: each decoded video frame with its latency (the test
camera stamps its capture time into the luma, ``hal.camera.decode_stamp``), each decoded
audio frame with its pts, every call status, and once a second the receive statistics the
installed media session offers (``audio_receive_stats()`` and the like, when present) and
aiortc's inbound RTP statistics. ``report`` returns all of it; the orchestrator computes the
figures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import av
import tests_path  # noqa: F401 - puts tests/ on sys.path for the harness imports
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from device.daemon import compose_calls
from hal.audio import RecordingSpeaker, VoiceMicrophone
from hal.board import build_sim_board
from hal.camera import TestPatternCamera, decode_stamp
from hal.errors import HalError
from hal.media_types import AudioFormat, VideoFormat
from services.callapi import (
    Call,
    CallProperties,
    CallStatus,
    HangupReason,
    IncomingListener,
    InProgressListener,
    UserProfile,
)
from services.media.ice import IcePolicy
from services.signaling.broker import BrokerSettings, MosquittoBroker, write_broker_config
from services.signaling.contacts import Contact, ContactBook, Right
from services.signaling.identity import Identity, PublicKeys
from services.signaling.transport import BrokerAddress, mqtt_transport

RECEIVE_STATS = (  # methods or properties
    "audio_receive_stats",
    "video_receive_stats",
    "video_receive_counters",
    "receive_stats",
)
"""What the installed MediaSession may report about its receive path, sampled once a second."""
_WRAP = 1 << 32
MAX_LATENCY_MS = 600_000.0
"""A stamp that says older than this was misread (the stamp wraps after 71 minutes)."""


class Recorder:
    """What one endpoint received, with CLOCK_MONOTONIC times."""

    def __init__(self) -> None:
        self.video: list[tuple[float, float | None, int | None]] = []
        self.audio: list[tuple[float, float | None, int, int]] = []
        self.status: list[tuple[float, str]] = []
        self.samples: list[tuple[float, dict[str, Any]]] = []

    def on_video(self, frame: av.VideoFrame) -> None:
        """Note a decoded frame, its latency in ms and its capture counter (None: unreadable).

        The counter tells stale pictures (a decoder showing an old reference's content)
        from fresh ones.
        """
        now = time.monotonic()
        latency: float | None = None
        counter: int | None = None
        try:
            counter, capture_us = decode_stamp(frame)
            latency = ((time.monotonic_ns() // 1000 - capture_us) % _WRAP) / 1000
        except HalError:
            pass
        if latency is not None and latency > MAX_LATENCY_MS:  # a stamp read wrong
            latency = counter = None
        self.video.append((now, latency, counter))

    def on_audio(self, frame: av.AudioFrame) -> None:
        """Note a decoded audio frame: arrival, pts in seconds, samples and rate."""
        pts = (
            float(frame.pts * frame.time_base)
            if frame.pts is not None and frame.time_base
            else None
        )
        self.audio.append((time.monotonic(), pts, frame.samples, frame.sample_rate))

    def on_status(self, name: str) -> None:
        """Note a call (or connection) status."""
        self.status.append((time.monotonic(), name))

    def report(self) -> dict[str, Any]:
        """Everything recorded, as JSON-ready lists."""
        return {
            "video": self.video,
            "audio": self.audio,
            "status": self.status,
            "samples": self.samples,
        }


def jsonable(value: Any) -> Any:
    """A JSON-ready copy of a stats object (dataclass, mapping, object or scalar)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif hasattr(value, "__dict__") and not isinstance(value, dict):
        value = vars(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


async def inbound_rtp(pc: RTCPeerConnection | None) -> dict[str, Any]:
    """Inbound RTP statistics of aiortc per kind: packets received and lost, jitter."""
    if pc is None:
        return {}
    result: dict[str, Any] = {}
    for stats in (await pc.getStats()).values():
        if getattr(stats, "type", "") == "inbound-rtp":
            result[stats.kind] = {
                "packets_received": stats.packetsReceived,
                "packets_lost": stats.packetsLost,
                "jitter": stats.jitter,
            }
    return result


class ProbeSpeaker(RecordingSpeaker):
    """The board's speaker, noting every frame the session plays on it."""

    def __init__(self, name: str, recorder: Recorder) -> None:
        super().__init__(name, history_s=1.0)
        self._recorder = recorder

    async def play(self, frame: av.AudioFrame) -> None:
        """Note the frame, then record it as the simulated speaker does."""
        self._recorder.on_audio(frame)
        await super().play(frame)


class StatusLog(InProgressListener):
    """Notes every status of the call it listens to."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def on_status(self, call: Call, status: CallStatus, video: bool) -> None:
        """Note the status by name."""
        self.recorder.on_status(status.name)

    def on_hangup(self, call: Call, reason: HangupReason) -> None:
        """Note the hangup reason."""
        self.recorder.on_status(f"hangup:{reason.name}")


class Answer(IncomingListener):
    """The indoor unit: accepts every call, answers at once and watches its media."""

    def __init__(self, endpoint: CallboxEndpoint) -> None:
        self.endpoint = endpoint

    def on_incoming(self, profile: UserProfile, video: bool) -> CallProperties | None:
        """Accept with the endpoint's defaults, answering at once."""
        props = self.endpoint.calls.create_call_properties(video)
        props.auto_answer = True
        return props

    def on_show_user_interface(self, call: Call, props: CallProperties) -> bool:
        """Listen to the call and its video (our own UI: no default one)."""
        self.endpoint.watch(call)
        return True


class CallboxEndpoint:
    """A door station or indoor unit built the way ``callbox run`` builds one."""

    def __init__(self, config: dict[str, Any], recorder: Recorder) -> None:
        self.config = config
        self.recorder = recorder
        self.role = str(config["role"])
        self.broker: MosquittoBroker | None = None
        self.call: Call | None = None
        board = build_sim_board(config["address"], tone_hz=float(config["voice_hz"]), voice=True)
        speakers = {name: ProbeSpeaker(name, recorder) for name in board.speakers}
        self.board = replace(board, speakers=MappingProxyType(speakers))
        contacts = ContactBook()
        peer = config["peer"]
        contacts.add(
            Contact(
                address=peer["address"],
                keys=PublicKeys.from_json(peer["keys"]),
                name=peer["address"],
                rights=frozenset({Right.UNLOCK, Right.MONITOR}),
            )
        )
        width, height, fps = config["video"]
        defaults = CallProperties()
        defaults.video = replace(defaults.video, width=width, height=height, fps=fps)
        broker = config["broker"]
        self.calls = compose_calls(
            role=self.role,
            name=config["address"],
            transport=mqtt_transport(
                site=config["site"],
                address=config["address"],
                broker=BrokerAddress(
                    host=broker["host"],
                    port=broker["port"],
                    username=config["address"],
                    password=broker["password"],
                ),
            ),
            identity=Identity.load(Path(config["identity_dir"])),
            contacts=contacts,
            board=self.board,
            ice=IcePolicy(interfaces=("eth0",)),
            defaults=defaults,
        )

    def watch(self, call: Call) -> None:
        """Record this call's statuses and video."""
        self.call = call
        call.add_listener(StatusLog(self.recorder))
        call.watch_remote_video(self.recorder.on_video)

    async def start(self) -> None:
        """Start the broker (door), then the Call API; wait until the peer is online."""
        if self.role == "door":
            await self.start_broker()
        else:
            self.calls.set_listener(Answer(self))
        await self.calls.start()
        peer = self.config["peer"]["address"]
        await self.calls.signaling.wait_presence(peer, True, timeout=60)

    def _broker_settings(self) -> BrokerSettings:
        broker = self.config["broker"]
        return BrokerSettings(
            site=self.config["site"],
            endpoints=tuple(broker["accounts"]),
            host=broker["host"],
            port=broker["port"],
            websockets_port=None,
        )

    async def start_broker(self) -> dict[str, Any]:
        """Start mosquitto on the door's address (again, after a kill)."""
        settings = self._broker_settings()
        directory = Path(self.config["broker"]["directory"])
        files = await asyncio.to_thread(write_broker_config, settings, directory)
        self.broker = MosquittoBroker(files, settings)
        await self.broker.start()
        return {"ok": True}

    async def kill_broker(self) -> dict[str, Any]:
        """SIGKILL mosquitto, as a crash would."""
        broker, self.broker = self.broker, None
        if broker is not None and broker.pid is not None:
            os.kill(broker.pid, signal.SIGKILL)
            await broker.wait()
            await broker.close()
        return {"ok": True}

    async def place_call(self) -> dict[str, Any]:
        """Call the indoor unit with video; answer once CONNECTED (or why not)."""
        props = self.calls.create_call_properties(video=True)
        props.user = self.calls.profile_of(self.config["peer"]["address"])
        call = self.calls.call(props)
        if call is None:
            return {"ok": False, "error": "busy"}
        self.call = call
        call.watch_remote_video(self.recorder.on_video)
        await call.start(StatusLog(self.recorder))
        return {"ok": True}

    def session_pc(self) -> RTCPeerConnection | None:
        """The current session's aiortc peer connection (for getStats only)."""
        session = self.call.session if self.call is not None else None
        pc = getattr(session, "_pc", None)
        return pc if isinstance(pc, RTCPeerConnection) else None

    def receive_stats(self) -> dict[str, Any]:
        """What the installed MediaSession reports about its receive path, if anything."""
        session = self.call.session if self.call is not None else None
        found: dict[str, Any] = {}
        for name in RECEIVE_STATS:  # a method or a property, depending on the component
            value = getattr(session, name, None)
            if callable(value):
                value = value()
            if value is not None:
                found[name] = jsonable(value)
        if session is not None:  # every count MediaStats has (the installed version's)
            stats = session.stats
            found["media_stats"] = {
                f.name: getattr(stats, f.name)
                for f in dataclasses.fields(stats)
                if isinstance(getattr(stats, f.name), int | float) and not f.name.endswith("_at")
            }
        return found

    async def hangup(self) -> dict[str, Any]:
        """Hang up the call, if any is up."""
        if self.call is not None:
            await self.call.hangup()
        return {"ok": True}

    async def close(self) -> None:
        """Stop the Call API, the board and the broker."""
        await self.calls.close()
        await self.board.close()
        if self.broker is not None:
            await self.broker.close()


class DeviceTrack(MediaStreamTrack):
    """A track that reads a simulated camera or microphone (the bare aiortc baseline)."""

    def __init__(self, kind: str, read: Callable[[], Awaitable[av.VideoFrame | av.AudioFrame]]):
        super().__init__()
        self.kind = kind
        self._read = read

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        """The device's next frame."""
        return await self._read()


class BareEndpoint:
    """Plain aiortc: one RTCPeerConnection, the same fake devices, SDP over the orchestrator."""

    def __init__(self, config: dict[str, Any], recorder: Recorder) -> None:
        self.config = config
        self.recorder = recorder
        self.camera = TestPatternCamera("main", seed=int(config["tone_hz"]))
        self.microphone = VoiceMicrophone("main", frequency_hz=float(config["voice_hz"]))
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._tasks: set[asyncio.Task[None]] = set()

        @self.pc.on("connectionstatechange")
        def changed() -> None:
            self.recorder.on_status(f"pc:{self.pc.connectionState}")

        @self.pc.on("track")
        def track(track: MediaStreamTrack) -> None:
            task = asyncio.create_task(self._consume(track))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        """Open the devices and add their tracks."""
        width, height, fps = self.config["video"]
        await self.camera.open(VideoFormat(width, height, fps))
        await self.microphone.open(AudioFormat())
        self.pc.addTrack(DeviceTrack("audio", self.microphone.read))
        self.pc.addTrack(DeviceTrack("video", self.camera.read))

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, av.VideoFrame):
                self.recorder.on_video(frame)
            elif isinstance(frame, av.AudioFrame):
                self.recorder.on_audio(frame)

    async def offer(self) -> dict[str, Any]:
        """Create the offer (candidates gathered)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return {"ok": True, "sdp": self.pc.localDescription.sdp}

    async def answer(self, sdp: str) -> dict[str, Any]:
        """Take the offer, return the answer."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return {"ok": True, "sdp": self.pc.localDescription.sdp}

    async def apply(self, sdp: str) -> dict[str, Any]:
        """Take the answer."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        return {"ok": True}

    async def close(self) -> None:
        """Close the peer connection and the devices."""
        await self.pc.close()
        await self.camera.close()
        await self.microphone.close()


async def sample_stats(endpoint: CallboxEndpoint | BareEndpoint, recorder: Recorder) -> None:
    """Once a second: the session's receive statistics and aiortc's inbound RTP ones."""
    while True:
        await asyncio.sleep(1.0)
        if isinstance(endpoint, CallboxEndpoint):
            found = endpoint.receive_stats()
            pc = endpoint.session_pc()
        else:
            found, pc = {}, endpoint.pc
        try:
            found["inbound_rtp"] = await inbound_rtp(pc)
        except Exception as err:  # noqa: BLE001 - a closing pc must not stop the sampling
            found["inbound_rtp_error"] = repr(err)
        recorder.samples.append((time.monotonic(), found))


async def handle(
    endpoint: CallboxEndpoint | BareEndpoint, recorder: Recorder, command: dict[str, Any]
) -> dict[str, Any]:
    """Carry out one command of the orchestrator."""
    name = command["cmd"]
    if name == "report":
        return {"ok": True, **recorder.report()}
    if name == "counts":
        last = recorder.status[-1][1] if recorder.status else ""
        return {
            "ok": True,
            "video": len(recorder.video),
            "audio": len(recorder.audio),
            "status": [status for _, status in recorder.status],
            "last": last,
        }
    if isinstance(endpoint, BareEndpoint):
        if name == "offer":
            return await endpoint.offer()
        if name == "answer":
            return await endpoint.answer(command["sdp"])
        if name == "apply":
            return await endpoint.apply(command["sdp"])
        if name == "hangup":
            await endpoint.pc.close()
            return {"ok": True}
    else:
        actions: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "call": endpoint.place_call,
            "hangup": endpoint.hangup,
            "broker_kill": endpoint.kill_broker,
            "broker_start": endpoint.start_broker,
        }
        if name in actions:
            return await actions[name]()
    return {"ok": False, "error": f"unknown command {name!r}"}


async def serve(config: dict[str, Any]) -> None:
    """Start the endpoint, say ready, obey commands until stdin closes or ``quit``."""
    recorder = Recorder()
    endpoint: CallboxEndpoint | BareEndpoint
    if config["stack"] == "callbox":
        endpoint = CallboxEndpoint(config, recorder)
    else:
        endpoint = BareEndpoint(config, recorder)
    await endpoint.start()
    sampler = asyncio.create_task(sample_stats(endpoint, recorder))
    reader = asyncio.StreamReader(limit=1 << 24)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True}), flush=True)
    try:
        while line := await reader.readline():
            command = json.loads(line)
            if command["cmd"] == "quit":
                break
            try:
                answer = await handle(endpoint, recorder, command)
            except Exception as err:  # noqa: BLE001 - the orchestrator reports it
                answer = {"ok": False, "error": repr(err)}
            print(json.dumps(answer), flush=True)
    finally:
        sampler.cancel()
        await endpoint.close()


def main() -> None:
    """Read the config file named on the command line and serve."""
    logging.basicConfig(level=logging.ERROR)
    config = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
