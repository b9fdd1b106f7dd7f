"""The endpoint's devices as calls use them: ringtone, in-call tones, audio output, camera.

One per endpoint (built by ``Calls``), shared by its calls: the audio output chosen in one
call is the one the next call starts on, as on a phone.
"""

from __future__ import annotations

from hal.audio import Speaker
from hal.media_types import VideoFormat
from services.callapi.properties import CallProperties
from services.callapi.status import AudioDevice, CallError, InCallSound
from services.media.errors import MediaError
from services.media.local import LocalMedia
from services.media.tones import BUSY, RINGBACK, RINGTONE, TonePattern

AUDIO_DEVICE_SPEAKERS = {
    AudioDevice.SPEAKER: "speaker",
    AudioDevice.DEFAULT: "speaker",
    AudioDevice.EARPIECE: "handset",
    AudioDevice.HEADSET: "headset",
    AudioDevice.BLUETOOTH: "bluetooth",
}
"""Which board speaker plays the call for each mesibo audio device."""
IN_CALL_TONES: dict[InCallSound, TonePattern] = {
    InCallSound.RINGING: RINGBACK,
    InCallSound.BUSY: BUSY,
}
"""The tone this endpoint plays for each in-call sound an app does not play itself."""


class CallDevices:
    """Rings, tones, the audio output and the camera of one endpoint, for its calls."""

    def __init__(self, media: LocalMedia, *, ring_on_incoming: bool = True) -> None:
        self.media = media
        self.audio_device = AudioDevice.SPEAKER
        self._ring_on_incoming = ring_on_incoming

    async def start_ringing(self) -> None:
        """Ring on this endpoint's speaker (an incoming call)."""
        if self._ring_on_incoming and self.media.tones is not None:
            await self.media.tones.play(RINGTONE)

    async def stop_ringing(self) -> None:
        """Stop the ringtone if it plays."""
        tones = self.media.tones
        if tones is not None and tones.playing is RINGTONE:
            await tones.stop()

    async def play_sound(self, kind: InCallSound, loops: int) -> None:
        """Play the tone of ``kind``, ``loops`` cycles (0: until stopped), if there is a speaker."""
        if self.media.tones is not None:
            await self.media.tones.play(IN_CALL_TONES[kind], loops)

    async def stop_sound(self, kind: InCallSound) -> None:
        """Stop the tone of ``kind`` if it is the one playing."""
        tones = self.media.tones
        if tones is not None and tones.playing is IN_CALL_TONES[kind]:
            await tones.stop()

    async def use_audio_device(self, device: AudioDevice) -> Speaker:
        """Route call audio to ``device`` (CallError naming it when the board has none)."""
        name = AUDIO_DEVICE_SPEAKERS[device]
        try:
            speaker = await self.media.use_speaker(name)
        except MediaError as err:
            raise CallError(f"audio device {device.name.lower()}: {err}") from err
        self.audio_device = device
        return speaker

    def apply_video_format(self, props: CallProperties) -> None:
        """Capture at the size and rate that ``props`` asks for (before a call sends video)."""
        camera = self.media.camera
        if camera is None or not props.video.enabled:
            return
        fmt = VideoFormat(props.video.width, props.video.height, props.video.fps)
        if fmt != camera.format:
            camera.set_format(fmt)

    async def switch_camera(self, name: str | None) -> tuple[str, int]:
        """Send video from camera ``name`` (None: the next one); its name and index."""
        media = self.media
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
        return name, names.index(name)

    def set_camera_format(self, width: int, height: int, fps: int) -> None:
        """Capture at another size and frame rate (CallError when there is no camera)."""
        if self.media.camera is None:
            raise CallError("this endpoint has no camera")
        try:
            fmt = VideoFormat(width, height, fps)
        except ValueError as err:
            raise CallError(f"video format {width}x{height}@{fps}: {err}") from err
        self.media.camera.set_format(fmt)
