"""The video receive path: NACK retries, frames after a hole, key frame requests, bounds.

The components get real VP8 and H.264 RTP packets from aiortc's encoders, in the order
aiortc's receiver calls them (NACK generator, then the frame assembler), on a test clock.
"""

from __future__ import annotations

import asyncio
import itertools
import queue

import pytest
from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket
from fake_picamera2 import FakePicamera2Library
from support import lose_at_receiver
from test_h264_passthrough import FORMAT, calls, camera_on, video_receiver, video_ssrc
from video_stream import H264, VP8, Decoder, RtpVideoSender

import services.media.session as session_module
from services.media.errors import MediaError
from services.media.frame_assembler import FrameAssembler
from services.media.keyframes import h264_keyframe_start, vp8_keyframe_start
from services.media.nack import MAX_PENDING, NackGenerator
from services.media.tracks import CameraSource
from services.media.video_receive import (
    RECEIVER_CODECS,
    RECEIVER_DECODER_QUEUE,
    RECEIVER_DECODER_THREAD,
    RECEIVER_JITTER_BUFFER,
    VideoRecovery,
    check_aiortc_internals,
    install_video_recovery,
)

FRAME_S = 1 / 30


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Receiver:
    """What aiortc's RTCRtpReceiver does with each packet, around our two components."""

    def __init__(self, sender: RtpVideoSender, clock: Clock) -> None:
        mime = sender.codec.mimeType
        self.recovery = VideoRecovery(lambda pt: mime, clock=clock)
        self.sender = sender
        self.decoder = Decoder(sender.codec)
        self.nacks: list[list[int]] = []
        self.frame_timestamps: list[int] = []
        self.plis = 0

    def receive(self, packet: RtpPacket) -> None:
        if self.recovery.nack.add(packet):
            self.nacks.append(sorted(self.recovery.nack.missing))
        pli, frame = self.recovery.assembler.add(packet)
        if pli:
            self.plis += 1
            self.sender.request_keyframe()
        frames = [frame] if frame is not None else []
        frames += [f for _, f in self.recovery.assembler.take_ready()]
        for each in frames:
            self.frame_timestamps.append(each.timestamp)
            self.decoder.decode(each)


def seqs(packets: list[RtpPacket]) -> list[int]:
    return [p.sequence_number for p in packets]


@pytest.mark.parametrize("codec", [VP8, H264], ids=["vp8", "h264"])
def test_a_frame_is_handed_out_with_its_last_packet_and_decodes(codec: object) -> None:
    clock = Clock()
    sender = RtpVideoSender(codec)  # type: ignore[arg-type]
    receiver = Receiver(sender, clock)
    for _ in range(20):
        packets = sender.next_frame()
        before = len(receiver.frame_timestamps)
        for packet in packets:
            receiver.receive(packet)
        assert len(receiver.frame_timestamps) == before + 1  # no wait for the next frame
        clock.now += FRAME_S
    assert receiver.decoder.decoded == 20 and receiver.decoder.errors == 0
    assert receiver.plis == 0 and receiver.nacks == []


def test_padding_between_frames_is_skipped() -> None:
    clock = Clock()
    sender = RtpVideoSender()
    receiver = Receiver(sender, clock)
    for index in range(6):
        packets = sender.next_frame()
        for packet in packets:
            receiver.receive(packet)
        # a bandwidth probe: the next sequence number, the last frame's timestamp, no payload
        probe = RtpPacket(payload_type=96, sequence_number=(packets[-1].sequence_number + 1))
        probe.timestamp = packets[-1].timestamp
        probe._data = b""  # type: ignore[attr-defined]
        receiver.receive(probe)
        sender._seq += 1
        clock.now += FRAME_S
        assert len(receiver.frame_timestamps) == index + 1
    assert receiver.decoder.decoded == 6 and receiver.decoder.errors == 0
    assert receiver.nacks == [] and receiver.plis == 0


