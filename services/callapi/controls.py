"""In-call controls of the mesibo Call: mute, DTMF, audio device, camera, format, sounds."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace

from hal.media_types import VideoFormat
from services.callapi.callstate import (
    DTMF_DIGITS,
    IN_CALL_TONES,
    CallState,
)
from services.callapi.status import (
    AudioDevice,
    CallError,
    CallErrorCode,
    InCallSound,
)
from services.media.errors import MediaError
from services.signaling.errors import SignalingError

_log = logging.getLogger(__name__)


class CallControls(CallState):
    """What a person or an app changes during a call."""

    async def mute(self, audio: bool, video: bool, enable: bool) -> None:
        """Mute (``enable=True``) or unmute the local audio and/or video; the peer is told."""
        if audio:
            self._muted["audio"] = enable
        if video:
            self._muted["video"] = enable
        leg = self._active_leg()
        if leg is not None and self.is_answered():
            self._open_gates(leg.session)
            await self._send_to_peer("mute", dict(self._muted))
        elif not self._incoming:
            # still ringing: the early media (the preview) goes to every callee, so the mute
            # gates and is told to every leg, not only to a winner there is not yet
            for ringing in list(self._legs.values()):
                self._open_gates(ringing.session)
                with contextlib.suppress(SignalingError):
                    await self._calls.signaling.send(
                        ringing.address, "mute", self.call_id, dict(self._muted)
                    )
        else:
            await self._send_to_peer("mute", dict(self._muted))
        await self._emit("on_mute", self._muted["audio"], self._muted["video"], False)

    async def camera_lost(self, err: Exception) -> None:
        """The camera failed mid-call: go on audio-only, the peer sees video muted, the app
        hears HWERROR (``on_error``); the camera is retried and video resumes by itself."""
        _log.error("%s: call %s goes on without video: %s", self._calls.address, self.call_id, err)
        self._camera_muted = not self._muted["video"]
        if self._camera_muted:
            await self.mute(False, True, True)
        await self._calls.notify_error(self.props, CallErrorCode.HARDWARE)

    async def camera_back(self) -> None:
        """The camera works again: unmute the video this side muted for it."""
        if self._camera_muted:
            self._camera_muted = False
            await self.mute(False, True, False)

    async def toggle_audio_mute(self) -> bool:
        """Flip the audio mute; returns True when audio is now muted."""
        await self.mute(True, False, not self._muted["audio"])
        return self._muted["audio"]

    async def toggle_video_mute(self) -> bool:
        """Flip the video mute; returns True when video is now muted."""
        await self.mute(False, True, not self._muted["video"])
        return self._muted["video"]

    async def send_dtmf(self, digit: int) -> None:
        """Send a DTMF digit (0-9, 10='*', 11='#', 12-15='A'-'D') to the peer's ``on_dtmf``."""
        if not 0 <= digit < len(DTMF_DIGITS):
            raise CallError(f"dtmf digit {digit} must be within 0..{len(DTMF_DIGITS) - 1}")
        await self._send_to_peer("dtmf", {"digit": digit})

    async def set_audio_device(self, device: AudioDevice, enable: bool = True) -> None:
        """Play the call on another output (speaker, earpiece/handset, headset)."""
        previous = self._calls.audio_device
        target = device if enable else AudioDevice.SPEAKER
        speaker = await self._calls.use_audio_device(target)
        leg = self._active_leg()
        if leg is not None:
            leg.session.set_speaker(speaker)
        if target != previous:
            await self._emit("on_audio_device_changed", int(target), int(previous))

    async def switch_source(self, name: str | None = None) -> str:
        """Send video from camera ``name`` (default: the next camera); returns its name."""
        media = self._calls.media
        names = media.camera_names()
        if media.camera is None or not names:
            raise CallError("this endpoint has no camera to switch to")
        if name is None:
            current = media.camera.camera.name
            name = names[(names.index(current) + 1) % len(names)] if current in names else names[0]
        try:
            await media.switch_camera(name)
        except MediaError as err:
            raise CallError(str(err)) from err
        await self._emit("on_video_source_changed", name, names.index(name))
        return name

    async def change_video_format(self, width: int, height: int, fps: int) -> None:
        """Capture and send at another size and frame rate, mid-call."""
        media = self._calls.media
        if media.camera is None:
            raise CallError("this endpoint has no camera")
        try:
            fmt = VideoFormat(width, height, fps)
        except ValueError as err:
            raise CallError(f"video format {width}x{height}@{fps}: {err}") from err
        media.camera.set_format(fmt)
        self.props.video.width, self.props.video.height, self.props.video.fps = width, height, fps
        await self._emit("on_video", width, height, False)

    def set_video_bitrate(self, kbps: int) -> None:
        """Cap the video bitrate (kbps) of the running call (CallError when out of range)."""
        replace(self.props.video, bitrate_kbps=kbps).validate()
        self.props.video.bitrate_kbps = kbps
        for leg in self._legs.values():
            leg.session.set_video_bitrate(kbps * 1000)

    async def play_in_call_sound(self, kind: InCallSound, loops: int = 0) -> None:
        """Play ringback or the busy tone on this endpoint's speaker, unless the app does.

        ``loops`` cycles of the tone's cadence, 0 for until stopped.
        """
        await self.stop_in_call_sound()
        self._sound = kind
        handled = await self._emit("on_play_in_call_sound", kind, True)
        tones = self._calls.media.tones
        if handled or tones is None:
            return
        await tones.play(IN_CALL_TONES[kind], loops)

    async def stop_in_call_sound(self) -> None:
        """Stop the in-call sound (and tell the app, which may be the one playing it)."""
        kind, self._sound = self._sound, None
        if kind is None:
            return
        tones = self._calls.media.tones
        if tones is not None and tones.playing is IN_CALL_TONES[kind]:
            await tones.stop()
        await self._emit("on_play_in_call_sound", kind, False)
