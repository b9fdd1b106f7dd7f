"""Video frames as baseline JPEG with PyAV's mjpeg encoder: visitor snapshots, push pictures.

Blocking (CPU-bound): call it off the event loop. A camera frame is shared (the call's video,
the snapshot file, the push picture): it is converted through a scaler of this call's own,
never the frame's one cached scaler (``VideoFrame.reformat``), which another thread may be
using at the same moment.
"""

from __future__ import annotations

from fractions import Fraction

import av
from av.video.reformatter import VideoReformatter

from services.media.errors import MediaError


class JpegError(MediaError):
    """A frame could not be encoded as JPEG; the message says its size and why."""


def encode_jpeg(
    frame: av.VideoFrame,
    *,
    width: int | None = None,
    height: int | None = None,
    qscale: int | None = None,
) -> bytes:
    """``frame`` (any pixel format), scaled to ``width`` x ``height`` (default: its own), as JPEG.

    ``qscale`` fixes mjpeg's quantiser (2 best, 31 smallest) so that the size follows it;
    None lets the encoder choose.
    """
    w, h = width or frame.width, height or frame.height
    try:
        image = VideoReformatter().reformat(
            frame, width=w, height=h, format="yuvj420p", interpolation="AREA"
        )
        codec = av.CodecContext.create("mjpeg", "w")
        codec.width, codec.height = w, h
        codec.pix_fmt = "yuvj420p"
        codec.time_base = Fraction(1, 1)
        if qscale is not None:
            codec.qmin = codec.qmax = qscale
        packets = codec.encode(image) + codec.encode(None)
    except av.FFmpegError as err:
        raise JpegError(f"cannot encode a {w}x{h} JPEG: {err}") from err
    return b"".join(bytes(packet) for packet in packets)