def test_key_frame_starts_are_told_from_other_packets() -> None:
    for codec, detect in ((VP8, vp8_keyframe_start), (H264, h264_keyframe_start)):
        sender = RtpVideoSender(codec)
        key = sender.next_frame()
        delta = sender.next_frame()
        assert detect(key[0].payload)
        assert not any(detect(p.payload) for p in key[1:] + delta)


def test_a_lost_packet_is_nacked_at_once_and_a_retransmission_fills_the_hole() -> None:
    clock = Clock()
    sender = RtpVideoSender()
    receiver = Receiver(sender, clock)
    for packet in sender.next_frame():
        receiver.receive(packet)
    clock.now += FRAME_S
    lost = sender.next_frame()
    clock.now += FRAME_S
    after = sender.next_frame()
    receiver.receive(after[0])
    assert receiver.nacks == [seqs(lost)]
    clock.now += 0.04  # the retransmission comes one round trip later
    for packet in lost + after[1:]:
        receiver.receive(packet)
    assert receiver.decoder.decoded == 3 and receiver.decoder.errors == 0
    assert receiver.plis == 0
    counters = receiver.recovery.counters
    assert counters.packets_recovered == len(lost)
    assert counters.rtt_ms == pytest.approx(40)


def test_a_nack_is_retried_after_a_round_trip_and_given_up_after_three() -> None:
    clock = Clock()
    nack = NackGenerator(clock=clock)

    def packet(seq: int) -> RtpPacket:
        return RtpPacket(sequence_number=seq % 2**16)

    assert not nack.add(packet(65535))
    assert nack.add(packet(1)) and nack.missing == {0}  # across the wrap
    retry_s = nack.rtt.retry_s
    seq = 2
    asked = [clock.now]
    while nack.pending(0):
        clock.now += 0.01  # packets keep arriving: they drive the retries
        if nack.add(packet(seq)):
            assert nack.missing == {0}
            asked.append(clock.now)
        seq += 1
    assert len(asked) == 3
    assert all(b - a == pytest.approx(retry_s, abs=0.011) for a, b in itertools.pairwise(asked))
    assert clock.now - asked[-1] == pytest.approx(retry_s, abs=0.011)  # the last one's chance
    counters = nack.counters
    assert (counters.packets_nacked, counters.nack_retries, counters.packets_given_up) == (1, 2, 1)


def test_the_round_trip_shortens_the_retry() -> None:
    clock = Clock()
    nack = NackGenerator(clock=clock)
    nack.add(RtpPacket(sequence_number=1))
    for seq in range(3, 60, 2):  # every other packet lost, each answered 20 ms later
        nack.add(RtpPacket(sequence_number=seq))
        clock.now += 0.02
        nack.add(RtpPacket(sequence_number=seq - 1))
    assert nack.rtt_s == pytest.approx(0.02, abs=0.002)
    assert nack.rtt.retry_s < 0.05


def test_with_rtx_only_a_retransmission_measures_the_round_trip() -> None:
    """An original that jitter delayed past its NACK is no answer to it (too short a trip)."""
    clock = Clock()
    nack = NackGenerator(clock=clock)
    nack.rtx_negotiated = True
    nack.add(RtpPacket(sequence_number=1))
    nack.add(RtpPacket(sequence_number=3))  # 2 is late: NACKed
    clock.now += 0.005
    nack.add(RtpPacket(sequence_number=2))  # the original, reordered
    assert nack.rtt.samples == 0 and nack.rtt_s == pytest.approx(0.1)
    nack.add(RtpPacket(sequence_number=5))  # 4 is lost: NACKed
    clock.now += 0.08
    nack.retransmitted(4)
    nack.add(RtpPacket(sequence_number=4))  # its retransmission, a round trip later
    assert nack.rtt.samples == 1 and nack.rtt_s == pytest.approx(0.08)


