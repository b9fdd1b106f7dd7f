"""The ALSA back-ends through real alsa-lib and pyalsaaudio, on PCMs backed by files.

``alsa_helpers.file_pcms`` writes a test asoundrc: a playback PCM (the ``file`` plugin
writing what the application writes to a file, over a ``null`` slave) and a capture
PCM (the ``file`` plugin replacing the ``null`` slave's frames with a file's).

What these devices prove: that the back-ends open PCMs by name with the period, buffer,
rate and format asked for; that every sample played reaches alsa-lib unchanged and in
order (the output file is compared bit for bit), including resampling and downmixing;
that every captured sample comes out in s16 frames with continuous pts; that errors of
alsa-lib (unknown PCM, an I/O error while playing, a missing mixer) surface as
HalErrors naming the PCM; that queues are capped, and what is dropped is the oldest.

What they cannot prove: ``null`` has no clock. Writes return at once and the file
plugin reads its whole input file as fast as it is asked, so real-time pacing, real
xruns (-EPIPE) and real clock drift never happen here. The back-ends detect such a PCM
(it runs more than a buffer ahead of the wall clock) and pace it with a virtual device
(``VirtualPcm``), so timing, xruns and the queue caps are exercised against that
virtual clock; the drift compensation is checked by simulation (30 minutes at ±100 ppm
in a fraction of a second). A real sound card's clock, its mixer controls (there is no
control device without a card) and a -EPIPE from pyalsaaudio need the hardware.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
from alsa_helpers import file_pcms

from hal.alsa_audio import (
    AlsaMicrophone,
    AlsaMixer,
    AlsaPcmSpec,
    AlsaSpeaker,
    alsa_devices,
)
from hal.alsa_pcm import ClockCheck, VirtualPcm
from hal.alsa_playback import DriftCompensator, SampleFifo
from hal.errors import DeviceUnavailableError, HalError
from hal.media_types import AudioFormat, RealtimePacer
from services.media.aec import make_echo_canceller
from services.media.echo_path import with_reference

# the PCMs pace themselves against the wall clock: measured with the machine otherwise idle
pytestmark = pytest.mark.alone

RATE = 48000
FMT = AudioFormat()  # 48 kHz mono, 20 ms frames
PERIOD = 480  # 10 ms, the default period at 48 kHz
BUFFER = 3 * PERIOD
QUEUE_CAP = 4 * PERIOD
Samples = npt.NDArray[np.int16]


def tone(frequency: float, seconds: float, rate: int = RATE) -> Samples:
    """A cosine (its first sample is not zero, so it can be found in the output)."""
    n = np.arange(round(seconds * rate))
    return np.rint(0.3 * 32767 * np.cos(2 * math.pi * frequency * n / rate)).astype(np.int16)


def frames_of(samples: Samples, rate: int = RATE, channels: int = 1) -> Iterator[av.AudioFrame]:
    """``samples`` as 20 ms s16 frames (duplicated into each channel)."""
    size = rate // 50
    for index in range(samples.size // size):
        chunk = np.repeat(samples[index * size : (index + 1) * size], channels)
        frame = av.AudioFrame.from_ndarray(
            chunk.reshape(1, -1), format="s16", layout="mono" if channels == 1 else "stereo"
        )
        frame.sample_rate, frame.pts, frame.time_base = rate, index * size, Fraction(1, rate)
        yield frame


def dominant(samples: Samples, rate: int) -> float:
    """The strongest frequency in ``samples``, in Hz."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size)))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum)) * rate / samples.size


async def play_paced(
    speaker: AlsaSpeaker, frames: Iterator[av.AudioFrame], *, lead: int = 0
) -> None:
    """Play ``frames`` at the real-time rate, as a call's receiver does, ``lead`` ahead."""
    pacer = RealtimePacer(max_lag=1.0)
    for index, frame in enumerate(frames):
        if index >= lead:
            await pacer.tick(0.02)
        await speaker.play(frame)


