"""Our Opus sender: low delay on a clean link, in-band FEC from the first reported loss.

In-band FEC (each packet carries a coarse copy of the frame before it) exists only in
libopus's SILK and hybrid modes, which need its ``voip`` application: 6.5 ms of encoder
lookahead. The restricted low-delay mode has 2.5 ms but no FEC (``encoder.install_opus``
has the measurements). A call on a clean LAN should not pay 4 ms for a repair it never
uses, and a call on lossy Wi-Fi should not go without it, so :class:`AdaptiveOpusEncoder`
starts in low delay and reopens libopus with FEC when the peer's receiver reports
(RTCP, about once a second) show loss; ``FEC_HOLD_S`` after the last loss it returns to
low delay. A switch costs at most one frame (the new encoder's first), which the
receiver conceals; the RTP timestamps stay continuous.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpSender
from aiortc.codecs.opus import SAMPLES_PER_FRAME  # what its encoder puts in a packet
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from services.media.bitrate import follow_receiver_reports
from services.media.encoder import install_encoder, opus_encoder

_log = logging.getLogger(__name__)

FEC_HOLD_S = 20.0
"""FEC stays on this long after the last receiver report that showed loss."""


class AdaptiveOpusEncoder:
    """aiortc's Encoder interface around aiortc's Opus encoder, with FEC switched on demand.

    aiortc calls :meth:`encode` in an executor thread; :meth:`set_fec` only records the
    wish, and the next :meth:`encode` reopens the encoder in that mode.
    """

    def __init__(self, codec: RTCRtpCodecParameters, *, fec: bool = False) -> None:
        self._codec = codec
        self._wanted = fec
        self._fec = fec
        self._inner: Any = opus_encoder(codec, fec=fec)
        self._offset = 0
        self._next_timestamp: int | None = None
        self._rebase = False
        self._first_input_pts: int | None = None
        self.switches = 0

    @property
    def fec(self) -> bool:
        """True while the packets carry in-band FEC."""
        return self._fec

    @property
    def first_packet_pts(self) -> int | None:
        """Minus the running libopus encoder's lookahead (its start padding), once it encoded.

        As aiortc's own encoder gives it for a stream that starts at 0: the first packet's
        pts relative to the first frame the running encoder was fed.
        """
        pts: int | None = getattr(self._inner, "first_packet_pts", None)
        if pts is None or self._first_input_pts is None:
            return None
        return pts - self._first_input_pts

    def set_fec(self, on: bool) -> None:
        """Send with in-band FEC (``voip``) or without it (low delay) from the next frame."""
        self._wanted = on

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int | None]:
        """Encode one audio frame: the packets and their RTP timestamp (aiortc's Encoder)."""
        if self._wanted != self._fec:
            self._fec = self._wanted
            self._inner = opus_encoder(self._codec, fec=self._fec)
            self._rebase = True
            self._first_input_pts = None
            self.switches += 1
        if self._first_input_pts is None:
            self._first_input_pts = frame.pts or 0
        payloads, timestamp = self._inner.encode(frame, force_keyframe)
        if not payloads:
            return [], None
        if self._rebase and self._next_timestamp is not None:
            self._offset = self._next_timestamp - timestamp
        self._rebase = False
        timestamp += self._offset
        self._next_timestamp = timestamp + SAMPLES_PER_FRAME * len(payloads)
        return list(payloads), timestamp

    def pack(self, packet: Any) -> tuple[list[bytes], int]:
        """Packetise an already encoded packet (aiortc's Encoder interface)."""
        result: tuple[list[bytes], int] = self._inner.pack(packet)
        return result


class FecOnLoss:
    """Turns an encoder's FEC on at a report with loss, off ``hold_s`` after the last one."""

    def __init__(
        self,
        encoder: AdaptiveOpusEncoder,
        *,
        hold_s: float = FEC_HOLD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._encoder = encoder
        self._hold_s = hold_s
        self._clock = clock
        self._last_loss: float | None = None

    def report(self, fraction_lost: int) -> None:
        """Take one receiver report's ``fraction_lost`` (0-255) about our audio."""
        now = self._clock()
        if fraction_lost > 0:
            self._last_loss = now
            if not self._encoder.fec:
                _log.info(
                    "audio: the peer reports loss (%d/256): Opus in-band FEC on", fraction_lost
                )
            self._encoder.set_fec(True)
        elif self._last_loss is not None and now - self._last_loss > self._hold_s:
            self._last_loss = None
            _log.info("audio: no loss for %.0f s: Opus back in low delay", self._hold_s)
            self._encoder.set_fec(False)


def install_adaptive_opus(
    sender: RTCRtpSender, codec: RTCRtpCodecParameters
) -> AdaptiveOpusEncoder | None:
    """Give ``sender`` an Opus encoder that adds FEC while the peer reports loss.

    None, and nothing changes, for another codec or a sender that has its encoder.
    """
    if codec.mimeType.lower() != "audio/opus":
        return None
    encoder = AdaptiveOpusEncoder(codec)
    if not install_encoder(sender, encoder):
        return None
    follow_receiver_reports(sender, FecOnLoss(encoder).report)
    return encoder
