"""H.264 passthrough: a real aiortc call whose sender's camera is the picamera2 back-end.

The camera runs on the one fake of picamera2 (tests/fake_picamera2.py: picamera2 needs a
Pi), which emits real H.264 made by libx264. The far end is a real MediaSession decoding
with aiortc's own H.264 decoder; the stamps drawn into the pictures prove which frames
arrived. Passthrough means the sender's aiortc opened no video codec: it only packed
the camera's packets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCRtpReceiver
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci
from fake_picamera2 import FakePicamera2Library

from hal.camera import TestPatternCamera, decode_stamp, encode_stamp
from hal.media_types import VideoFormat
from hal.picamera import PiCamera, PiCameraMode
from hal.v4l2_camera import V4l2Camera
from services.media.encoded import EncodedSource
from services.media.encoder import CappedEncoder
from services.media.ice import LOOPBACK
from services.media.session import MediaSession, MediaSettings
from services.media.tracks import CameraSource

FORMAT = VideoFormat(640, 480, 30)


@dataclass
class Peer:
    """A receiving session and the stamps of the frames it decoded."""

    session: MediaSession
    counters: list[int] = field(default_factory=list)
    enough: asyncio.Event = field(default_factory=asyncio.Event)

    def decoded(self, frame: av.VideoFrame) -> None:
        self.counters.append(decode_stamp(frame)[0])
        if len(self.counters) >= 20:
            self.enough.set()

    async def wait_frames(self, count: int = 20) -> None:
        """Wait until ``count`` more frames were decoded."""
        target = len(self.counters) + count
        async with asyncio.timeout(10):
            while len(self.counters) < target:
                self.enough.clear()
                await self.enough.wait()


def settings(codec: str) -> MediaSettings:
    return MediaSettings(video_codec=codec, ice=LOOPBACK)


@asynccontextmanager
async def calls(
    source: CameraSource, codec: str, count: int = 1
) -> AsyncIterator[tuple[list[MediaSession], list[Peer]]]:
    """``count`` calls from sessions sharing ``source`` to receivers, video flowing."""
    senders: list[MediaSession] = []
    peers: list[Peer] = []
    try:
        for index in range(count):
            sender = MediaSession(
                settings(codec),
                video_source=source.shared,
                audio_source=None,
                speaker=None,
                label=f"door{index}",
            )
            senders.append(sender)
            peer = Peer(
                MediaSession(settings(codec), video_source=None, audio_source=None, speaker=None)
            )
            peers.append(peer)
            peer.session.on_video_frame = peer.decoded
            answer = await peer.session.accept_offer(await sender.create_offer())
            await sender.apply_answer(answer)
            sender.set_sending(audio=False, video=True)
        yield senders, peers
    finally:
        for session in [*senders, *(p.session for p in peers)]:
            await session.close()
        await source.close()


def camera_on(fake: FakePicamera2Library, mode: PiCameraMode = PiCameraMode.H264) -> PiCamera:
    return PiCamera("pi", mode=mode, library=fake)


def sender_encoder(session: MediaSession) -> CappedEncoder:
    encoder = session.video_encoder()
    assert encoder is not None
    return encoder


def video_ssrc(sender: MediaSession) -> int:
    transceiver = sender._video_transceiver()
    assert transceiver is not None
    return transceiver.sender._ssrc


def video_receiver(receiver: MediaSession) -> RTCRtpReceiver:
    (video,) = [t for t in receiver._pc.getTransceivers() if t.kind == "video"]
    return video.receiver


async def send_pli(sender: MediaSession, receiver: MediaSession) -> None:
    """The receiver's aiortc sends an RTCP PLI for the sender's video (as on picture loss)."""
    await video_receiver(receiver)._send_rtcp_pli(video_ssrc(sender))


async def send_remb(sender: MediaSession, receiver: MediaSession, bps: int) -> None:
    """The receiver sends an RTCP REMB (its bandwidth estimate) for the sender's video."""
    ssrc = video_ssrc(sender)
    receiving = video_receiver(receiver)
    # the receiver's own estimator sends REMBs about once a second: silence it, so that
    # the only estimate the sender gets from now on is this one
    setattr(receiving, "_RTCRtpReceiver__remote_bitrate_estimator", None)  # noqa: B010
    remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(bps, [ssrc]))
    await receiving._send_rtcp(remb)