def played_audio(out: Samples, length: int) -> Samples:
    """The ``length`` samples from the first non-silent one on."""
    start = int(np.flatnonzero(out)[0])
    return out[start : start + length]


async def test_speaker_writes_what_it_plays_to_the_pcm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pcms = file_pcms(tmp_path, monkeypatch)
    rendered: list[Samples] = []
    # Three frames ahead, in a queue deep enough to hold them within the drift band: the
    # producer (this event loop) may then be 60 ms late without the speaker having to
    # fill in silence, so the comparison is bit for bit even on a loaded machine.
    spec = AlsaPcmSpec(pcm=pcms.playback, queue_periods=16)
    speaker = AlsaSpeaker("speaker", spec, on_render=rendered.append)
    source = tone(1000.0, 0.5)
    await speaker.open(FMT)
    try:
        await play_paced(speaker, frames_of(source), lead=3)
        await speaker.drain(timeout=2.0)
        stats = speaker.stats()
    finally:
        await speaker.close()
    out = pcms.played()
    assert np.array_equal(played_audio(out, source.size), source)  # every sample, in order
    assert abs(dominant(played_audio(out, source.size), RATE) - 1000.0) <= 2.0
    assert stats.wall_clock and stats.written >= source.size + BUFFER - PERIOD
    assert (stats.dropped, stats.gaps, stats.xruns) == (0, 0, 0)
    assert (stats.drift_dropped, stats.drift_inserted) == (0, 0)
    assert stats.delay <= BUFFER + 16 * PERIOD
    tapped = np.concatenate(rendered)[:, 0]
    assert np.array_equal(tapped, out[out.size - tapped.size :])  # the tap saw what played


async def test_microphone_reads_what_the_pcm_captures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tone(660.0, 0.4)
    pcms = file_pcms(tmp_path, monkeypatch, capture=np.concatenate([source, np.zeros(RATE)]))
    mic = AlsaMicrophone("main", AlsaPcmSpec(pcm=pcms.capture))
    await mic.open(FMT)
    try:
        frames = [await mic.read() for _ in range(20)]
        stats = mic.stats()
    finally:
        await mic.close()
    assert [frame.pts for frame in frames] == [960 * i for i in range(20)]
    assert {(f.format.name, f.layout.name, f.samples, f.sample_rate) for f in frames} == {
        ("s16", "mono", 960, RATE)
    }
    assert all(frame.time_base == Fraction(1, RATE) for frame in frames)
    captured = np.concatenate([frame.to_ndarray()[0] for frame in frames])
    assert np.array_equal(captured, source)
    assert abs(dominant(captured, RATE) - 660.0) <= 3.0
    assert stats.wall_clock and stats.dropped_frames == 0 and stats.captured >= source.size


async def test_16_khz_devices_are_resampled_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pcms = file_pcms(tmp_path, monkeypatch, capture=np.concatenate([tone(660.0, 0.3, 16000)]))
    spec = AlsaPcmSpec(pcm=pcms.capture, rate=16000)
    mic = AlsaMicrophone("main", spec)
    await mic.open(FMT)
    try:
        frames = [await mic.read() for _ in range(12)]
    finally:
        await mic.close()
    assert {(f.samples, f.sample_rate) for f in frames} == {(960, RATE)}
    captured = np.concatenate([frame.to_ndarray()[0] for frame in frames[2:]])
    assert abs(dominant(captured, RATE) - 660.0) <= 5.0

    spec = AlsaPcmSpec(pcm=pcms.playback, rate=16000, queue_periods=16)  # lead: see above
    speaker = AlsaSpeaker("handset", spec)
    await speaker.open(FMT)
    try:  # 48 kHz stereo, as aiortc's Opus decoder hands it out
        await play_paced(speaker, frames_of(tone(1000.0, 0.3), channels=2), lead=3)
        await speaker.drain(timeout=2.0)
    finally:
        await speaker.close()
    out = pcms.played()
    assert abs(dominant(played_audio(out, 4000), 16000) - 1000.0) <= 5.0
    sounding = np.flatnonzero(out)
    assert sounding[-1] - sounding[0] == pytest.approx(4800, abs=50)  # 0.3 s at 16 kHz


