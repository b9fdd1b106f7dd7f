"""The door station built from its callbox.toml streams RTSP while a call uses the same camera.

A site of device apps (device/simulator) on a real mosquitto: the door's ``[rtsp]`` is on,
the flat calls the door (a monitor call, auto-answered), and ffmpeg watches the stream
meanwhile. Both see the one camera of the door.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rtsp_helpers import PASSWORD, USER, need_tools, read_frames
from support import place_call, props_for

from device.simulator import Unit, start_intercom_site
from services.callapi import CallStatus
from services.signaling.broker import free_port


def rtsp_toml(port: int) -> str:
    """The door's [rtsp] table as the operations guide shows it, on loopback."""
    return (
        f'[rtsp]\nenabled = true\naddress = "127.0.0.1"\nport = {port}\n'
        f'username = "{USER}"\npassword = "{PASSWORD}"\n'
    )


async def test_the_door_streams_rtsp_while_a_call_uses_its_camera(tmp_path: Path) -> None:
    need_tools()
    port = free_port()
    site = await start_intercom_site(
        tmp_path, [Unit("door", "door", extra_toml=rtsp_toml(port)), Unit("flat", "indoor")]
    )
    try:
        door, flat = site["door"].endpoint, site["flat"].endpoint
        assert door is not None and flat is not None and door.rtsp is not None
        assert flat.rtsp is None  # an indoor unit has no [rtsp]
        await door.rtsp.wait_ready(20)
        call, progress = await place_call(flat.calls, props_for(flat.calls, "door"))
        await progress.wait_status(CallStatus.CONNECTED)
        url = f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{port}/door"
        client = await read_frames(url, 10)
        assert await client.finish() == 0, client.stderr
        call.remote_frame.clear()
        await asyncio.wait_for(call.remote_frame.wait(), 10)  # the call's video still flows
        status = site["door"].status()["rtsp"]
        assert status["url"] == f"rtsp://127.0.0.1:{port}/door" and status["units_sent"] >= 10
        await call.hangup()
    finally:
        await site.close()