def test_rtcps_round_trip_times_the_retries_until_a_nack_measured_one() -> None:
    clock = Clock()
    rtcp: list[float | None] = [None]
    nack = NackGenerator(clock=clock, rtt_hint=lambda: rtcp[0])
    nack.add(RtpPacket(sequence_number=1))
    assert nack.rtt_s == pytest.approx(0.1)  # nothing measured yet
    rtcp[0] = 0.4  # a long path
    nack.add(RtpPacket(sequence_number=3))
    assert nack.rtt_s == pytest.approx(0.4) and nack.rtt.retry_s >= 0.4
    clock.now += 0.02
    nack.add(RtpPacket(sequence_number=2))  # the answer to the NACK: ours wins from now on
    assert nack.rtt_s == pytest.approx(0.02)
    rtcp[0] = 0.3
    nack.add(RtpPacket(sequence_number=4))
    assert nack.rtt_s == pytest.approx(0.02)


def test_a_packet_asked_for_again_gives_no_round_trip_sample() -> None:
    clock = Clock()
    nack = NackGenerator(clock=clock)
    nack.add(RtpPacket(sequence_number=1))
    nack.add(RtpPacket(sequence_number=3))  # 2 missing: asked for
    seq = 4
    while nack.counters.nack_retries < 2:  # its retransmissions are lost too
        clock.now += 0.01
        nack.add(RtpPacket(sequence_number=seq))
        seq += 1
    clock.now += 0.005
    nack.add(RtpPacket(sequence_number=2))  # the third one's answer, or the first's, late?
    assert nack.counters.packets_recovered == 1
    assert nack.rtt.samples == 0 and nack.rtt_s == pytest.approx(0.1)


@pytest.mark.parametrize("codec", [VP8, H264], ids=["vp8", "h264"])
def test_a_lost_retransmission_leads_to_a_pli_and_a_decoded_key_frame(codec: object) -> None:
    clock = Clock()
    sender = RtpVideoSender(codec)  # type: ignore[arg-type]
    receiver = Receiver(sender, clock)
    for _ in range(3):
        for packet in sender.next_frame():
            receiver.receive(packet)
        clock.now += FRAME_S
    sender.next_frame()  # lost, and every retransmission of it too
    delivered_before = len(receiver.frame_timestamps)
    frames_after_hole = 0
    while receiver.plis == 0:
        clock.now += FRAME_S
        for packet in sender.next_frame():
            receiver.receive(packet)
        frames_after_hole += 1
        assert frames_after_hole < 30, "no key frame was asked for within a second"
    # delta frames referencing the lost one never reached the decoder
    assert len(receiver.frame_timestamps) == delivered_before
    waited_s = frames_after_hole * FRAME_S
    assert waited_s < 3 * receiver.recovery.nack.rtt.retry_s + 2 * FRAME_S
    clock.now += FRAME_S
    key = sender.next_frame()
    for packet in key:
        receiver.receive(packet)
    assert receiver.frame_timestamps[-1] == sender.keyframes[-1] == key[0].timestamp
    for _ in range(5):
        clock.now += FRAME_S
        for packet in sender.next_frame():
            receiver.receive(packet)
    assert receiver.decoder.errors == 0
    assert receiver.decoder.decoded == delivered_before + 6
    counters = receiver.recovery.counters
    assert counters.frames_dropped >= frames_after_hole
    assert counters.keyframe_resyncs == 1 and counters.plis_sent == 1


def test_a_complete_key_frame_ends_the_wait_at_a_hole() -> None:
    clock = Clock()
    sender = RtpVideoSender()
    receiver = Receiver(sender, clock)
    for packet in sender.next_frame():
        receiver.receive(packet)
    sender.next_frame()  # lost; the NACK is still out
    sender.request_keyframe()  # someone else's PLI, say
    clock.now += 2 * FRAME_S
    for packet in sender.next_frame():
        receiver.receive(packet)
    assert receiver.frame_timestamps[-1] == sender.keyframes[-1]
    assert receiver.recovery.counters.frames_dropped == 0  # nothing was kept of the lost one


