"""The audio receive path: aiortc's RTP receiver feeds our playout buffer, not its own.

aiortc has no public hook for it. Its ``RTCRtpReceiver._handle_rtp_packet`` depayloads
each RTP packet into ``packet._data`` and calls ``add(packet)`` on the receiver's private
jitter buffer, which returns ``(pli_flag, encoded_frame_or_None)``; a frame would go to
its decoder thread. :func:`install_playout` puts a :class:`_ReceiverTap` there: it hands
each packet to an :class:`~services.media.audio_playout.AudioPlayout` and returns
``(False, None)``, so aiortc's decoder thread stays idle (it still ends aiortc's remote
track when the receiver stops). :class:`PlayoutTrack` then gives one frame per frame
duration on a monotonic clock: decoded with the system libopus for Opus (PLC and FEC,
:mod:`services.media.opus_codec`), with aiortc's own decoder for PCMU, PCMA and G.722
(silence stands in for their lost frames; they carry no FEC).

Every private aiortc name this needs is in this module; :func:`check_aiortc_internals`
fails loudly when an aiortc upgrade moves them (tests call it, and so does
:func:`install_playout`). Written against aiortc 1.16's receiver.

The SDP side: :func:`advertise_inband_fec` adds ``useinbandfec=1`` to our Opus fmtp, which
tells a browser to put FEC in what it sends us (aiortc writes no Opus fmtp at all).
"""

from __future__ import annotations

import asyncio
import fractions
import re
import time
from typing import Any, Protocol

import av
from aiortc import RTCRtpReceiver
from aiortc.codecs import get_decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from services.media.audio_playout import AudioDecoder, AudioPlayout, PlayoutFrame, PlayoutStats
from services.media.errors import MediaError
from services.media.opus_codec import OpusDecoder, packet_has_fec

_RECEIVER_JITTER = "_RTCRtpReceiver__jitter_buffer"
_RECEIVER_CODECS = "_RTCRtpReceiver__codecs"
_PACKET_DATA = "_data"  # the depayloaded payload aiortc sets before add()
_HANDLER = RTCRtpReceiver._handle_rtp_packet
RESYNC_S = 0.1
"""If the event loop falls this far behind the playout clock, the clock restarts at now."""


class AiortcInternalsError(MediaError):
    """aiortc's receiver no longer looks the way the audio receive path relies on."""


def check_aiortc_internals(receiver: RTCRtpReceiver) -> None:
    """Raise :class:`AiortcInternalsError` unless ``receiver`` has what we hook into.

    Its jitter buffer attribute (with ``add``), its payload type -> codec map, and a
    packet handler that still calls ``add`` on the jitter buffer with ``packet._data``.
    """
    names = set(_HANDLER.__code__.co_names)
    problems = [
        f"RTCRtpReceiver has no {name}"
        for name in (_RECEIVER_JITTER, _RECEIVER_CODECS)
        if not hasattr(receiver, name)
    ]
    if not callable(getattr(getattr(receiver, _RECEIVER_JITTER, None), "add", None)):
        problems.append(f"{_RECEIVER_JITTER} has no add()")
    if not isinstance(getattr(receiver, _RECEIVER_CODECS, None), dict):
        problems.append(f"{_RECEIVER_CODECS} is not a dict")
    missing = {_RECEIVER_JITTER, "add", _PACKET_DATA} - names
    if missing:
        problems.append(f"_handle_rtp_packet no longer uses {', '.join(sorted(missing))}")
    if problems:
        raise AiortcInternalsError(
            "aiortc's RTP receiver changed; the audio playout cannot hook into it: "
            + "; ".join(problems)
        )


class Clock(Protocol):
    """The playout clock: a monotonic time and a way to wait."""

    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (zero or less: yield once)."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        """Seconds on the monotonic clock."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on the event loop."""
        await asyncio.sleep(max(0.0, seconds))


class OpusAudio:
    """:class:`AudioDecoder` for Opus on the system libopus, with PLC and FEC."""

    clock_rate = 48000

    def __init__(self) -> None:
        self._opus = OpusDecoder()

    def duration(self, payload: bytes) -> int:
        """Samples at 48 kHz (= RTP ticks) in ``payload``."""
        return self._opus.samples(payload)

    def decode(self, payload: bytes) -> av.AudioFrame:
        """Decode one packet."""
        return self._opus.decode(payload)

    def conceal(self, ticks: int) -> av.AudioFrame:
        """Concealment of ``ticks`` lost samples by libopus."""
        return self._opus.conceal(ticks)

    def recover(self, next_payload: bytes, ticks: int) -> av.AudioFrame | None:
        """The lost frame from ``next_payload``'s FEC, if it has any."""
        if not packet_has_fec(next_payload):
            return None
        return self._opus.decode_fec(next_payload, ticks)

    def has_fec(self, payload: bytes) -> bool:
        """Whether ``payload`` carries in-band FEC (LBRR) for the frame before it."""
        return packet_has_fec(payload)


class AiortcAudio:
    """:class:`AudioDecoder` for PCMU, PCMA and G.722: aiortc's decoder, silence for loss.

    For these, one payload byte is one RTP tick (8 kHz clock; G.722's 16 kHz samples are
    4 bits each).
    """

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self.clock_rate = codec.clockRate
        self._decoder = get_decoder(codec)
        self._last: av.AudioFrame | None = None

    def duration(self, payload: bytes) -> int:
        """RTP ticks in ``payload``."""
        return len(payload)

    def decode(self, payload: bytes) -> av.AudioFrame:
        """Decode one packet."""
        frames = self._decoder.decode(JitterFrame(data=payload, timestamp=0))
        frame = frames[0]
        assert isinstance(frame, av.AudioFrame)
        self._last = frame
        return frame

    def conceal(self, ticks: int) -> av.AudioFrame:
        """Silence for ``ticks`` of lost audio."""
        rate = self._last.sample_rate if self._last else self.clock_rate
        layout = self._last.layout.name if self._last else "mono"
        samples = ticks * rate // self.clock_rate
        frame = av.AudioFrame(format="s16", layout=layout, samples=samples)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = rate
        return frame

    def recover(self, next_payload: bytes, ticks: int) -> av.AudioFrame | None:
        """None: these codecs carry no FEC."""
        return None

    def has_fec(self, payload: bytes) -> bool:
        """False: these codecs carry no FEC."""
        return False


