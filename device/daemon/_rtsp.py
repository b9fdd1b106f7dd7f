"""The door station's RTSP stream (``[rtsp]``) built from the configuration."""

from __future__ import annotations

import asyncio
from pathlib import Path

from device.config import CallboxConfig, rtsp_password
from services.callapi import Calls
from services.rtsp import CameraH264, RtspService, RtspSettings


async def rtsp_service(config: CallboxConfig, calls: Calls) -> RtspService | None:
    """The RTSP stream of the door's camera (not started), or None when it is off.

    It shares the camera with the calls (``calls.media.camera``). ConfigError naming
    ``rtsp.password_file`` when the password cannot be read.
    """
    rtsp = config.rtsp
    camera = calls.media.camera
    if not rtsp.enabled or config.role != "door" or camera is None:
        return None
    password = await asyncio.to_thread(rtsp_password, config)
    settings = RtspSettings(
        address=rtsp.address,
        port=rtsp.port,
        path=rtsp.path,
        username=rtsp.username,
        password=password,
        max_clients=rtsp.max_clients,
        registry=Path(config.state_dir) / "gstreamer-registry.bin",
    )
    return RtspService(settings, CameraH264(camera))
