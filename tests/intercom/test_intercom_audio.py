"""What the people at both ends hear and what stays on record.

Ringback at the door, the handset taking over when held to the ear, visitor snapshots on both sides.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import av
import pytest
from intercom_site import IntercomSite, Unit, start_intercom_site, wait_for

from hal.audio import RecordingSpeaker
from hal.io_devices import SIM_PINS
from services.callapi import AudioDevice, CallStatus
from services.intercom.calllog import read_call_log


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[IntercomSite]:
    site = await start_intercom_site(tmp_path, [Unit("door", "door"), Unit("flat", "indoor")])
    yield site
    await site.close()


async def press(site: IntercomSite, address: str, role: str) -> None:
    pin = site.pin(address, SIM_PINS[role])
    pin.drive_low()
    await asyncio.sleep(0.1)  # a person's press is the input, not a wait
    pin.drive_high()


def endpoint(site: IntercomSite, address: str) -> Any:
    endpoint = site[address].endpoint
    assert endpoint is not None
    return endpoint


def speaker(site: IntercomSite, address: str, name: str) -> RecordingSpeaker:
    device = endpoint(site, address).board.speaker(name)
    assert isinstance(device, RecordingSpeaker)
    return device


async def test_the_visitor_hears_ringback_while_the_flat_rings(site: IntercomSite) -> None:
    door_speaker = speaker(site, "door", "speaker")
    door_speaker.clear()
    await press(site, "door", "doorbell")
    await wait_for(lambda: endpoint(site, "flat").calls.active_call is not None, "ringing")
    await door_speaker.wait_for_samples(48000 // 2, timeout=10)
    assert abs(door_speaker.dominant_frequency(300) - 425.0) < 15, "ringback tone (425 Hz)"


async def test_the_handset_takes_the_audio_when_held_to_the_ear(site: IntercomSite) -> None:
    await press(site, "door", "doorbell")
    await wait_for(lambda: endpoint(site, "flat").calls.active_call is not None, "ringing")
    call = endpoint(site, "flat").calls.active_call
    await press(site, "flat", "answer")  # hands-free
    await wait_for(lambda: call.status == CallStatus.CONNECTED, "the call to connect")
    assert endpoint(site, "flat").calls.audio_device == AudioDevice.SPEAKER
    assert await asyncio.to_thread(site.bl_power, "flat") == "0"

    handset = speaker(site, "flat", "handset")
    handset.clear()
    site.pin("flat", SIM_PINS["proximity"]).drive_low()
    await wait_for(
        lambda: endpoint(site, "flat").calls.audio_device == AudioDevice.EARPIECE, "the handset"
    )
    await handset.wait_for_samples(48000 // 5, timeout=10)
    assert handset.rms() > 0, "the visitor is heard in the handset"
    on = await asyncio.to_thread(site.bl_power, "flat")
    assert on == "0", "a video call keeps the screen on when hands-free"
    site.pin("flat", SIM_PINS["proximity"]).drive_high()
    await wait_for(
        lambda: endpoint(site, "flat").calls.audio_device == AudioDevice.SPEAKER, "the speaker"
    )


async def test_both_sides_keep_a_visitor_snapshot_with_the_call(site: IntercomSite) -> None:
    await press(site, "door", "doorbell")
    await wait_for(lambda: endpoint(site, "flat").calls.active_call is not None, "ringing")
    call = endpoint(site, "flat").calls.active_call
    await wait_for(call.remote_frame.is_set, "the preview")
    await press(site, "flat", "decline")
    for address in ("door", "flat"):
        state = Path(site[address].config.state_dir)
        await wait_for(partial(read_call_log, state / "calls.sqlite"), f"{address}'s log")
        (record,) = await asyncio.to_thread(read_call_log, state / "calls.sqlite")
        assert record.snapshot, f"{address} logged no snapshot"
        with av.open(str(state / "snapshots" / record.snapshot)) as image:
            frame = next(image.decode(video=0))
        assert (frame.width, frame.height) == (640, 480)
        pixels = frame.to_ndarray(format="gray")
        assert pixels.std() > 10, "the snapshot shows the test pattern, not a flat image"