async def test_a_stalled_device_drops_the_oldest_audio_not_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer slower than the producer: the queue stays capped, drops are counted."""
    pcms = file_pcms(tmp_path, monkeypatch)
    stalled, release = threading.Event(), threading.Event()

    def stall_once(chunk: Samples) -> None:
        if not stalled.is_set():  # the first block: the start cushion
            stalled.set()
            release.wait(2.0)

    speaker = AlsaSpeaker("speaker", AlsaPcmSpec(pcm=pcms.playback), on_render=stall_once)
    source = tone(1000.0, 1.0)
    await speaker.open(FMT)
    try:
        frames = list(frames_of(source))
        await speaker.play(frames[0])
        assert await asyncio.to_thread(stalled.wait, 2.0)
        for frame in frames[1:]:
            await speaker.play(frame)  # a second of audio while the device takes nothing
        stats = speaker.stats()
        release.set()
        await speaker.drain(timeout=2.0)
    finally:
        release.set()
        await speaker.close()
    final = speaker.stats()
    assert stats.queued == QUEUE_CAP
    assert stats.dropped == source.size - QUEUE_CAP
    # What played starts with the oldest sample kept and is what the queue held, less the
    # samples the drift compensation took out to bring the over-full queue back into band.
    kept = QUEUE_CAP - final.drift_dropped
    sounding = np.flatnonzero(pcms.played())
    assert pcms.played()[sounding[0]] == source[-QUEUE_CAP]
    assert sounding[-1] - sounding[0] + 1 == pytest.approx(kept, abs=2)


async def test_an_xrun_is_recovered_without_the_delay_growing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pcms = file_pcms(tmp_path, monkeypatch)
    stalled, release = threading.Event(), threading.Event()

    def stall_on_audio(chunk: Samples) -> None:
        if chunk.any() and not stalled.is_set():
            stalled.set()
            release.wait(2.0)

    speaker = AlsaSpeaker("speaker", AlsaPcmSpec(pcm=pcms.playback), on_render=stall_on_audio)
    frames = list(frames_of(tone(1000.0, 0.6)))
    await speaker.open(FMT)
    try:
        await speaker.play(frames[0])
        assert await asyncio.to_thread(stalled.wait, 2.0)
        await play_paced(speaker, iter(frames[1:11]))  # 200 ms: the device buffer runs dry
        release.set()
        await play_paced(speaker, iter(frames[11:]))
        await speaker.drain(timeout=2.0)
        stats = speaker.stats()
    finally:
        release.set()
        await speaker.close()
    assert stats.xruns >= 1  # one from the stall; a loaded machine may add another
    assert stats.dropped > 0 and stats.queued == 0
    assert stats.delay <= BUFFER + QUEUE_CAP


async def test_a_failing_pcm_names_itself_on_the_next_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pcms = file_pcms(tmp_path, monkeypatch, output=Path("/dev/full"))
    speaker = AlsaSpeaker("speaker", AlsaPcmSpec(pcm=pcms.playback))
    await speaker.open(FMT)
    try:
        with pytest.raises(DeviceUnavailableError, match=rf"{pcms.playback}.*Input/output error"):
            await play_paced(speaker, frames_of(tone(440.0, 1.0)))
        with pytest.raises(DeviceUnavailableError, match="Input/output error"):
            await speaker.drain()  # does not wait for a thread that is gone
    finally:
        await speaker.close()
    await speaker.close()


async def test_without_pyalsaaudio_opening_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "alsaaudio", None)  # import alsaaudio -> ImportError
    with pytest.raises(HalError, match="pyalsaaudio"):
        await AlsaSpeaker("speaker").open(FMT)
    with pytest.raises(HalError, match="pyalsaaudio"):
        await AlsaMixer("PCM").volume()


@pytest.mark.parametrize("kind", ["speaker", "microphone"])
async def test_a_missing_pcm_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    file_pcms(tmp_path, monkeypatch)
    spec = AlsaPcmSpec(pcm="plughw:CARD=Nope,DEV=0")
    device = AlsaSpeaker("handset", spec) if kind == "speaker" else AlsaMicrophone("main", spec)
    direction = "playback" if kind == "speaker" else "capture"
    with pytest.raises(DeviceUnavailableError, match=rf"'plughw:CARD=Nope,DEV=0' for {direction}"):
        await device.open(FMT)
    assert not device.is_open
    await device.close()


async def test_close_is_idempotent_joins_the_thread_and_wakes_a_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pcms = file_pcms(tmp_path, monkeypatch, capture=np.zeros(RATE, dtype=np.int16))
    mic = AlsaMicrophone("main", AlsaPcmSpec(pcm=pcms.capture))
    speaker = AlsaSpeaker("speaker", AlsaPcmSpec(pcm=pcms.playback))
    with pytest.raises(DeviceUnavailableError, match="not open"):
        await mic.read()
    for _ in range(2):  # devices open again after a close
        await mic.open(FMT)
        await speaker.open(FMT)
        with pytest.raises(DeviceUnavailableError, match="already open"):
            await speaker.open(FMT)
        await mic.read()
        await mic.close()
        await speaker.close()
        await speaker.close()
        assert not [t for t in threading.enumerate() if t.name.startswith("callbox-alsa")]
    with pytest.raises(DeviceUnavailableError, match=r"'speaker' on ALSA PCM .* not open"):
        await speaker.play(next(frames_of(tone(440.0, 0.02))))

    await mic.open(FMT)
    reader = asyncio.create_task(mic.read())
    await asyncio.sleep(0)  # the read starts (and waits, unless a frame is there already)
    await mic.close()
    done, _ = await asyncio.wait([reader], timeout=1.0)
    assert done, "a read waiting while the microphone closed must end"
    if reader.exception() is not None:
        assert "not open" in str(reader.exception())


async def test_a_slow_reader_gets_fresh_audio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tone(660.0, 1.0)
    pcms = file_pcms(tmp_path, monkeypatch, capture=np.concatenate([source, np.zeros(RATE)]))
    mic = AlsaMicrophone("main", AlsaPcmSpec(pcm=pcms.capture))
    await mic.open(FMT)
    try:
        first = await mic.read()
        pacer = RealtimePacer(1.0)
        await pacer.tick(0.3)
        await pacer.tick(0.3)  # 300 ms (15 frames) without reading
        later = await mic.read()
        stats = mic.stats()
    finally:
        await mic.close()
    assert first.pts == 0 and later.pts is not None
    assert stats.dropped_frames >= 5
    assert later.pts >= 960 * 6
    assert np.array_equal(later.to_ndarray()[0], source[later.pts : later.pts + 960])


@pytest.mark.parametrize(("ppm", "minutes"), [(100, 30), (-100, 30), (1000, 5), (-1000, 5)])
def test_drift_compensation_holds_the_delay(ppm: int, minutes: int) -> None:
    """Simulated: the peer's clock ``ppm`` faster or slower than the sound card's."""
    drift = DriftCompensator(low=BUFFER - PERIOD, high=BUFFER + QUEUE_CAP // 2)
    level, produced = float(BUFFER + PERIOD), PERIOD * (1 + ppm / 1e6)
    levels, adjustments = [], []
    for _ in range(minutes * 60 * 100):  # 10 ms periods
        adjust = drift.observe(round(level))
        level += produced - (PERIOD + adjust)
        levels.append(level)
        adjustments.append(adjust)
    assert abs(levels[-1] - levels[3000]) <= 0.02 * RATE  # no more than 20 ms after 30 s
    assert min(levels) >= BUFFER - 2 * PERIOD and max(levels) <= BUFFER + QUEUE_CAP
    # Corrections go one way only, and make up for the offset once the band is reached.
    assert set(adjustments) == {0, 1 if ppm > 0 else -1}
    offset = ppm / 1e6 * PERIOD * len(levels)
    assert abs(sum(adjustments)) == pytest.approx(abs(offset), abs=QUEUE_CAP)


def test_drift_fit_changes_a_period_by_one_sample_smoothly() -> None:
    drift = DriftCompensator(low=0, high=10)
    chunk = tone(440.0, 0.02).reshape(-1, 1)
    shorter, longer = drift.fit(chunk[:481], 480), drift.fit(chunk[:479], 480)
    assert shorter.shape == longer.shape == (480, 1)
    assert (drift.dropped, drift.inserted) == (1, 1)
    step = 0.3 * 32767 * 2 * math.pi * 440 / RATE
    for fitted in (shorter, longer):
        assert np.max(np.abs(np.diff(fitted[:, 0].astype(np.int32)))) <= step + 2
    same = chunk[:480]
    assert drift.fit(same, 480) is same and (drift.dropped, drift.inserted) == (1, 1)


def test_sample_fifo_caps_and_hands_out_in_order() -> None:
    fifo = SampleFifo(cap=1000, channels=1)
    fifo.put(np.arange(600, dtype=np.int16).reshape(-1, 1))
    fifo.put(np.arange(600, 1200, dtype=np.int16).reshape(-1, 1))
    assert (fifo.level, fifo.dropped) == (1000, 200)
    first = fifo.take(300, timeout=0)
    assert first is not None and first[0, 0] == 200 and first.shape == (300, 1)
    assert not fifo.wait_empty(0)
    fifo.settle()
    rest = fifo.take(1000, timeout=0)
    assert rest is not None and rest.shape == (700, 1) and rest[-1, 0] == 1199
    fifo.settle()
    assert fifo.wait_empty(0)
    fifo.close()
    assert fifo.take(1, timeout=0) is None and not fifo.wait_for_data()


def test_clock_check_tells_a_clockless_pcm_from_a_drifting_card() -> None:
    clockless = ClockCheck(RATE, BUFFER, transferred=0, now=0.0)
    ahead = [clockless.ahead(PERIOD * n, 0.001 * n) for n in range(1, 10)]
    assert any(lead is not None for lead in ahead)
    for ppm in (-500, 500):  # a card 500 ppm off, for an hour, after a full buffer at start
        card = ClockCheck(RATE, BUFFER, transferred=0, now=0.0)
        assert card.ahead(BUFFER, 0.0) is None
        rate = RATE * (1 + ppm / 1e6)
        for second in range(1, 3600, 1):
            assert card.ahead(BUFFER + round(rate * second), float(second)) is None


def test_virtual_pcm_counts_xruns_only_while_running() -> None:
    play = VirtualPcm(RATE, BUFFER, playback=True, level=0, now=0.0)
    play.transfer(PERIOD, 5.0)  # starts the device: not an xrun
    assert play.wait(PERIOD, 5.0) == 0.0 and play.level(5.005) == pytest.approx(PERIOD / 2)
    play.transfer(BUFFER - PERIOD, 5.0)
    assert play.wait(PERIOD, 5.0) == pytest.approx(PERIOD / RATE)
    play.transfer(PERIOD, 6.0)  # ran dry long before
    assert play.xruns == 1
    play.stop(6.0)
    play.transfer(PERIOD, 9.0)
    assert play.xruns == 1
    capture = VirtualPcm(RATE, BUFFER, playback=False, level=-PERIOD, now=0.0)
    assert capture.wait(PERIOD, 0.0) == pytest.approx(2 * PERIOD / RATE)
    capture.transfer(PERIOD, 1.0)  # a second late: the buffer overflowed
    assert capture.xruns == 1


@pytest.mark.parametrize(
    "options",
    [
        {"pcm": ""},
        {"pcm": "plughw:CARD=A, DEV=0"},
        {"period_ms": 15},
        {"periods": 1},
        {"periods": 5},
        {"queue_periods": 0},
        {"rate": 4000},
        {"rate": 22050},
        {"rate": 44100, "period_ms": 10, "periods": 2, "queue_periods": 99},
        {"mixer_control": ""},
    ],
)
def test_bad_specs_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(HalError, match="ALSA"):
        AlsaPcmSpec(**options)  # type: ignore[arg-type]


def test_the_mixer_device_follows_the_card_of_the_pcm() -> None:
    assert AlsaPcmSpec(pcm="plughw:CARD=Headphones,DEV=0").mixer_ctl == "hw:CARD=Headphones"
    assert AlsaPcmSpec(pcm="sysdefault:CARD=Device").mixer_ctl == "hw:CARD=Device"
    assert AlsaPcmSpec(pcm="hw:1,0").mixer_ctl == "hw:1"
    assert AlsaPcmSpec(pcm="default").mixer_ctl == "default"
    assert AlsaPcmSpec(pcm="hw:1,0", mixer_device="hw:2").mixer_ctl == "hw:2"


async def test_missing_mixer_controls_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_pcms(tmp_path, monkeypatch)
    speaker = AlsaSpeaker("speaker", AlsaPcmSpec(pcm="plughw:CARD=Amp,DEV=0", mixer_control="PCM"))
    with pytest.raises(DeviceUnavailableError, match="'PCM' on 'hw:CARD=Amp' is not available"):
        await speaker.set_volume(50)
    mic = AlsaMicrophone("main", AlsaPcmSpec(mixer_control="Capture"))
    with pytest.raises(DeviceUnavailableError, match="'Capture' on 'default'"):
        await mic.gain()
    with pytest.raises(HalError, match="no mixer control configured"):
        await AlsaSpeaker("speaker").volume()
    with pytest.raises(HalError, match=r"0\.\.100"):
        await AlsaMixer("PCM").set_volume(101)


def test_alsa_devices_maps_logical_devices_to_pcms() -> None:
    speakers, microphones = alsa_devices(
        {"speaker": "plughw:CARD=Amp,DEV=0", "handset": AlsaPcmSpec(pcm="hw:1,0", periods=2)},
        "plughw:CARD=Mic,DEV=0",
    )
    assert list(speakers) == ["speaker", "handset"]
    assert all(isinstance(speaker, AlsaSpeaker) for speaker in speakers.values())
    handset = speakers["handset"]
    assert isinstance(handset, AlsaSpeaker) and handset.spec.periods == 2
    mic = microphones["main"]
    assert isinstance(mic, AlsaMicrophone) and mic.spec.pcm == "plughw:CARD=Mic,DEV=0"
    assert alsa_devices({}, None) == ({}, {})
    with pytest.raises(HalError, match="non-empty"):
        alsa_devices({"": "default"}, None)
    with pytest.raises(HalError, match="PCM name"):
        alsa_devices({"speaker": ""}, None)


async def test_the_echo_canceller_hears_what_the_alsa_speaker_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With echo cancelling, the reference is taken at the device (the render tap).

    So queueing, silence and drift corrections are in it exactly as the room hears them.
    """
    pcms = file_pcms(tmp_path, monkeypatch)
    canceller = make_echo_canceller(RATE, prefer="none")
    heard: list[Samples] = []
    canceller.process_render = heard.append  # type: ignore[method-assign,assignment]
    speaker = with_reference(
        AlsaSpeaker("speaker", AlsaPcmSpec(pcm=pcms.playback, queue_periods=16)), canceller
    )
    assert isinstance(speaker, AlsaSpeaker), "no wrapper: the tap is the reference"
    source = tone(1000.0, 0.3)
    await speaker.open(FMT)
    try:
        await play_paced(speaker, frames_of(source), lead=3)
        await speaker.drain(timeout=2.0)
    finally:
        await speaker.close()
    reference = np.concatenate(heard)
    assert all(block.size == RATE // 100 for block in heard), "10 ms blocks"
    out = pcms.played()
    # the open's clock probe is written before the tap is in place, as in the test above
    assert np.array_equal(reference, out[out.size - reference.size :]), "what was written"
    assert reference.size >= source.size
    canceller.close()
