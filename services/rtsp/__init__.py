"""The door camera as an RTSP stream for NVRs (Frigate, Scrypted, Home Assistant).

An observer at the edge, off by default: GStreamer's RTSP server in a child process
(:mod:`services.rtsp._child`), fed the camera's H.264 by :class:`RtspService`. The stream
is outside the calls' end-to-end encryption (docs/security.md).
"""

from services.rtsp.service import RtspService, RtspSettings, RtspStartError
from services.rtsp.source import AccessUnit, CameraH264, H264Source, RawEncoding

__all__ = [
    "AccessUnit",
    "CameraH264",
    "H264Source",
    "RawEncoding",
    "RtspService",
    "RtspSettings",
    "RtspStartError",
]
