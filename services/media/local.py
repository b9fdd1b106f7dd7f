"""The endpoint's own media devices, shared by all of its sessions.

One camera source and one microphone source fan out to every session (a ring group
sends the same preview to several indoor units); speakers are opened once and stay
open; call-progress tones play on the active speaker.
"""

from __future__ import annotations

import logging

from hal.audio import Microphone, Speaker
from hal.board import Board
from hal.errors import HalError
from hal.media_types import AudioFormat, VideoFormat
from services.media.aec import EchoCanceller
from services.media.echo_path import CancelledMicrophone, with_reference
from services.media.errors import MediaError
from services.media.tones import TonePlayer
from services.media.tracks import CameraSource, MicrophoneSource

_log = logging.getLogger(__name__)


class LocalMedia:
    """Camera, microphone and speakers of one endpoint, as the call layer uses them."""

    def __init__(
        self,
        board: Board,
        *,
        camera: str | None = None,
        microphone: str | None = None,
        speaker: str | None = None,
        video_format: VideoFormat | None = None,
        audio_format: AudioFormat | None = None,
        echo_canceller: EchoCanceller | None = None,
    ) -> None:
        self.board = board
        self.audio_format = audio_format or AudioFormat()
        self.echo_canceller = echo_canceller
        self.camera = (
            CameraSource(board.camera(camera), video_format or VideoFormat())
            if board.cameras
            else None
        )
        self.microphone = (
            MicrophoneSource(self._capture_device(board.microphone(microphone)), self.audio_format)
            if board.microphones
            else None
        )
        self._speakers: dict[str, Speaker] = {}
        self._speaker_name = speaker or (next(iter(board.speakers)) if board.speakers else None)
        self._open_speakers: set[str] = set()
        self.tones: TonePlayer | None = None

    async def start(self) -> None:
        """Open the default speaker so rings and tones can play."""
        if self._speaker_name is not None:
            self.tones = TonePlayer(await self.open_speaker(self._speaker_name), self.audio_format)

    def _capture_device(self, microphone: Microphone) -> Microphone:
        if self.echo_canceller is None:
            return microphone
        return CancelledMicrophone(microphone, self.echo_canceller)

    def _playback_device(self, name: str) -> Speaker:
        """The speaker ``name`` as calls use it: the echo canceller hears what it plays."""
        if name not in self._speakers:
            speaker = self.board.speaker(name)
            self._speakers[name] = (
                speaker
                if self.echo_canceller is None
                else with_reference(speaker, self.echo_canceller)
            )
        return self._speakers[name]

    async def open_speaker(self, name: str) -> Speaker:
        """The named speaker, opened on first use (MediaError naming it if it is missing)."""
        try:
            speaker = self._playback_device(name)
        except HalError as err:
            raise MediaError(str(err)) from err
        if name not in self._open_speakers:
            await speaker.open(self.audio_format)
            self._open_speakers.add(name)
        return speaker

    async def use_speaker(self, name: str) -> Speaker:
        """Make ``name`` the active speaker (for calls and tones) and return it."""
        speaker = await self.open_speaker(name)
        self._speaker_name = name
        if self.tones is not None:
            await self.tones.stop()
        self.tones = TonePlayer(speaker, self.audio_format)
        return speaker

    def speaker(self) -> Speaker | None:
        """The active speaker, if the board has one."""
        if self._speaker_name is None:
            return None
        return self._playback_device(self._speaker_name)

    async def switch_camera(self, name: str) -> None:
        """Send video from camera ``name`` from the next frame on."""
        if self.camera is None:
            raise MediaError(f"board {self.board.name!r} has no camera")
        try:
            camera = self.board.camera(name)
        except HalError as err:
            raise MediaError(str(err)) from err
        await self.camera.switch(camera)

    def camera_names(self) -> list[str]:
        """The cameras of the board, in order."""
        return list(self.board.cameras)

    async def close(self) -> None:
        """Stop tones and release every device; safe to call twice."""
        if self.tones is not None:
            await self.tones.stop()
        if self.camera is not None:
            await self.camera.close()
        if self.microphone is not None:
            await self.microphone.close()
        for name in list(self._open_speakers):
            await self._playback_device(name).close()
        self._open_speakers.clear()
        if self.echo_canceller is not None:
            self.echo_canceller.close()
