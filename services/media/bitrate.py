"""Loss-based video bitrate: the sender backs off when the peer reports loss, and ramps back.

aiortc's sender follows only REMB, its peer's delay-based estimate (abs-send-time). A
bottleneck that drops instead of queueing (a policer, a full radio buffer) never shows
in it: the rate stays, packets keep dying, video freezes. :class:`LossBasedBitrate` is
the loss half of Google Congestion Control: the receiver reports of the peer (RTCP RR,
``fraction_lost``, about once a second in aiortc) cut the rate by half the loss above
10 %, hold it between 2 and 10 %, and let it grow 8 % a second below 2 %. The encoder
aims at the lowest of that, REMB and the configured cap (:meth:`CappedEncoder.set_limit`);
in H.264 passthrough the camera's encoder follows (``follow_bitrate``).

The bound goes up in steps of 25 % (or to the cap): aiortc reopens its encoder, a key
frame, on every change of more than 10 %, and a hardware encoder restarts for it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiortc import RTCRtpSender
from aiortc.rtp import AnyRtcpPacket, RtcpRrPacket, RtcpSrPacket

from services.media.encoder import sender_encoder
from services.media.errors import MediaError

FLOOR_BPS = 100_000
HIGH_LOSS = 0.10
LOW_LOSS = 0.02
GROWTH_PER_S = 1.08
UP_STEP = 1.25  # the bound rises once the estimate is this much above it
_SENDER_HANDLE_RTCP = "_handle_rtcp_packet"


class LossBasedBitrate:
    """GCC's loss-based rate: one estimate, updated by each receiver report.

    ``clock`` is injectable (seconds, monotonic).
    """

    def __init__(
        self, *, floor_bps: int = FLOOR_BPS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.floor_bps = floor_bps
        self.estimate_bps: int | None = None  # None until the first report
        self.bound_bps: int | None = None  # what the encoder is held to: the estimate, stepped
        self.reports = 0
        self.last_loss = 0.0
        self._clock = clock
        self._last_at: float | None = None

    def update(self, fraction_lost: int, current_bps: int, cap_bps: int) -> int:
        """Take a report's ``fraction_lost`` (0-255); the bound for the encoder, in bits/s.

        ``current_bps`` is what the encoder aims at now (a cut starts from it: the bound may
        be above it when REMB holds the rate lower), ``cap_bps`` the configured cap.
        """
        now = self._clock()
        elapsed = 1.0 if self._last_at is None else min(now - self._last_at, 2.0)
        self._last_at = now
        loss = fraction_lost / 256
        estimate = float(cap_bps if self.estimate_bps is None else self.estimate_bps)
        if loss > HIGH_LOSS:
            estimate = min(estimate, current_bps) * (1 - 0.5 * loss)
        elif loss < LOW_LOSS:
            estimate *= GROWTH_PER_S**elapsed
        self.estimate_bps = new = int(min(max(estimate, self.floor_bps), cap_bps))
        bound = self.bound_bps
        if bound is None or new < bound or new >= min(bound * UP_STEP, cap_bps):
            self.bound_bps = new
        self.reports += 1
        self.last_loss = loss
        return self.bound_bps if self.bound_bps is not None else new


def check_sender_internals(sender: RTCRtpSender) -> None:
    """Raise MediaError unless ``sender`` has the private parts the controller relies on."""
    handle = getattr(type(sender), _SENDER_HANDLE_RTCP, None)
    if not callable(handle) or not isinstance(getattr(sender, "_ssrc", None), int):
        raise MediaError(
            "aiortc's RTCRtpSender internals changed (callbox's loss-based bitrate wraps"
            f" {_SENDER_HANDLE_RTCP} and reads _ssrc; see services/media/bitrate.py)"
        )


def follow_receiver_reports(sender: RTCRtpSender, on_report: Callable[[int], None]) -> None:
    """Call ``on_report(fraction_lost)`` for each report the peer's receiver sends on us.

    aiortc still handles every RTCP packet first (RTT, stats, NACK, PLI, REMB);
    ``fraction_lost`` is RTCP's, 0-255 for 0-100 % since the previous report.
    """
    check_sender_internals(sender)
    handle: Callable[[AnyRtcpPacket], Awaitable[None]] = getattr(sender, _SENDER_HANDLE_RTCP)

    async def handle_rtcp_packet(packet: AnyRtcpPacket) -> None:
        await handle(packet)
        if not isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            return
        for report in packet.reports:
            if report.ssrc == sender._ssrc:
                on_report(report.fraction_lost)

    setattr(sender, _SENDER_HANDLE_RTCP, handle_rtcp_packet)  # shadows the method


def control_bitrate_by_loss(sender: RTCRtpSender, controller: LossBasedBitrate) -> None:
    """Feed ``sender``'s receiver reports to ``controller``, its bound to the capped encoder.

    The sender must have its capped encoder by the time reports arrive; before, they are
    ignored.
    """

    def on_report(fraction_lost: int) -> None:
        encoder = sender_encoder(sender)
        if encoder is not None:
            current = encoder.wanted_bitrate
            encoder.set_limit(controller.update(fraction_lost, current, encoder.cap_bps))

    follow_receiver_reports(sender, on_report)
