"""Bitrate caps and jitter-buffer depth on aiortc's senders and receivers.

aiortc builds its encoder lazily inside ``RTCRtpSender`` and lets the peer's REMB
feedback set ``target_bitrate`` with no upper bound of ours; it also buffers four
audio packets (80 ms) before playing. Neither has a public knob, so this module is
the one place that reaches into those private attributes, pinned to aiortc 1.x.
"""

from __future__ import annotations

import fractions
from typing import Any

import av
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import get_encoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

_SENDER_ENCODER = "_RTCRtpSender__encoder"
_RECEIVER_JITTER = "_RTCRtpReceiver__jitter_buffer"


class CappedEncoder:
    """Wraps an aiortc encoder so ``target_bitrate`` never exceeds a cap."""

    def __init__(self, inner: Any, cap_bps: int) -> None:
        self._inner = inner
        self.cap_bps = cap_bps
        self.target_bitrate = min(int(getattr(inner, "target_bitrate", cap_bps)), cap_bps)

    @property
    def target_bitrate(self) -> int:
        """The bitrate the encoder aims at now, in bits per second."""
        return int(self._inner.target_bitrate)

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self._inner.target_bitrate = min(bitrate, self.cap_bps)

    def set_cap(self, cap_bps: int) -> None:
        """Change the cap; the target drops to it at once if it was higher."""
        self.cap_bps = cap_bps
        self.target_bitrate = min(self.target_bitrate, cap_bps)

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        """Encode one frame (aiortc's Encoder interface)."""
        result: tuple[list[bytes], int] = self._inner.encode(frame, force_keyframe)
        return result

    def pack(self, packet: Any) -> tuple[list[bytes], int]:
        """Packetise an already encoded packet (aiortc's Encoder interface)."""
        result: tuple[list[bytes], int] = self._inner.pack(packet)
        return result


def install_capped_encoder(
    sender: RTCRtpSender, codec: RTCRtpCodecParameters, cap_bps: int
) -> None:
    """Give ``sender`` an encoder for ``codec`` whose bitrate stays under ``cap_bps``."""
    current = getattr(sender, _SENDER_ENCODER, None)
    if isinstance(current, CappedEncoder):
        current.set_cap(cap_bps)
        return
    inner = current if current is not None else get_encoder(codec)
    setattr(sender, _SENDER_ENCODER, CappedEncoder(inner, cap_bps))


def warm_encoder(mime_type: str, width: int, height: int, cap_bps: int) -> CappedEncoder:
    """An encoder for ``mime_type`` already opened for ``width`` x ``height`` frames.

    Opening libvpx or x264 costs ~10 ms on a small board, and aiortc does it on the first
    frame: the visitor preview would wait for it. Blocking: run it in an executor.
    """
    inner = get_encoder(RTCRtpCodecParameters(mimeType=mime_type, clockRate=90000))
    black = av.VideoFrame(width, height, "yuv420p")
    for plane, value in zip(black.planes, (16, 128, 128), strict=True):
        plane.update(bytes([value]) * plane.buffer_size)
    black.pts, black.time_base = 0, fractions.Fraction(1, 90000)
    inner.encode(black, False)
    return CappedEncoder(inner, cap_bps)


def use_encoder(sender: RTCRtpSender, encoder: CappedEncoder) -> None:
    """Make ``sender`` encode with ``encoder``, starting with a key frame."""
    setattr(sender, _SENDER_ENCODER, encoder)
    sender._send_keyframe()


def sender_encoder(sender: RTCRtpSender) -> CappedEncoder | None:
    """The capped encoder of ``sender``, once it has one."""
    current = getattr(sender, _SENDER_ENCODER, None)
    return current if isinstance(current, CappedEncoder) else None


def shorten_audio_jitter_buffer(receiver: RTCRtpReceiver, prefetch: int = 1) -> None:
    """Hold ``prefetch`` audio packets instead of aiortc's four before playing (LAN latency).

    Call it on an audio receiver before its first packet arrives.
    """
    setattr(receiver, _RECEIVER_JITTER, JitterBuffer(capacity=16, prefetch=prefetch))
