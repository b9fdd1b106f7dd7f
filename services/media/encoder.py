"""Bitrate caps, H.264 passthrough hooks and Opus settings on aiortc's senders.

aiortc builds its encoder lazily inside ``RTCRtpSender`` and lets the peer's REMB
feedback set ``target_bitrate`` with no upper bound of ours; it opens Opus at 96 kb/s
with no in-band FEC. None has a public knob, so this module is the one place that
reaches into the sender's private attributes, pinned to aiortc 1.x. (The receive side,
aiortc's audio jitter buffer, is replaced in :mod:`services.media.audio_receive`.)

H.264 passthrough needs two more: when a track's ``recv()`` returns an ``av.Packet``,
aiortc's sender calls its encoder's ``pack()`` (split on start codes, STAP-A/FU-A) and
never ``encode()``, so no codec is opened; but the peer's keyframe requests (PLI/FIR,
``RTCRtpSender._handle_rtcp_packet`` -> ``_send_keyframe``) only set a flag that
``encode()`` reads, and REMB only sets the encoder's ``target_bitrate``. So
:func:`forward_keyframe_requests` wraps the sender's ``_send_keyframe``, and
:class:`CappedEncoder` reports every bitrate change to ``on_bitrate``: both then reach
the camera's hardware encoder.
"""

from __future__ import annotations

import fractions
from collections.abc import Callable
from typing import Any

import av
from aiortc import RTCRtpSender
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

_SENDER_ENCODER = "_RTCRtpSender__encoder"
_SENDER_KEYFRAME = "_send_keyframe"
# aiortc's own encoders clamp their target to 250 kbit/s (VP8) or 500 kbit/s (H.264) at least:
# a 500 kbit/s link needs less. Their setter clamps, the attribute behind it does not.
_BELOW_FLOOR = {
    "Vp8Encoder": "_Vp8Encoder__target_bitrate",
    "H264Encoder": "_H264Encoder__target_bitrate",
}
OPUS_OPTIONS = {"application": "voip", "fec": "1", "packet_loss": "10"}
"""FFmpeg libopus options of our Opus encoder with FEC; see :func:`install_opus`."""
OPUS_BITRATE = 48000
OPUS_LOW_DELAY_OPTIONS = {"application": "lowdelay"}
"""Without FEC: libopus's restricted low-delay mode (CELT only), at aiortc's 96 kb/s."""


class CappedEncoder:
    """Wraps an aiortc encoder so ``target_bitrate`` never exceeds a cap.

    It counts what went through it (frames encoded, packets packed as they were) and tells
    ``on_bitrate`` about every change of the target: the camera's own encoder follows it
    when its packets go out unchanged.
    """

    def __init__(self, inner: Any, cap_bps: int) -> None:
        self._inner = inner
        self.cap_bps = cap_bps
        self.on_bitrate: Callable[[int], None] | None = None
        self.frames_encoded = 0
        self.packets_packed = 0
        self.wanted_bitrate = cap_bps
        self.limit_bps: int | None = None  # another controller's bound (loss-based)
        self.requested_bitrate = cap_bps  # what REMB (or set_cap) asked for last
        self.target_bitrate = min(int(getattr(inner, "target_bitrate", cap_bps)), cap_bps)

    @property
    def target_bitrate(self) -> int:
        """The bitrate the encoder aims at now, in bits per second."""
        return int(self._inner.target_bitrate)

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self.requested_bitrate = bitrate
        self._apply()

    def set_limit(self, bps: int | None) -> None:
        """Bound the target by ``bps`` too (None: no bound): the loss-based controller's."""
        self.limit_bps = bps
        self._apply()

    def _apply(self) -> None:
        wanted = min(self.requested_bitrate, self.cap_bps, self.limit_bps or self.cap_bps)
        self.wanted_bitrate = wanted  # before aiortc's own clamp
        self._inner.target_bitrate = wanted
        unclamped = _BELOW_FLOOR.get(type(self._inner).__name__)
        if unclamped and getattr(self._inner, unclamped, 0) > wanted:
            setattr(self._inner, unclamped, wanted)  # takes effect when it next encodes
        if self.on_bitrate is not None:
            self.on_bitrate(wanted)

    @property
    def codec_opened(self) -> bool:
        """Whether the inner encoder opened its codec (libx264/libvpx): it encoded a frame."""
        return getattr(self._inner, "codec", None) is not None

    def set_cap(self, cap_bps: int) -> None:
        """Change the cap; the target drops to it at once if it was higher."""
        self.cap_bps = cap_bps
        self.target_bitrate = min(self.target_bitrate, cap_bps)

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        """Encode one frame (aiortc's Encoder interface)."""
        result: tuple[list[bytes], int] = self._inner.encode(frame, force_keyframe)
        self.frames_encoded += 1
        return result

    def pack(self, packet: Any) -> tuple[list[bytes], int]:
        """Packetise an already encoded packet (aiortc's Encoder interface)."""
        result: tuple[list[bytes], int] = self._inner.pack(packet)
        self.packets_packed += 1
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


