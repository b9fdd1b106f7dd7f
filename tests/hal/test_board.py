"""Boards: the sim board's devices, lookups by name, and the board registry."""

from __future__ import annotations

import pytest

from hal.audio import RecordingSpeaker, ToneMicrophone
from hal.board import Board, board_factories, build_board, build_sim_board
from hal.camera import TestPatternCamera
from hal.errors import DeviceUnavailableError, HalError
from hal.gpio_specs import IoSpec, RelaySpec
from hal.media_types import VideoFormat


def test_sim_board_has_the_expected_devices() -> None:
    board = build_sim_board()
    assert board.name == "sim"
    assert list(board.cameras) == ["main", "aux"]
    assert list(board.microphones) == ["main"]
    assert list(board.speakers) == ["speaker", "handset"]
    assert board.camera() is board.cameras["main"]
    assert board.camera("aux").name == "aux"
    assert board.speaker() is board.speakers["speaker"]
    assert isinstance(board.speaker("handset"), RecordingSpeaker)
    mic = board.microphone()
    assert isinstance(mic, ToneMicrophone) and mic.frequency_hz == 440.0


def test_tone_is_configurable_and_boards_share_nothing() -> None:
    first, second = build_sim_board("door", tone_hz=1000.0), build_sim_board("indoor")
    mic = first.microphone("main")
    assert isinstance(mic, ToneMicrophone) and mic.frequency_hz == 1000.0
    assert first.camera() is not second.camera()
    assert first.speaker() is not second.speaker()


def test_missing_device_names_it_and_the_alternatives() -> None:
    board = build_sim_board("door")
    with pytest.raises(DeviceUnavailableError, match=r"'door' has no camera 'rear'.*'main', 'aux'"):
        board.camera("rear")
    with pytest.raises(HalError, match=r"no speaker 'ear'.*'speaker', 'handset'"):
        board.speaker("ear")
    empty = Board(name="bare", cameras={}, microphones={}, speakers={})
    with pytest.raises(HalError, match="'bare' has no microphone"):
        empty.microphone()


def test_build_board_knows_sim_and_pi_and_names_unknown_kinds() -> None:
    assert set(board_factories()) == {"sim", "pi"}
    board = build_board("sim", name="lobby", tone_hz=600.0)
    assert board.name == "lobby"
    with pytest.raises(HalError, match=r"unknown board 'pi5' \(known: 'pi', 'sim'\)"):
        build_board("pi5")
    with pytest.raises(HalError, match=r"bad options for board 'sim'.*volume"):
        build_board("sim", volume=3)


async def test_board_close_closes_every_device() -> None:
    board = build_sim_board()
    camera = board.camera()
    assert isinstance(camera, TestPatternCamera)
    await camera.open(VideoFormat())
    await board.close()
    await board.close()
    assert not camera.is_open


async def test_a_pi_board_wires_the_gpio_devices_of_its_spec() -> None:
    spec = IoSpec(pin_factory="mock", relay=RelaySpec(pin="GPIO24"))
    board = build_board("pi", name="door", io=spec)
    try:
        await board.io.start()
        assert board.io.pin_factory is not None
        assert board.io.pin_factory.pin("GPIO24").state is False, "relay inactive at start"
        assert not board.microphones and not board.speakers, "no [audio]: none"
        assert list(board.cameras) == ["picamera"], "the camera connector by default"
    finally:
        await board.close()


def test_a_pi_board_without_a_gpio_library_says_which_is_missing() -> None:
    spec = IoSpec(pin_factory="lgpio", relay=RelaySpec(pin="GPIO24"))
    with pytest.raises(HalError, match="lgpio"):
        build_board("pi", io=spec)


async def test_a_pi_board_maps_its_logical_audio_devices_to_alsa_pcms() -> None:
    board = build_board(
        "pi",
        io=IoSpec(pin_factory="mock"),
        speakers={"speaker": "default", "handset": "plughw:CARD=Headset,DEV=0"},
        microphone="default",
    )
    try:
        assert set(board.speakers) == {"speaker", "handset"}
        assert type(board.speaker("handset")).__name__ == "AlsaSpeaker"
        assert type(board.microphone()).__name__ == "AlsaMicrophone"
    finally:
        await board.close()
