"""Boards: the set of devices one intercom has, and the factories that build them.

A board is chosen by name (``build_board("sim")``); real boards join the
registry in ``board_factories`` later, importing their libraries lazily.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from hal.audio import Microphone, RecordingSpeaker, Speaker, ToneMicrophone
from hal.camera import Camera, TestPatternCamera
from hal.errors import DeviceUnavailableError, HalError

_Device = TypeVar("_Device")


def _pick(board: str, kind: str, devices: Mapping[str, _Device], name: str | None) -> _Device:
    if name is None:
        for device in devices.values():
            return device
        raise DeviceUnavailableError(f"board {board!r} has no {kind}")
    try:
        return devices[name]
    except KeyError:
        available = ", ".join(repr(key) for key in devices) or "none"
        raise DeviceUnavailableError(
            f"board {board!r} has no {kind} {name!r} (available: {available})"
        ) from None


@dataclass(frozen=True)
class Board:
    """The devices of one intercom, each kind keyed by device name."""

    name: str
    cameras: Mapping[str, Camera]
    microphones: Mapping[str, Microphone]
    speakers: Mapping[str, Speaker]

    def camera(self, name: str | None = None) -> Camera:
        """The camera called ``name``, or the first one; DeviceUnavailableError if none."""
        return _pick(self.name, "camera", self.cameras, name)

    def microphone(self, name: str | None = None) -> Microphone:
        """The microphone called ``name``, or the first one; DeviceUnavailableError if none."""
        return _pick(self.name, "microphone", self.microphones, name)

    def speaker(self, name: str | None = None) -> Speaker:
        """The speaker called ``name``, or the first one; DeviceUnavailableError if none."""
        return _pick(self.name, "speaker", self.speakers, name)

    async def close(self) -> None:
        """Close every device of the board; idempotent."""
        for camera in self.cameras.values():
            await camera.close()
        for microphone in self.microphones.values():
            await microphone.close()
        for speaker in self.speakers.values():
            await speaker.close()


def build_sim_board(name: str = "sim", *, tone_hz: float = 440.0) -> Board:
    """A board of simulated devices for tests and the demo.

    Cameras "main" and "aux" (different patterns), microphone "main" playing a
    ``tone_hz`` sine, speakers "speaker" and "handset".
    """
    return Board(
        name=name,
        cameras=MappingProxyType(
            {"main": TestPatternCamera("main", seed=0), "aux": TestPatternCamera("aux", seed=1)}
        ),
        microphones=MappingProxyType({"main": ToneMicrophone("main", frequency_hz=tone_hz)}),
        speakers=MappingProxyType(
            {"speaker": RecordingSpeaker("speaker"), "handset": RecordingSpeaker("handset")}
        ),
    )


def board_factories() -> Mapping[str, Callable[..., Board]]:
    """The board kinds this build knows, each with the factory that builds it."""
    return MappingProxyType({"sim": build_sim_board})


def build_board(kind: str, **options: Any) -> Board:
    """Build the board ``kind`` with ``options``; HalError for unknown kinds or options."""
    factories = board_factories()
    try:
        factory = factories[kind]
    except KeyError:
        known = ", ".join(repr(name) for name in sorted(factories))
        raise HalError(f"unknown board {kind!r} (known: {known})") from None
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as err:
        raise HalError(f"bad options for board {kind!r}: {err}") from err
    return factory(**options)