def follow_bitrate(sender: RTCRtpSender, on_bitrate: Callable[[int], None]) -> None:
    """Call ``on_bitrate`` with ``sender``'s target bitrate now and whenever it changes.

    It changes on REMB from the peer or a new cap; capped but not clamped to aiortc's 0.5-3 Mbps
    range for its own H.264 encoder. ``sender`` must have its capped encoder.
    """
    encoder = sender_encoder(sender)
    if encoder is None:
        raise TypeError("the sender has no capped encoder yet")
    encoder.on_bitrate = on_bitrate
    on_bitrate(encoder.wanted_bitrate)


def forward_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """Also call ``request`` whenever the peer asks ``sender`` for a keyframe (PLI or FIR).

    aiortc's own flag is still set, so frames it encodes itself start a keyframe too.
    """
    original: Callable[[], None] = getattr(sender, _SENDER_KEYFRAME)

    def send_keyframe() -> None:
        original()
        request()

    setattr(sender, _SENDER_KEYFRAME, send_keyframe)  # the instance attribute shadows the method


def install_opus(sender: RTCRtpSender, codec: RTCRtpCodecParameters, *, fec: bool = True) -> bool:
    """Give ``sender`` aiortc's Opus encoder with in-band FEC for speech at 48 kb/s.

    Or, with ``fec=False``, in the restricted low-delay mode at aiortc's 96 kb/s: 4 ms
    less lookahead, no FEC (for links known to lose nothing).

    In-band FEC (LBRR: each packet also carries a coarse copy of the frame before it,
    which the receiver decodes when that frame was lost) exists only in libopus's SILK
    and hybrid modes. Measured with libopus (tests/media/test_opus_fec.py): aiortc's own
    setting (``voip`` at 96 kb/s, no FEC) and the restricted low-delay mode (CELT only)
    never carry it; ``voip`` with ``fec=1`` and an expected ``packet_loss`` of 10 % does
    (hybrid mode, LBRR in most packets of speech: 83 % of the test signal's), at 32-96
    kb/s; a lost frame recovered from it is ~14 dB closer to the original than libopus's
    concealment (20 dB against 6 dB SNR at 48 kb/s).
    With ``packet_loss=0`` libopus sends no FEC at all. 48 kb/s is plenty for hybrid
    wideband speech and half aiortc's bitrate. The price: ``voip`` has 6.5 ms of encoder
    lookahead where the low-delay mode had 2.5 ms (4 ms more mouth-to-ear latency), and
    ~1.5x the bits of the same audio without FEC. Call it before the sender's first
    frame, once ``codec`` is negotiated; False, and nothing changes, for another codec
    (PCMU, PCMA) or a sender that already has its encoder.
    """
    if codec.mimeType.lower() != "audio/opus" or getattr(sender, _SENDER_ENCODER, None):
        return False
    setattr(sender, _SENDER_ENCODER, opus_encoder(codec, fec=fec))
    return True


def opus_encoder(codec: RTCRtpCodecParameters, *, fec: bool) -> Any:
    """Aiortc's Opus encoder for ``codec``, with in-band FEC or in low delay (install_opus)."""
    encoder: Any = get_encoder(codec)
    if fec:
        encoder.codec.bit_rate = OPUS_BITRATE
    options = OPUS_OPTIONS if fec else OPUS_LOW_DELAY_OPTIONS
    encoder.codec.options = {**encoder.codec.options, **options}
    return encoder


def install_encoder(sender: RTCRtpSender, encoder: Any) -> bool:
    """Make ``encoder`` (aiortc's Encoder interface) ``sender``'s, unless it has one already."""
    if getattr(sender, _SENDER_ENCODER, None) is not None:
        return False
    setattr(sender, _SENDER_ENCODER, encoder)
    return True


def opus_lookahead_ms(sender: RTCRtpSender) -> float | None:
    """The lookahead of ``sender``'s Opus encoder once it encoded a frame, else None.

    libopus pads the start of its stream by its lookahead, and aiortc's encoder keeps
    the first packet's (negative) pts: 312 samples at 48 kHz in "voip" (6.5 ms), 120 in
    the restricted low-delay mode.
    """
    first = getattr(getattr(sender, _SENDER_ENCODER, None), "first_packet_pts", None)
    return None if first is None else -1000 * first / 48000
