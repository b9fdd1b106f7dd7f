"""In-call controls of the mesibo Call: mute, DTMF, audio device, camera, format, sounds.

``CallControls`` owns what this side sends (the media gates: mute, camera muted for a
failure, video on or off) and what it knows the peer sends, and the in-call sound.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Protocol

from services.callapi.devices import CallDevices
from services.callapi.legs import Leg
from services.callapi.properties import CallProperties
from services.callapi.reasons import DTMF_DIGITS
from services.callapi.status import AudioDevice, CallError, InCallSound
from services.media.session import MediaSession

_log = logging.getLogger(__name__)


class ControlledCall(Protocol):
    """What the in-call controls need of their call."""

    props: CallProperties

    def is_answered(self) -> bool:
        """True once the call was answered."""
        ...

    def is_incoming(self) -> bool:
        """True for a call this endpoint received."""
        ...

    def active_leg(self) -> Leg | None:
        """The leg talked to (None while an outgoing call rings)."""
        ...

    def every_leg(self) -> Iterable[Leg]:
        """Every leg of the call (the callees an outgoing call rings)."""
        ...

    async def send_to_peer(self, message_type: str, body: dict[str, Any]) -> None:
        """Send to the active leg; a failure is logged."""
        ...

    async def send_or_log(self, address: str, message_type: str, body: dict[str, Any]) -> None:
        """Send to ``address``; a failure is logged."""
        ...

    async def emit(self, name: str, *args: Any) -> Any:
        """Tell the call's listeners."""
        ...