async def test_h264_goes_to_the_peer_without_being_decoded_or_encoded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakePicamera2Library()
    source = CameraSource(camera_on(fake), FORMAT)
    async with calls(source, "H264") as ([sender], [peer]):
        await peer.wait_frames(30)
        assert sender.video_passthrough
        encoder = sender_encoder(sender)
        assert encoder.packets_packed >= 30
        assert encoder.frames_encoded == 0 and not encoder.codec_opened, "no encoder opened"
        assert fake.camera.captures == 0, "no raw frame was read either"
        assert len(fake.camera.encoders) == 1, "the hardware encoder did the work"
    counters = peer.counters
    assert counters == sorted(counters) and len(set(counters)) == len(counters)
    assert counters[-1] - counters[0] <= len(counters) + 2, "frames decode in sequence"
    assert peer.session.stats.video_size == (640, 480)
    assert any("video H264 passthrough" in r.getMessage() for r in caplog.records)


async def test_a_keyframe_request_from_the_receiver_reaches_the_camera_encoder() -> None:
    fake = FakePicamera2Library()
    source = CameraSource(camera_on(fake), FORMAT)
    async with calls(source, "H264") as ([sender], [peer]):
        await peer.wait_frames(10)
        (encoder,) = fake.camera.encoders
        requested, sent = encoder.keyframes_requested, encoder.keyframes_sent
        await send_pli(sender, peer.session)
        await peer.wait_frames(5)  # 170 ms: the request is honoured at the next frame
        assert encoder.keyframes_requested == requested + 1
        assert encoder.keyframes_pending == 0, "the encoder made the keyframe asked for"
        assert encoder.keyframes_sent > sent


async def test_bitrate_changes_reach_the_camera_encoder() -> None:
    fake = FakePicamera2Library()
    camera = camera_on(fake)
    source = CameraSource(camera, FORMAT)
    async with calls(source, "H264") as ([sender], [peer]):
        await peer.wait_frames(5)
        assert camera.bitrate == 1_000_000
        sender.set_video_bitrate(600_000)
        assert camera.bitrate == 600_000
        assert sender.video_target_bitrate() == 600_000
        sender.set_video_bitrate(300_000)  # below aiortc's floor for its own encoder
        assert camera.bitrate == 300_000
        sender.set_video_bitrate(2_000_000)
        await send_remb(sender, peer.session, 450_000)  # the peer's network got tight
        await peer.wait_frames(3)
        assert camera.bitrate == 450_000, "the peer's estimate reached the camera encoder"


async def test_two_peers_share_one_hardware_encoder() -> None:
    fake = FakePicamera2Library()
    source = CameraSource(camera_on(fake), FORMAT)
    async with calls(source, "H264", count=2) as (senders, peers):
        await asyncio.gather(*(p.wait_frames(30) for p in peers))
        assert all(s.video_passthrough for s in senders)
        assert all(sender_encoder(s).frames_encoded == 0 for s in senders)
        assert len(fake.camera.encoders) == 1
    for peer in peers:
        assert peer.counters == sorted(peer.counters), "each peer decodes a clean sequence"


def write_h264_clip(path: Path, frames: int = 90) -> Path:
    """An H.264 elementary stream as an H.264 UVC camera sends it (IDR every 15 frames)."""
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=FORMAT.fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = FORMAT.width, FORMAT.height, "yuv420p"
        stream.codec_context.gop_size = 15
        stream.codec_context.options = {"tune": "zerolatency", "preset": "veryfast"}
        for index in range(frames):
            picture = np.full((FORMAT.height * 3 // 2, FORMAT.width), 128, dtype=np.uint8)
            encode_stamp(picture[: FORMAT.height], index, 0)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="yuv420p")))
        container.mux(stream.encode(None))
    return path


async def test_an_h264_uvc_camera_is_passed_through_too(tmp_path: Path) -> None:
    clip = write_h264_clip(tmp_path / "uvc.h264")
    camera = V4l2Camera(
        "usb", input_format="h264", opener=lambda *_: av.open(str(clip)), realtime=True
    )
    source = CameraSource(camera, FORMAT)
    async with calls(source, "H264") as ([sender], [peer]):
        await peer.wait_frames(30)
        assert sender.video_passthrough
        encoder = sender_encoder(sender)
        assert encoder.frames_encoded == 0 and not encoder.codec_opened
    assert peer.counters == sorted(peer.counters)
    assert peer.counters[0] % 15 == 0, "the peer starts at one of the camera's keyframes"
    assert peer.counters[-1] - peer.counters[0] == len(peer.counters) - 1, "no frame lost"