def test_packets_without_a_frame_are_a_freeze_and_ask_for_a_key_frame_at_a_limited_rate() -> None:
    clock = Clock()
    sender = RtpVideoSender()
    receiver = Receiver(sender, clock)
    assembler = receiver.recovery.assembler
    for packet in sender.next_frame():
        receiver.receive(packet)
    stuck = sender.next_frame()[0]
    stuck.marker = 0  # its frame never completes: its last packet is lost for good...
    plis = []
    for step in range(70):  # ...while its hole stays "pending" (a NACK generator that hopes)
        clock.now += 0.01
        packet = RtpPacket(payload_type=96, sequence_number=stuck.sequence_number)
        packet._data = b""  # type: ignore[attr-defined]
        packet.timestamp = stuck.timestamp
        if step == 0:
            plis.append(assembler.add(stuck)[0])
        else:
            plis.append(assembler.add(packet)[0])
    assert receiver.recovery.counters.freezes_detected == 1
    first = plis.index(True)
    assert 0.29 <= (first + 1) * 0.01 <= 0.32
    assert plis.count(True) == 2  # one more after MIN_PLI_INTERVAL_S


def test_a_pause_in_the_stream_is_no_freeze() -> None:
    clock = Clock()
    sender = RtpVideoSender()
    receiver = Receiver(sender, clock)
    for packet in sender.next_frame():
        receiver.receive(packet)
    clock.now += 5  # muted: nothing arrives
    for packet in sender.next_frame():
        receiver.receive(packet)
    assert receiver.plis == 0 and receiver.recovery.counters.freezes_detected == 0


def test_memory_stays_bounded_under_a_flood_of_incomplete_frames() -> None:
    clock = Clock()
    recovery = VideoRecovery(lambda pt: "video/VP8", clock=clock)
    for i in range(20_000):
        clock.now += 0.001
        packet = RtpPacket(payload_type=96, sequence_number=(i * 7) % 2**16, timestamp=i)
        packet.payload = b"\x10\x01\x02"  # a delta frame's first packet, never a marker
        packet._data = b"\x01\x02"  # type: ignore[attr-defined]
        recovery.nack.add(packet)
        recovery.assembler.add(packet)
    assert len(recovery.assembler._packets) <= recovery.assembler.capacity
    assert len(recovery.nack._holes) <= MAX_PENDING
    assert recovery.counters.plis_sent <= 20_000 * 0.001 / 0.3 + 1


def test_a_sender_that_restarts_its_sequence_numbers_is_followed_after_a_key_frame() -> None:
    clock = Clock()
    sender = RtpVideoSender()
    receiver = Receiver(sender, clock)
    for _ in range(3):
        for packet in sender.next_frame():
            receiver.receive(packet)
    straggler = sender.next_frame()  # arrives far too late, below: ignored
    sender._seq = (sender._seq + 40_000) % 2**16  # restarted, well behind the newest
    for packet in straggler:
        packet.sequence_number = (packet.sequence_number + 2**16 - 2_000) % 2**16
        receiver.receive(packet)
    assert len(receiver.frame_timestamps) == 3
    restarted_at = clock.now
    while len(sender.keyframes) < 2 or receiver.frame_timestamps[-1] != sender.keyframes[-1]:
        clock.now += FRAME_S
        for packet in sender.next_frame():
            receiver.receive(packet)
        assert clock.now - restarted_at < 1.0, "no key frame after the restart within a second"
    for _ in range(3):
        clock.now += FRAME_S
        for packet in sender.next_frame():
            receiver.receive(packet)
    assert len(receiver.frame_timestamps) == 3 + 1 + 3
    assert receiver.decoder.errors == 0


async def test_the_aiortc_internals_we_replace_are_where_we_expect_them() -> None:
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video")
        receiver = transceiver.receiver
        check_aiortc_internals(receiver, transceiver.sender)
        recovery = install_video_recovery(receiver)
        assert getattr(receiver, RECEIVER_JITTER_BUFFER) is recovery.assembler
        check_aiortc_internals(receiver)  # still recognised once ours are in
        setattr(receiver, RECEIVER_JITTER_BUFFER, None)
        with pytest.raises(MediaError, match="internals changed"):
            check_aiortc_internals(receiver)
    finally:
        await pc.close()