class CallControls:
    """What a person or an app changes during a call, and the media gates it sets."""

    def __init__(self, call: ControlledCall, devices: CallDevices, *, send_video: bool) -> None:
        self._call = call
        self._devices = devices
        self.send_video = send_video
        self.remote_sends_video = call.props.video.enabled
        self.muted = {"audio": False, "video": False}
        self.remote_muted = {"audio": False, "video": False}
        self._camera_muted = False
        self._sound: InCallSound | None = None

    # media gates ------------------------------------------------------------------------------

    def open_gates(self, session: MediaSession) -> None:
        """Send what this side may send now: audio unless muted, video if on and not muted."""
        session.set_sending(
            audio=not self.muted["audio"], video=self.send_video and not self.muted["video"]
        )

    def sends_video(self) -> bool:
        """True while this side sends its camera's video (on for the call, not muted)."""
        return self.send_video and not self.muted["video"]

    def peer_silent_by_choice(self) -> bool:
        """True when the peer muted everything it sends (its silence is no link loss)."""
        return self.remote_muted["audio"] and (
            self.remote_muted["video"] or not self.remote_sends_video
        )

    def get_mute_status(self, audio: bool, video: bool, remote: bool) -> bool:
        """True if every asked-for stream (audio and/or video) is muted, here or at the peer."""
        state = self.remote_muted if remote else self.muted
        asked = [state["audio"]] * audio + [state["video"]] * video
        return bool(asked) and all(asked)

    # mute -------------------------------------------------------------------------------------

    async def mute(self, audio: bool, video: bool, enable: bool) -> None:
        """Mute (``enable=True``) or unmute the local audio and/or video; the peer is told."""
        if audio:
            self.muted["audio"] = enable
        if video:
            self.muted["video"] = enable
        call = self._call
        leg = call.active_leg()
        if leg is not None and call.is_answered():
            self.open_gates(leg.session)
            await call.send_to_peer("mute", dict(self.muted))
        elif not call.is_incoming():
            # still ringing: the early media (the preview) goes to every callee, so the mute
            # gates and is told to every leg, not only to a winner there is not yet
            for ringing in call.every_leg():
                self.open_gates(ringing.session)
                await call.send_or_log(ringing.address, "mute", dict(self.muted))
        else:
            await call.send_to_peer("mute", dict(self.muted))
        await call.emit("on_mute", self.muted["audio"], self.muted["video"], False)

    async def on_mute(self, leg: Leg, body: dict[str, Any]) -> None:
        """The peer muted or unmuted."""
        self.remote_muted = {"audio": bool(body.get("audio")), "video": bool(body.get("video"))}
        await self._call.emit(
            "on_mute", self.remote_muted["audio"], self.remote_muted["video"], True
        )

    async def toggle(self, kind: str) -> bool:
        """Flip the mute of ``kind`` ("audio" or "video"); True when it is now muted."""
        await self.mute(kind == "audio", kind == "video", not self.muted[kind])
        return self.muted[kind]

    async def camera_lost(self) -> None:
        """Mute the video for a failed camera (unless a person muted it already)."""
        self._camera_muted = not self.muted["video"]
        if self._camera_muted:
            await self.mute(False, True, True)

    async def camera_back(self) -> None:
        """The camera works again: unmute the video this side muted for it."""
        if self._camera_muted:
            self._camera_muted = False
            await self.mute(False, True, False)

    # dtmf, devices, format --------------------------------------------------------------------

    async def send_dtmf(self, digit: int) -> None:
        """Send a DTMF digit (0-9, 10='*', 11='#', 12-15='A'-'D') to the peer's ``on_dtmf``."""
        if not 0 <= digit < len(DTMF_DIGITS):
            raise CallError(f"dtmf digit {digit} must be within 0..{len(DTMF_DIGITS) - 1}")
        await self._call.send_to_peer("dtmf", {"digit": digit})

    async def on_dtmf(self, leg: Leg, body: dict[str, Any]) -> None:
        """The peer sent a DTMF digit."""
        digit = body.get("digit")
        if isinstance(digit, int) and 0 <= digit < len(DTMF_DIGITS):
            await self._call.emit("on_dtmf", digit)
        else:
            _log.warning("bad dtmf digit %r from %s", digit, leg.address)

    async def set_audio_device(self, device: AudioDevice, enable: bool) -> None:
        """Play the call on another output (speaker, earpiece/handset, headset)."""
        previous = self._devices.audio_device
        target = device if enable else AudioDevice.SPEAKER
        speaker = await self._devices.use_audio_device(target)
        leg = self._call.active_leg()
        if leg is not None:
            leg.session.set_speaker(speaker)
        if target != previous:
            await self._call.emit("on_audio_device_changed", int(target), int(previous))

    async def switch_source(self, name: str | None) -> str:
        """Send video from camera ``name`` (default: the next camera); returns its name."""
        name, index = await self._devices.switch_camera(name)
        await self._call.emit("on_video_source_changed", name, index)
        return name

    async def change_video_format(self, width: int, height: int, fps: int) -> None:
        """Capture and send at another size and frame rate, mid-call."""
        self._devices.set_camera_format(width, height, fps)
        video = self._call.props.video
        video.width, video.height, video.fps = width, height, fps
        await self._call.emit("on_video", width, height, False)

    def set_video_bitrate(self, kbps: int) -> None:
        """Cap the video bitrate (kbps) of the running call (CallError when out of range)."""
        video = self._call.props.video
        replace(video, bitrate_kbps=kbps).validate()
        video.bitrate_kbps = kbps
        for leg in self._call.every_leg():
            leg.session.set_video_bitrate(kbps * 1000)

    # in-call sounds ---------------------------------------------------------------------------

    async def play_in_call_sound(self, kind: InCallSound, loops: int) -> None:
        """Play ringback or the busy tone on this endpoint's speaker, unless the app does."""
        await self.stop_in_call_sound()
        self._sound = kind
        if not await self._call.emit("on_play_in_call_sound", kind, True):
            await self._devices.play_sound(kind, loops)

    async def stop_in_call_sound(self) -> None:
        """Stop the in-call sound (and tell the app, which may be the one playing it)."""
        kind, self._sound = self._sound, None
        if kind is None:
            return
        await self._devices.stop_sound(kind)
        await self._call.emit("on_play_in_call_sound", kind, False)
