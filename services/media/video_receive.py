"""The video receive path on aiortc's RTCRtpReceiver: our NACK generator and frame assembler.

aiortc asks once for a lost packet and its jitter buffer then stalls at the hole for
seconds (see :mod:`services.media.frame_assembler`, :mod:`services.media.nack`).
:func:`install_video_recovery` puts ours in their place on a video receiver, at aiortc's
two extension points, and queues for the decoder the extra frames a filled hole releases.
The private aiortc names it relies on are the constants below, all in this module;
:func:`check_aiortc_internals` fails loudly when an aiortc upgrade moved them (checked
against aiortc 1.14 and 1.16).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Awaitable, Callable, Iterable

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpreceiver import NackGenerator as AiortcNackGenerator
from aiortc.rtcrtpreceiver import TimestampMapper
from aiortc.rtp import RtpPacket

from services.media.errors import MediaError
from services.media.frame_assembler import FrameAssembler
from services.media.keyframes import keyframe_detector
from services.media.nack import NackGenerator, VideoReceiveCounters

RECEIVER_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
RECEIVER_NACK_GENERATOR = "_RTCRtpReceiver__nack_generator"
RECEIVER_CODECS = "_RTCRtpReceiver__codecs"
RECEIVER_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
RECEIVER_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
RECEIVER_TIMESTAMPS = "_RTCRtpReceiver__timestamp_mapper"
RECEIVER_HANDLE_RTP = "_handle_rtp_packet"
SENDER_RTT = "_RTCRtpSender__rtt"  # from the peer's receiver reports (LSR/DLSR), or None


class VideoRecovery:
    """The NACK generator and frame assembler of one video receiver, sharing counters."""

    def __init__(
        self,
        codec_of: Callable[[int], str | None],
        *,
        clock: Callable[[], float] = time.monotonic,
        rtt_hint: Callable[[], float | None] | None = None,
    ) -> None:
        """``codec_of(payload_type)``: the negotiated codec's MIME type, None if unknown.

        ``rtt_hint``: the round trip RTCP measured, None while unknown (see
        :func:`rtcp_round_trip`).
        """
        self.counters = VideoReceiveCounters()
        self.nack = NackGenerator(self.counters, clock=clock, rtt_hint=rtt_hint)
        self._codec_of = codec_of
        self.assembler = FrameAssembler(self._keyframe_start, self.nack, self.counters, clock=clock)

    def _keyframe_start(self, packet: RtpPacket) -> bool:
        mime = self._codec_of(packet.payload_type)
        detect = keyframe_detector(mime) if mime else None
        return detect is not None and detect(packet.payload)


def rtcp_round_trip(senders: Callable[[], Iterable[RTCRtpSender]]) -> Callable[[], float | None]:
    """The round trip aiortc's senders measured from the peer's receiver reports, if any.

    The same path as our video's: it seeds the NACK timing before a NACK measured it.
    """

    def round_trip() -> float | None:
        measured = [getattr(s, SENDER_RTT, None) for s in senders()]
        known = [rtt for rtt in measured if isinstance(rtt, float) and rtt > 0]
        return min(known, default=None)

    return round_trip


def check_aiortc_internals(receiver: RTCRtpReceiver, sender: RTCRtpSender | None = None) -> None:
    """Raise MediaError unless ``receiver`` has the private parts we replace, as we know them.

    Call it on a video receiver (and a sender, for the round trip it measures): an aiortc
    upgrade that renamed or changed them must fail here, not silently leave its stalling
    jitter buffer in place.
    """
    jitter = getattr(receiver, RECEIVER_JITTER_BUFFER, None)
    nack = getattr(receiver, RECEIVER_NACK_GENERATOR, None)
    codecs = getattr(receiver, RECEIVER_CODECS, None)
    problems = [
        f"{name} is missing"
        for name in (RECEIVER_DECODER_QUEUE, RECEIVER_DECODER_THREAD, RECEIVER_HANDLE_RTP)
        if not hasattr(receiver, name)
    ]
    if not isinstance(getattr(receiver, RECEIVER_DECODER_QUEUE, None), queue.Queue):
        problems.append(f"{RECEIVER_DECODER_QUEUE} is not a queue.Queue")
    if not isinstance(getattr(receiver, RECEIVER_TIMESTAMPS, None), TimestampMapper):
        problems.append(f"{RECEIVER_TIMESTAMPS} is not a TimestampMapper")
    if not isinstance(jitter, JitterBuffer | FrameAssembler):
        problems.append(f"{RECEIVER_JITTER_BUFFER} is {type(jitter).__name__}, not a JitterBuffer")
    if not isinstance(nack, AiortcNackGenerator | NackGenerator):
        problems.append(f"{RECEIVER_NACK_GENERATOR} is {type(nack).__name__}")
    if not isinstance(codecs, dict):
        problems.append(f"{RECEIVER_CODECS} is {type(codecs).__name__}, not a dict")
    if sender is not None and not hasattr(sender, SENDER_RTT):
        problems.append(f"{SENDER_RTT} is missing")
    if problems:
        raise MediaError(
            "aiortc's RTCRtpReceiver internals changed (callbox's video receive path replaces"
            f" them; see services/media/video_receive.py): {'; '.join(problems)}"
        )


def install_video_recovery(
    receiver: RTCRtpReceiver,
    *,
    clock: Callable[[], float] = time.monotonic,
    rtt_hint: Callable[[], float | None] | None = None,
) -> VideoRecovery:
    """Give a video ``receiver`` our NACK generator and frame assembler.

    Call it before the receiver's first packet.
    """
    check_aiortc_internals(receiver)
    codecs: dict[int, object] = getattr(receiver, RECEIVER_CODECS)

    def codec_of(payload_type: int) -> str | None:
        mime = getattr(codecs.get(payload_type), "mimeType", None)
        return mime if isinstance(mime, str) else None

    recovery = VideoRecovery(codec_of, clock=clock, rtt_hint=rtt_hint)
    setattr(receiver, RECEIVER_NACK_GENERATOR, recovery.nack)
    setattr(receiver, RECEIVER_JITTER_BUFFER, recovery.assembler)
    _decode_every_ready_frame(receiver, recovery.assembler, recovery.nack, codecs)
    return recovery


def _decode_every_ready_frame(
    receiver: RTCRtpReceiver,
    assembler: FrameAssembler,
    nack: NackGenerator,
    codecs: dict[int, object],
) -> None:
    """After aiortc handled a packet, queue the other frames it completed for the decoder.

    The same two steps aiortc takes for the one frame it got: its timestamp mapper, then
    the decoder thread's queue (unless the decoder stopped). Before, a retransmission (RTX,
    which aiortc unwraps) is told to the NACK generator: only those measure the round trip.
    """
    handle: Callable[[RtpPacket, int], Awaitable[None]] = getattr(receiver, RECEIVER_HANDLE_RTP)
    timestamps: TimestampMapper = getattr(receiver, RECEIVER_TIMESTAMPS)
    frames: queue.Queue[object] = getattr(receiver, RECEIVER_DECODER_QUEUE)

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        if nack.rtx_negotiated is None and codecs:  # filled once the SDP was applied
            nack.rtx_negotiated = any(_is_rtx(codec) for codec in codecs.values())
        if _is_rtx(codecs.get(packet.payload_type)) and len(packet.payload) >= 2:
            nack.retransmitted(int.from_bytes(packet.payload[:2], "big"))  # RFC 4588's OSN
        await handle(packet, arrival_time_ms)
        for payload_type, frame in assembler.take_ready():
            codec = codecs.get(payload_type)
            if codec is not None and getattr(receiver, RECEIVER_DECODER_THREAD) is not None:
                frame.timestamp = timestamps.map(frame.timestamp)
                frames.put((codec, frame))

    setattr(receiver, RECEIVER_HANDLE_RTP, handle_rtp_packet)  # shadows the method


def _is_rtx(codec: object) -> bool:
    return str(getattr(codec, "mimeType", "")).lower() == "video/rtx"
