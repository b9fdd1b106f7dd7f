"""The visitor's picture for a push: a small JPEG that keeps the push under its limit.

A push carries at most ~2 KB of JPEG (:meth:`services.push.payload.RingPush.snapshot_budget`),
so the camera frame is scaled down to :data:`PUSH_WIDTHS` (the first that fits) and encoded at
decreasing quality (:data:`QSCALES`, mjpeg's quantiser: 2 best, 31 smallest) until the JPEG is
within the budget (services/media/jpeg.py encodes; it never uses the shared frame's cached
scaler). Blocking (CPU-bound): :func:`push_jpeg` runs on a worker thread, never on the event
loop.
"""

from __future__ import annotations

import asyncio
import logging

import av

from services.media.jpeg import JpegError, encode_jpeg
from services.push.errors import PushError

_log = logging.getLogger(__name__)

PUSH_WIDTHS = (160, 128, 96)
"""Picture widths tried, widest first (the height keeps the frame's aspect)."""
QSCALES = (6, 9, 13, 18, 24, 31)
"""mjpeg quantisers tried at each width, best quality first."""


class PictureError(PushError):
    """The visitor's picture could not be made small enough, or not encoded at all."""


def push_jpeg(frame: av.VideoFrame, max_bytes: int) -> bytes:
    """``frame`` as a baseline JPEG of at most ``max_bytes``: the widest, then best, that fits.

    Blocking: call it through :func:`encode_push_jpeg` (or another thread). Raises
    PictureError when even the smallest width at the lowest quality is too large, or on an
    encoder error.
    """
    if frame.width < 2 or frame.height < 2:
        raise PictureError(f"a {frame.width}x{frame.height} frame is no picture")
    smallest = 0
    for width in PUSH_WIDTHS:
        w, h = _scaled(frame.width, frame.height, width)
        for qscale in QSCALES:
            try:
                jpeg = encode_jpeg(frame, width=w, height=h, qscale=qscale)
            except JpegError as err:
                raise PictureError(f"the visitor's picture for a push: {err}") from err
            if len(jpeg) <= max_bytes:
                return jpeg
            smallest = len(jpeg)
    raise PictureError(
        f"the visitor's picture is {smallest} bytes at {w}x{h} and the lowest quality, "
        f"over the push's room of {max_bytes} bytes"
    )


async def encode_push_jpeg(frame: av.VideoFrame, max_bytes: int) -> bytes:
    """:func:`push_jpeg` on a worker thread."""
    return await asyncio.to_thread(push_jpeg, frame, max_bytes)


def _scaled(width: int, height: int, target: int) -> tuple[int, int]:
    """``target`` wide (never wider than the frame), the height in proportion; both even."""
    w = min(target, width) // 2 * 2
    h = max(2, round(height * w / width / 2) * 2)
    return w, h
