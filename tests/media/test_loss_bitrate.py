"""Loss-based video bitrate: down on reported loss, held, back up when the link clears."""

from __future__ import annotations

import fractions
import itertools
import random

import av
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    pack_remb_fci,
)
from fake_picamera2 import FakePicamera2Library
from support import lose_at_receiver, wait_for
from test_h264_passthrough import FORMAT, calls, camera_on, video_receiver

from services.media.bitrate import (
    FLOOR_BPS,
    LossBasedBitrate,
    check_sender_internals,
    control_bitrate_by_loss,
)
from services.media.encoder import (
    CappedEncoder,
    follow_bitrate,
    install_capped_encoder,
    sender_encoder,
)
from services.media.errors import MediaError
from services.media.tracks import CameraSource

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
CAP = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def lost(fraction: float) -> int:
    return round(fraction * 256)


def test_heavy_loss_cuts_by_half_the_loss_light_loss_holds_none_grows_8_percent_a_second() -> None:
    clock = Clock()
    control = LossBasedBitrate(clock=clock)
    assert control.update(lost(0.2), 800_000, CAP) == pytest.approx(800_000 * 0.9, rel=0.01)
    clock.now += 1
    assert control.update(lost(0.05), 720_000, CAP) == pytest.approx(720_000, rel=0.01)
    clock.now += 1
    control.update(0, 720_000, CAP)
    assert control.estimate_bps == pytest.approx(720_000 * 1.08, rel=0.01)
    clock.now += 0.5
    control.update(0, 720_000, CAP)
    assert control.estimate_bps == pytest.approx(720_000 * 1.08**1.5, rel=0.01)


def test_the_bound_rises_in_steps_of_a_quarter_and_falls_at_once() -> None:
    clock = Clock()
    control = LossBasedBitrate(clock=clock)
    bounds = [control.update(lost(0.3), 400_000, CAP)]
    for _ in range(12):
        clock.now += 1
        bounds.append(control.update(0, bounds[-1], CAP))
    rises = [b / a for a, b in itertools.pairwise(bounds) if b != a]
    assert rises and all(1.25 <= r < 1.25 * 1.08 for r in rises)
    assert len(rises) <= len(bounds) // 3, "the encoder is not reopened every second"
    clock.now += 1
    cut = control.update(lost(0.25), bounds[-1], CAP)
    assert cut == pytest.approx(bounds[-1] * (1 - 0.125), rel=0.01)


def test_the_estimate_stays_between_the_floor_and_the_cap() -> None:
    clock = Clock()
    control = LossBasedBitrate(clock=clock)
    for _ in range(30):
        clock.now += 1
        control.update(lost(0.5), control.estimate_bps or CAP, CAP)
    assert control.estimate_bps == FLOOR_BPS
    for _ in range(60):
        clock.now += 1
        control.update(0, control.estimate_bps or CAP, CAP)
    assert control.estimate_bps == CAP


@pytest.mark.parametrize("mime", ["video/VP8", "video/H264"])
def test_the_encoder_goes_below_aiortcs_floor_when_the_link_needs_it(mime: str) -> None:
    codec = RTCRtpCodecParameters(mimeType=mime, clockRate=90000, payloadType=96)
    encoder = CappedEncoder(get_encoder(codec), CAP)
    encoder.target_bitrate = CAP
    encoder.set_limit(FLOOR_BPS)
    assert encoder.target_bitrate == encoder.wanted_bitrate == FLOOR_BPS
    frame = av.VideoFrame(320, 240, "yuv420p")
    frame.pts, frame.time_base = 0, fractions.Fraction(1, 90000)
    encoder.encode(frame)
    assert encoder._inner.codec.bit_rate == FLOOR_BPS
    encoder.set_limit(None)
    assert encoder.target_bitrate == CAP


def rr(sender: RTCRtpSender, fraction_lost: int) -> RtcpRrPacket:
    info = RtcpReceiverInfo(
        ssrc=sender._ssrc,
        fraction_lost=fraction_lost,
        packets_lost=0,
        highest_sequence=0,
        jitter=0,
        lsr=0,
        dlsr=0,
    )
    return RtcpRrPacket(ssrc=1234, reports=[info])


async def test_receiver_reports_drive_the_encoder_and_the_camera_down_and_back_up() -> None:
    clock = Clock()
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("video").sender
        install_capped_encoder(sender, VP8, CAP)
        control_bitrate_by_loss(sender, LossBasedBitrate(clock=clock))
        encoder = sender_encoder(sender)
        assert encoder is not None
        camera: list[int] = []
        follow_bitrate(sender, camera.append)
        encoder.target_bitrate = CAP  # REMB says the path is fine
        for _ in range(8):  # a 500 kbit/s policer drops what exceeds it
            clock.now += 1
            loss = max(0.0, 1 - 500_000 / encoder.wanted_bitrate)
            await sender._handle_rtcp_packet(rr(sender, lost(loss)))
        assert 350_000 <= encoder.wanted_bitrate <= 560_000
        assert camera[-1] == encoder.wanted_bitrate
        low = encoder.wanted_bitrate
        remb = RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(300_000, [sender._ssrc])
        )
        await sender._handle_rtcp_packet(remb)
        assert encoder.wanted_bitrate == 300_000, "the lower of REMB and the loss bound"
        encoder.target_bitrate = CAP
        assert encoder.wanted_bitrate == low
        for _ in range(20):  # the link cleared
            clock.now += 1
            await sender._handle_rtcp_packet(rr(sender, 0))
        assert encoder.wanted_bitrate == CAP and camera[-1] == CAP
    finally:
        await pc.close()


async def test_the_aiortc_sender_internals_the_controller_wraps_are_there() -> None:
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("video").sender
        check_sender_internals(sender)
        sender._ssrc = None  # type: ignore[assignment]
        with pytest.raises(MediaError, match="internals changed"):
            check_sender_internals(sender)
    finally:
        await pc.close()


async def test_in_a_real_call_loss_at_the_receiver_lowers_the_camera_bitrate() -> None:
    fake = FakePicamera2Library()
    camera = camera_on(fake)
    source = CameraSource(camera, FORMAT)
    async with calls(source, "H264") as ([sender], [peer]):
        await peer.wait_frames(5)
        assert camera.bitrate == 1_000_000
        receiver = video_receiver(peer.session)
        setattr(receiver, "_RTCRtpReceiver__remote_bitrate_estimator", None)  # noqa: B010
        dice = random.Random(7)
        lose_at_receiver(receiver, lambda packet: dice.random() < 0.3)
        control = sender.video_loss_control
        await wait_for(lambda: control.last_loss > 0.15, "a receiver report with the loss", 10)
        assert camera.bitrate <= 1_000_000 * (1 - 0.5 * 0.15)  # cut by half the loss at least
        assert control.bound_bps == camera.bitrate