async def test_vp8_negotiated_feeds_raw_frames_to_aiortcs_encoder(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakePicamera2Library()
    source = CameraSource(camera_on(fake), FORMAT)
    async with calls(source, "VP8") as ([sender], [peer]):
        await peer.wait_frames(20)
        assert not sender.video_passthrough
        encoder = sender_encoder(sender)
        assert encoder.frames_encoded >= 20 and encoder.codec_opened
        assert encoder.packets_packed == 0
        # the first frame goes out twice (OutgoingTrack), and frames decode on their last packet
        assert fake.camera.captures >= 19, "frames came from capture_array"
    assert peer.counters == sorted(peer.counters)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("video VP8 encoded by aiortc from raw frames" in m for m in messages)


async def test_a_camera_without_an_encoder_is_re_encoded_when_h264_is_negotiated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakePicamera2Library()  # a Pi 5: no hardware H.264
    source = CameraSource(camera_on(fake, PiCameraMode.RAW), FORMAT)
    async with calls(source, "H264") as ([sender], [peer]):
        await peer.wait_frames(20)
        assert not sender.video_passthrough
        encoder = sender_encoder(sender)
        assert encoder.frames_encoded >= 20 and encoder.codec_opened
        assert fake.camera.encoders == []
    assert peer.counters == sorted(peer.counters)
    assert any("the camera has no H.264 output" in r.getMessage() for r in caplog.records)


async def test_a_camera_switch_moves_between_passthrough_and_encoding_mid_call() -> None:
    fake = FakePicamera2Library()
    source = CameraSource(camera_on(fake), FORMAT)
    async with calls(source, "H264") as ([sender], [peer]):
        await peer.wait_frames(10)
        assert sender.video_passthrough
        await source.switch(TestPatternCamera("aux", seed=1))  # a camera without H.264
        await peer.wait_frames(15)
        assert not sender.video_passthrough
        assert sender_encoder(sender).frames_encoded > 0, "aiortc encodes the raw frames"
        await source.switch(camera_on(fake))
        packed = sender_encoder(sender).packets_packed
        await peer.wait_frames(15)
        assert sender.video_passthrough
        assert sender_encoder(sender).packets_packed > packed
        assert len(fake.cameras) == 2 and fake.cameras[0].closed


class ScriptedEncoder:
    """A camera's encoder at the HAL boundary: packets numbered 1, 2, ..., a key every 10."""

    supports_h264 = True

    def __init__(self) -> None:
        self.made = 0
        self.keyframe_requests = 0
        self.bitrates: list[int] = []
        self._key_next = False

    async def read_encoded(self) -> av.Packet[Any]:
        await asyncio.sleep(0.002)
        self.made += 1
        packet = av.Packet(self.made.to_bytes(4, "big"))
        packet.is_keyframe = self.made % 10 == 1 or self._key_next
        self._key_next = False
        return packet

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._key_next = True

    def set_bitrate(self, bps: int) -> None:
        self.bitrates.append(bps)


def number(packet: av.Packet[Any]) -> int:
    return int.from_bytes(bytes(packet), "big")


async def test_encoded_source_gives_every_reader_a_gapless_stream_from_a_keyframe() -> None:
    device = ScriptedEncoder()
    source = EncodedSource(device, history=8)
    seq_a, packet = await source.next_packet(0)
    assert packet.is_keyframe and device.keyframe_requests == 1
    for _ in range(5):
        seq_a, packet = await source.next_packet(seq_a)
    assert number(packet) == seq_a == 6, "every packet, in order"
    seq_b, packet = await source.next_packet(0)  # a second peer joins: a fresh keyframe
    assert packet.is_keyframe and number(packet) == seq_b == 7
    assert device.keyframe_requests == 2
    seq_a, packet = await source.next_packet(seq_a)  # A gets packet 7 too, from history
    assert number(packet) == seq_a == 7 and device.made == 7
    for _ in range(12):
        seq_b, _ = await source.next_packet(seq_b)  # B runs ahead: A falls out of history
    seq_a, packet = await source.next_packet(seq_a)
    assert packet.is_keyframe and number(packet) == seq_a == 20, "A resumes at a new keyframe"
    assert device.keyframe_requests == 3


async def test_encoded_source_sets_the_lowest_bitrate_any_reader_wants() -> None:
    device = ScriptedEncoder()
    source = EncodedSource(device)
    first, second = object(), object()
    source.set_bitrate(first, 1_000_000)
    source.set_bitrate(second, 600_000)
    source.set_bitrate(first, 800_000)  # still above the lowest: nothing changes
    source.set_bitrate(second, None)  # the slow peer hung up
    assert device.bitrates == [1_000_000, 600_000, 800_000]