def decoder_for(codec: RTCRtpCodecParameters) -> AudioDecoder:
    """The playout decoder for a negotiated audio codec."""
    if codec.mimeType.lower() == "audio/opus":
        return OpusAudio()
    return AiortcAudio(codec)


class PlayoutTrack(MediaStreamTrack):
    """The peer's audio out of the playout buffer, one frame per frame duration.

    :meth:`recv_frame` also says whether a frame came from the peer's packets or was
    concealed; :meth:`recv` (the MediaStreamTrack interface) returns the bare frame.
    """

    kind = "audio"

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        self._clock = clock or MonotonicClock()
        self._playout: AudioPlayout | None = None
        self._codec_name = ""
        self._arrived = asyncio.Event()
        self._deadline: float | None = None
        self._pts = 0

    def push(self, codec: RTCRtpCodecParameters, packet: RtpPacket, payload: bytes) -> None:
        """Take one arrived packet (from :class:`_ReceiverTap`)."""
        if self._playout is None or codec.name != self._codec_name:
            self._playout = AudioPlayout(decoder_for(codec))
            self._codec_name = codec.name
            self._deadline = None
        self._playout.push(packet.sequence_number, packet.timestamp, payload, self._clock.now())
        self._arrived.set()

    def stats(self) -> PlayoutStats | None:
        """The playout's statistics, once a packet arrived."""
        return self._playout.stats() if self._playout else None

    async def recv(self) -> av.AudioFrame:
        """The next frame to play, when it is due."""
        return (await self.recv_frame()).frame

    async def recv_frame(self) -> PlayoutFrame:
        """The next frame to play and where it came from, when it is due."""
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._deadline is None:
                await self._wait_for_start()
                continue
            await self._clock.sleep(self._deadline - self._clock.now())
            if self.readyState != "live" or self._playout is None or self._deadline is None:
                continue  # ended, or the codec changed meanwhile: a new playout starts
            now = self._clock.now()
            out = self._playout.tick(now)
            if out is None:  # idle: wait for the next packet
                self._deadline = None
                continue
            self._deadline += out.frame.samples / out.frame.sample_rate
            if now - self._deadline > RESYNC_S:
                self._deadline = now
            out.frame.pts = self._pts
            out.frame.time_base = fractions.Fraction(1, out.frame.sample_rate)
            self._pts += out.frame.samples
            return out

    async def _wait_for_start(self) -> None:
        self._arrived.clear()
        start = self._playout.first_tick_at() if self._playout else None
        if start is None:
            await self._arrived.wait()
        else:
            self._deadline = start

    def stop(self) -> None:
        """End the track; a waiting :meth:`recv` raises MediaStreamError."""
        super().stop()
        self._arrived.set()


class _ReceiverTap:
    """Stands in for aiortc's audio jitter buffer: every packet goes to the playout."""

    def __init__(self, codecs: dict[int, RTCRtpCodecParameters], track: PlayoutTrack) -> None:
        self._codecs = codecs
        self._track = track

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        """The jitter buffer call of aiortc: take the packet, give aiortc no frame to decode."""
        codec = self._codecs.get(packet.payload_type)
        payload: Any = getattr(packet, _PACKET_DATA, packet.payload)
        if codec is not None and payload:
            self._track.push(codec, packet, bytes(payload))
        return False, None


def install_playout(receiver: RTCRtpReceiver, clock: Clock | None = None) -> PlayoutTrack:
    """Route ``receiver``'s audio packets to a new playout; returns its track.

    Call it on an audio receiver before its first packet arrives.
    """
    check_aiortc_internals(receiver)
    track = PlayoutTrack(clock)
    codecs: dict[int, RTCRtpCodecParameters] = getattr(receiver, _RECEIVER_CODECS)
    setattr(receiver, _RECEIVER_JITTER, _ReceiverTap(codecs, track))
    return track


_OPUS_RTPMAP = re.compile(r"^a=rtpmap:(\d+) opus/48000(?:/2)?\r?$", re.MULTILINE | re.IGNORECASE)


def advertise_inband_fec(sdp: str) -> str:
    """``sdp`` with ``useinbandfec=1`` in the fmtp of every Opus payload type.

    aiortc writes no fmtp for Opus; a browser only sends Opus FEC to a receiver that
    asks for it there (RFC 7587 section 6.1).
    """
    for payload_type in _OPUS_RTPMAP.findall(sdp):
        fmtp = re.compile(rf"^a=fmtp:{payload_type} (.*?)\r?$", re.MULTILINE)
        found = fmtp.search(sdp)
        if found is None:
            rtpmap = re.search(rf"^a=rtpmap:{payload_type} .*$", sdp, re.MULTILINE)
            assert rtpmap is not None
            line = f"\r\na=fmtp:{payload_type} useinbandfec=1"
            end = rtpmap.end() - (1 if sdp[rtpmap.end() - 1] == "\r" else 0)
            sdp = sdp[:end] + line + sdp[end:]
        elif "useinbandfec" not in found.group(1):
            sdp = sdp[: found.end(1)] + ";useinbandfec=1" + sdp[found.end(1) :]
    return sdp
