"""Which RTP packet starts a key frame, read from the payload: VP8 (RFC 7741), H.264 (RFC 6184).

The frame assembler resumes decoding only at a key frame, and must tell one from its first
packet: the decoder is never handed a delta frame whose reference was lost.
"""

from __future__ import annotations

from collections.abc import Callable

from aiortc.codecs.vpx import VpxPayloadDescriptor

_H264_SPS, _H264_IDR, _H264_STAP_A, _H264_FU_A = 7, 5, 24, 28


def vp8_keyframe_start(payload: bytes) -> bool:
    """Whether a VP8 RTP payload is the first packet of a key frame (RFC 7741)."""
    try:
        descriptor, data = VpxPayloadDescriptor.parse(payload)
    except ValueError:
        return False
    first = descriptor.partition_start and descriptor.partition_id == 0
    return bool(first and data and not data[0] & 1)  # P bit 0: key frame


def h264_keyframe_start(payload: bytes) -> bool:
    """Whether an H.264 RTP payload (RFC 6184) starts a key frame: SPS, or an IDR's first slice."""
    if len(payload) < 3:
        return False
    kind = payload[0] & 0x1F
    if kind == _H264_STAP_A:
        pos, kinds = 1, []
        while pos + 3 <= len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            kinds.append(payload[pos + 2] & 0x1F)
            pos += 2 + size
        return _H264_SPS in kinds or (bool(kinds) and kinds[0] == _H264_IDR)
    if kind == _H264_FU_A:
        start = payload[1] & 0x80
        return bool(start and payload[1] & 0x1F == _H264_IDR and payload[2] & 0x80)
    return kind == _H264_SPS or (kind == _H264_IDR and bool(payload[1] & 0x80))


_DETECTORS: dict[str, Callable[[bytes], bool]] = {
    "video/vp8": vp8_keyframe_start,
    "video/h264": h264_keyframe_start,
}


def keyframe_detector(mime_type: str) -> Callable[[bytes], bool] | None:
    """The key-frame start test for a codec, None for one we cannot parse."""
    return _DETECTORS.get(mime_type.lower())
