"""A VP8 or H.264 RTP stream made by aiortc's own encoders, for the video receive path's tests.

:class:`RtpVideoSender` encodes moving test frames on demand, packetises them like aiortc's
sender (one RTP packet per payload, the marker on a frame's last) and honours key frame
requests on the next frame, as aiortc's sender does on a PLI. :func:`depayloaded` adds what
aiortc's receiver adds before its jitter buffer.
"""

from __future__ import annotations

import fractions

import av
import numpy as np
from aiortc.codecs import depayload, get_decoder, get_encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
H264 = RTCRtpCodecParameters(
    mimeType="video/H264",
    clockRate=90000,
    payloadType=102,
    parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
)


def depayloaded(codec: RTCRtpCodecParameters, packet: RtpPacket) -> RtpPacket:
    """``packet`` with aiortc's depayloaded data attached (``packet._data``)."""
    packet._data = depayload(codec, packet.payload)  # type: ignore[attr-defined]
    return packet


class RtpVideoSender:
    """Encodes 160x120 frames of a moving picture at 30 fps into RTP packets."""

    def __init__(self, codec: RTCRtpCodecParameters = VP8, seq: int = 65500) -> None:
        self.codec = codec
        assert codec.payloadType is not None
        self._payload_type = codec.payloadType
        self._encoder = get_encoder(codec)
        self._seq = seq  # near the wrap on purpose
        self._index = 0
        self._key_wanted = False
        self.keyframes: list[int] = []  # RTP timestamps of the key frames sent

    def request_keyframe(self) -> None:
        """A PLI arrived: the next frame is a key frame."""
        self._key_wanted = True

    def next_frame(self) -> list[RtpPacket]:
        """The packets of the next frame (several for a key frame)."""
        picture = np.zeros((120, 160, 3), dtype=np.uint8)
        picture[:, :, 0] = (np.arange(160) * 2 + self._index * 5) % 256
        picture[(self._index * 3) % 120 :, :, 1] = 200
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = self._index * 3000, fractions.Fraction(1, 90000)
        force, self._key_wanted = self._key_wanted or self._index == 0, False
        payloads, timestamp = self._encoder.encode(frame, force)
        if force:
            self.keyframes.append(timestamp)
        self._index += 1
        packets = []
        for i, payload in enumerate(payloads):
            packets.append(
                depayloaded(
                    self.codec,
                    RtpPacket(
                        payload_type=self._payload_type,
                        sequence_number=self._seq,
                        timestamp=timestamp,
                        marker=int(i == len(payloads) - 1),
                        payload=payload,
                    ),
                )
            )
            self._seq = (self._seq + 1) % 2**16
        return packets


class Decoder:
    """aiortc's decoder for a codec: counts the frames it decoded and the ones it refused."""

    def __init__(self, codec: RTCRtpCodecParameters = VP8) -> None:
        self._decoder = get_decoder(codec)
        self.decoded = 0
        self.errors = 0

    def decode(self, frame: JitterFrame) -> None:
        """Decode one assembled frame."""
        try:
            self.decoded += len(self._decoder.decode(frame))
        except av.FFmpegError:
            self.errors += 1