async def test_in_aiortcs_receiver_a_filled_hole_releases_every_frame_behind_it() -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video").receiver
        install_video_recovery(receiver)
        getattr(receiver, RECEIVER_CODECS)[VP8.payloadType] = VP8
        setattr(receiver, RECEIVER_DECODER_THREAD, object())  # as if receive() had started it
        decoder_queue: queue.Queue[tuple[object, JitterFrame]] = getattr(
            receiver, RECEIVER_DECODER_QUEUE
        )
        sender = RtpVideoSender()
        frames = [sender.next_frame() for _ in range(6)]
        lost = frames[2][0]
        for packet in [p for frame in frames for p in frame if p is not lost]:
            await receiver._handle_rtp_packet(packet, 0)
        assert decoder_queue.qsize() == 2
        await receiver._handle_rtp_packet(lost, 0)  # the retransmission
        queued = [decoder_queue.get_nowait()[1] for _ in range(decoder_queue.qsize())]
        assert len(queued) == 6, "the frames held up behind the hole all went to the decoder"
        decoder = Decoder()
        for frame in queued:
            decoder.decode(frame)
        assert decoder.decoded == 6 and decoder.errors == 0
        sent = [frame[0].timestamp - frames[0][0].timestamp for frame in frames]
        assert [f.timestamp for f in queued] == sent  # through aiortc's timestamp mapper
    finally:
        setattr(receiver, RECEIVER_DECODER_THREAD, None)
        await pc.close()


def test_the_assembler_keeps_the_jitter_buffer_contract() -> None:
    assembler = FrameAssembler(lambda p: True, NackGenerator())
    packet = RtpPacket(payload_type=96, sequence_number=1, timestamp=5, marker=1, payload=b"x")
    packet._data = b"x"  # type: ignore[attr-defined]
    pli, frame = assembler.add(packet)
    assert pli is False and frame is not None
    assert (frame.data, frame.timestamp) == (b"x", 5)


async def test_in_a_real_call_a_packet_lost_with_its_retransmissions_costs_one_key_frame() -> None:
    fake = FakePicamera2Library()
    source = CameraSource(camera_on(fake), FORMAT)
    async with calls(source, "VP8") as ([sender], [peer]):
        await peer.wait_frames(10)
        receiver = video_receiver(peer.session)
        media_ssrc = video_ssrc(sender)
        lost: set[int] = set()
        dropped: list[int] = []

        def first_and_its_retransmissions(packet: RtpPacket) -> bool:
            seq = packet.sequence_number
            if packet.ssrc != media_ssrc:  # RTX: the original sequence number comes first
                seq = int.from_bytes(packet.payload[:2], "big")
            if not lost and packet.ssrc == media_ssrc:
                lost.add(seq)
            if seq in lost:
                dropped.append(seq)
            return seq in lost

        lose_at_receiver(receiver, first_and_its_retransmissions)
        counters = peer.session.video_receive_counters
        assert counters is not None
        async with asyncio.timeout(5):
            while counters.keyframe_resyncs == 0:
                await peer.wait_frames(1)
        await peer.wait_frames(10)
        assert len(dropped) >= 2, "the packet and at least one retransmission were lost"
        assert counters.nack_retries >= 1
        # the NACKs were given up on, or the freeze's PLI brought a key frame sooner
        assert counters.packets_given_up + counters.freezes_detected >= 1
        assert counters.plis_sent >= 1 and counters.keyframe_resyncs == 1
        assert peer.counters == sorted(peer.counters)


async def test_a_session_keeps_aiortcs_video_path_when_its_internals_moved(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def moved(receiver: object, **kwargs: object) -> VideoRecovery:
        raise MediaError("aiortc's RTCRtpReceiver internals changed (test)")

    monkeypatch.setattr(session_module, "install_video_recovery", moved)
    fake = FakePicamera2Library()
    source = CameraSource(camera_on(fake), FORMAT)
    async with calls(source, "VP8") as (_, [peer]):
        await peer.wait_frames(5)
        assert peer.session.video_receive_counters is None
    assert any("video receive path not installed" in r.getMessage() for r in caplog.records)
