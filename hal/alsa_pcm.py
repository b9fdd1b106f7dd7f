"""ALSA PCM plumbing shared by the microphone and speaker back-ends (``hal.alsa_audio``).

- :class:`AlsaPcmSpec`: where and how to open one PCM, validated on construction.
- :func:`open_pcm`: opens it through pyalsaaudio (imported here, lazily) and turns
  ``alsaaudio.ALSAAudioError`` into ``HalError``s that name the PCM and the reason.
- :class:`PcmThread`: the life cycle of both back-ends: one thread per open device
  opens the PCM, does every blocking transfer and closes it; the event loop awaits the
  open and the join, never a transfer.
- :class:`ClockCheck` and :class:`VirtualPcm`: a PCM without a clock of its own (ALSA's
  ``null``, the ``file`` plugin on ``null``) takes and gives samples as fast as the CPU
  can move them. Once a PCM runs more than a buffer (plus ``WALL_CLOCK_MARGIN_S``) ahead
  of the wall clock it is paced by a virtual device draining or filling at the nominal
  rate, so a ``null`` speaker (a board without one, the tests) does not spin a core. A
  real device is never that far ahead (USB audio moves its pointer up to ~18 ms early,
  when it copies samples into URBs; the margin covers it), so real hardware is never
  paced twice.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hal.errors import DeviceUnavailableError, HalError
from hal.media_types import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioFormat

_log = logging.getLogger(__name__)

Samples = npt.NDArray[np.int16]

PERIOD_MS_CHOICES = (10, 20)
MIN_PERIODS, MAX_PERIODS = 2, 4
MAX_QUEUE_PERIODS = 16
EPIPE = 32  # errno: an xrun; pyalsaaudio has already prepared the PCM again
CLOCK_WINDOW_S = 2.0  # ClockCheck re-anchors this often, so real clock drift never adds up
WALL_CLOCK_MARGIN_S = 0.04  # lead beyond the buffer that proves a PCM has no clock
JOIN_TIMEOUT_S = 2.0


@dataclass(frozen=True, kw_only=True)
class AlsaPcmSpec:
    """One ALSA PCM as the configuration names it, and how to drive it.

    ``pcm``: an ALSA PCM name (``default``, ``plughw:CARD=Headphones,DEV=0``,
    ``sysdefault:CARD=Device``; ``aplay -L`` lists them). ``rate``: the rate the device
    runs at, when it is not the call's (16000 for a device that only does 16 kHz); None
    runs it at the rate of the format it is opened with. ``period_ms`` (10 or 20) and
    ``periods`` (2..4) size the device buffer; ``queue_periods`` caps the playback queue
    in front of it (the oldest samples beyond it are dropped). ``mixer_control`` names the
    simple mixer control for volume or gain (``PCM``, ``Speaker``, ``Capture``, ``Mic``;
    ``amixer scontrols`` lists them) on ``mixer_device`` (derived from the PCM's card,
    ``hw:CARD=…``, when None).
    """

    pcm: str = "default"
    rate: int | None = None
    period_ms: int = 10
    periods: int = 3
    queue_periods: int = 4
    mixer_control: str | None = None
    mixer_device: str | None = None

    def __post_init__(self) -> None:
        """Refuse what no ALSA device could be opened with."""
        _check_name("PCM name", self.pcm)
        if self.period_ms not in PERIOD_MS_CHOICES:
            raise HalError(f"ALSA period_ms must be 10 or 20, got {self.period_ms!r}")
        if not MIN_PERIODS <= self.periods <= MAX_PERIODS:
            raise HalError(
                f"ALSA periods must be in {MIN_PERIODS}..{MAX_PERIODS}, got {self.periods!r}"
            )
        if not 1 <= self.queue_periods <= MAX_QUEUE_PERIODS:
            raise HalError(
                f"ALSA queue_periods must be in 1..{MAX_QUEUE_PERIODS}, got {self.queue_periods!r}"
            )
        if self.rate is not None:
            self.period_frames(self.rate)
        if self.mixer_control is not None:
            _check_name("mixer control", self.mixer_control)
        if self.mixer_device is not None:
            _check_name("mixer device", self.mixer_device)

    def period_frames(self, rate: int) -> int:
        """Frames in one period at ``rate``; HalError if that is not a whole number."""
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise HalError(
                f"ALSA rate must be in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}, got {rate!r}"
            )
        if rate * self.period_ms % 1000:
            raise HalError(
                f"ALSA period of {self.period_ms} ms at {rate} Hz is not a whole number of frames"
            )
        return rate * self.period_ms // 1000

    @property
    def mixer_ctl(self) -> str:
        """The control device of the mixer: ``mixer_device``, else the PCM's card."""
        if self.mixer_device is not None:
            return self.mixer_device
        named = re.search(r"CARD=([^,\s]+)", self.pcm)
        if named:
            return f"hw:CARD={named.group(1)}"
        numbered = re.match(r"^(?:plug)?hw:(\d+)", self.pcm)
        return f"hw:{numbered.group(1)}" if numbered else "default"


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise HalError(f"ALSA {what} must be a non-empty name without spaces, got {value!r}")


@dataclass(frozen=True)
class PcmSettings:
    """What the device accepted: the back-ends move ``period`` frames at a time."""

    rate: int
    channels: int
    period: int
    buffer: int


def alsa_library() -> Any:
    """pyalsaaudio, imported when a back-end opens (HalError naming the fix if missing)."""
    try:
        alsaaudio: Any = importlib.import_module("alsaaudio")
    except ImportError as err:
        raise HalError(
            "ALSA audio needs pyalsaaudio (pip install 'pyalsaaudio>=0.11,<0.12';"
            " it builds against libasound2-dev)"
        ) from err
    return alsaaudio


def open_pcm(
    spec: AlsaPcmSpec, *, playback: bool, rate: int, channels: int, what: str
) -> tuple[Any, PcmSettings]:
    """Open ``spec.pcm`` for s16 playback or capture at ``rate`` Hz, ``channels`` channels.

    ``what`` names the device in errors ("speaker 'handset'"). DeviceUnavailableError if
    the PCM is missing or busy; HalError if it cannot run the format (use a ``plughw:`` or
    ``plug`` PCM to have ALSA convert).
    """
    alsaaudio = alsa_library()
    direction = "playback" if playback else "capture"
    try:
        pcm = alsaaudio.PCM(
            type=alsaaudio.PCM_PLAYBACK if playback else alsaaudio.PCM_CAPTURE,
            mode=alsaaudio.PCM_NORMAL,
            device=spec.pcm,
            rate=rate,
            channels=channels,
            format=alsaaudio.PCM_FORMAT_S16_LE,
            periodsize=spec.period_frames(rate),
            periods=spec.periods,
        )
        info = pcm.info()
    except alsaaudio.ALSAAudioError as err:
        raise DeviceUnavailableError(
            f"{what}: cannot open ALSA PCM {spec.pcm!r} for {direction}: {reason(err)}"
        ) from err
    got = (info["rate"], info["channels"], info["format_name"])
    if got != (rate, channels, "S16_LE"):
        pcm.close()
        raise HalError(
            f"{what}: ALSA PCM {spec.pcm!r} cannot do {direction} at {rate} Hz, {channels}"
            f" channel(s), S16_LE (it offers {got[0]} Hz, {got[1]} channel(s), {got[2]});"
            " use a plughw: PCM to convert, or set the device rate"
        )
    return pcm, PcmSettings(rate, channels, int(info["period_size"]), int(info["buffer_size"]))


def reason(err: BaseException) -> str:
    """The library's message without pyalsaaudio's trailing ``[pcm name]``."""
    return re.sub(r"\s*\[[^\]]*\]$", "", str(err)) or type(err).__name__


class ClockCheck:
    """Tells a PCM without a clock from a real one.

    Over any window, a real device transfers at most the wall-clock time's worth of
    frames plus one buffer (what it held when the window began). More than ``limit``
    frames ahead of that and the PCM has no clock. The anchor moves every
    ``CLOCK_WINDOW_S``, so a device's clock drift never accumulates into a false alarm.
    """

    def __init__(self, rate: int, buffer: int, *, transferred: int, now: float) -> None:
        """Check a PCM of ``buffer`` frames at ``rate`` Hz.

        The check starts from ``transferred`` frames at ``now``.
        """
        self._rate = rate
        self.limit = buffer + int(WALL_CLOCK_MARGIN_S * rate)
        self._anchor = (now, transferred)

    def ahead(self, transferred: int, now: float) -> int | None:
        """Frames the PCM is ahead of the wall clock if that proves it has no clock."""
        since, base = self._anchor
        lead = transferred - base - int((now - since) * self._rate)
        if lead > self.limit:
            return lead
        if now - since >= CLOCK_WINDOW_S:
            self._anchor = (now, transferred)
        return None


class VirtualPcm:
    """The clock a clockless PCM lacks: a buffer draining or filling at ``rate`` frames per second.

    Draining for playback, filling for capture, at ``rate`` frames per second of wall time. A
    running playback device that runs dry or a capture device that overflows has an xrun, counted
    and recovered as a device's would be; a playback device starts with the first write, like
    ALSA's.
    """

    def __init__(self, rate: int, buffer: int, *, playback: bool, level: int, now: float) -> None:
        """A device holding ``level`` frames at ``now`` (negative: reads ran ahead)."""
        self._rate = rate
        self._buffer = buffer
        self._playback = playback
        self._level = float(level)
        self._at = now
        self._running = not playback
        self.xruns = 0

    def level(self, now: float) -> float:
        """Frames in the device buffer at ``now``."""
        moved = (now - self._at) * self._rate
        if self._playback:
            return max(0.0, self._level - moved)
        return min(float(self._buffer), self._level + moved)

    def wait(self, frames: int, now: float) -> float:
        """Seconds until ``frames`` frames can be written (playback) or read (capture)."""
        level = self.level(now)
        missing = level - (self._buffer - frames) if self._playback else frames - level
        return max(0.0, missing / self._rate)

    def transfer(self, frames: int, now: float) -> None:
        """Account ``frames`` written or read at ``now``."""
        moved = (now - self._at) * self._rate
        if self._playback:
            if self._running and moved > self._level + 0.5:
                self.xruns += 1
            self._level = max(0.0, self._level - moved) + frames
            self._running = True
        else:
            if self._level + moved > self._buffer + 0.5:
                self.xruns += 1
            self._level = min(float(self._buffer), self._level + moved) - frames
        self._at = now

    def stop(self, now: float) -> None:
        """The playback device stopped (idle): empty until the next write starts it."""
        self._level = 0.0
        self._at = now
        self._running = False


class PcmThread:
    """One open PCM and the thread that owns it; the base of both ALSA back-ends.

    ``kind`` is "speaker" (playback) or "microphone" (capture). Subclasses implement
    ``run(pcm, settings)``, the thread's transfer loop, which returns when ``stop`` is
    set (and ``wake()`` was called); an ALSA error there is kept as ``failure`` and raised
    by the next call.
    """

    def __init__(self, name: str, spec: AlsaPcmSpec, kind: str) -> None:
        """A closed device."""
        self.name = name
        self.spec = spec
        self.what = f"{kind} {name!r} on ALSA PCM {spec.pcm!r}"
        self.stop = threading.Event()
        self.failure: HalError | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._kind = kind
        self._format = AudioFormat()
        self._thread: threading.Thread | None = None

    @property
    def format(self) -> AudioFormat:
        """The format the device was last opened with."""
        return self._format

    @property
    def is_open(self) -> bool:
        """True between a successful open and close."""
        return self._thread is not None

    @property
    def device_rate(self) -> int:
        """The rate the PCM runs at: the spec's, else the format's."""
        return self.spec.rate or self._format.sample_rate

    async def start(self, fmt: AudioFormat, thread_name: str) -> PcmSettings:
        """Start the thread, which opens the PCM; returns once it is open (or raises)."""
        self.require_closed()
        self.spec.period_frames(self.spec.rate or fmt.sample_rate)
        self._format, self.failure = fmt, None
        self.stop = threading.Event()
        loop = self.loop = asyncio.get_running_loop()
        opened: asyncio.Future[PcmSettings] = loop.create_future()
        thread = threading.Thread(target=self._main, args=(opened,), name=thread_name, daemon=True)
        self._thread = thread
        thread.start()
        try:
            settings = await opened
        except BaseException:
            await self.join()
            raise
        _log.info(
            "%s open: %d Hz, %d ch, period %d, buffer %d frames",
            self.what,
            settings.rate,
            settings.channels,
            settings.period,
            settings.buffer,
        )
        return settings

    async def join(self) -> None:
        """Stop the thread and wait for it (it closes the PCM); idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self.stop.set()
        self.wake()
        await asyncio.to_thread(thread.join, JOIN_TIMEOUT_S)
        if thread.is_alive():
            _log.error("%s: thread did not stop within %.0f s", self.what, JOIN_TIMEOUT_S)

    def require_closed(self) -> None:
        """DeviceUnavailableError if the device is open (a second open)."""
        if self._thread is not None:
            raise DeviceUnavailableError(f"{self.what} is already open")

    def require_open(self) -> None:
        """DeviceUnavailableError unless open and working."""
        if self._thread is None:
            raise DeviceUnavailableError(f"{self.what} is not open")
        if self.failure is not None:
            raise self.failure

    def in_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """Hand ``callback(*args)`` from the thread to the event loop."""
        if self.loop is None:
            return
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed: nobody is left to tell
            _log.debug("event loop closed; dropped %r", callback)

    def run(self, pcm: Any, settings: PcmSettings) -> None:
        """The transfer loop (in the thread)."""
        raise NotImplementedError

    def wake(self) -> None:
        """Wake ``run`` from any wait of its own (called on stop and when the thread ends)."""

    def on_failure(self) -> None:
        """Called in the loop after the thread failed."""

    def _main(self, opened: asyncio.Future[PcmSettings]) -> None:
        try:
            alsaaudio = alsa_library()
            pcm, settings = open_pcm(
                self.spec,
                playback=self._kind == "speaker",
                rate=self.device_rate,
                channels=self._format.channels,
                what=f"{self._kind} {self.name!r}",
            )
        except HalError as err:
            self.in_loop(_settle, opened, None, err)
            return
        except Exception as err:  # noqa: BLE001 - open() must not wait forever on a bug
            _log.exception("%s: opening crashed", self.what)
            self.in_loop(_settle, opened, None, HalError(f"{self.what}: cannot open: {err!r}"))
            return
        self.in_loop(_settle, opened, settings, None)
        try:
            self.run(pcm, settings)
        except (alsaaudio.ALSAAudioError, HalError) as err:
            self._failed(f"{self.what} failed: {reason(err)}")
        except Exception as err:  # noqa: BLE001 - a bug must not leave read()/play() hanging
            _log.exception("%s: thread crashed", self.what)
            self._failed(f"{self.what} failed: {err!r}")
        finally:
            self._close(alsaaudio, pcm)
            self.wake()  # nobody may wait on a device whose thread is gone

    def _failed(self, message: str) -> None:
        _log.error("%s", message)
        self.failure = DeviceUnavailableError(message)
        self.in_loop(self.on_failure)

    def _close(self, alsaaudio: Any, pcm: Any) -> None:
        try:
            if self._kind == "speaker":
                pcm.drop()  # close() alone drains: it would wait for the buffer to play out
            pcm.close()
        except alsaaudio.ALSAAudioError as err:
            _log.warning("%s: closing: %s", self.what, reason(err))


def _settle(
    future: asyncio.Future[PcmSettings], settings: PcmSettings | None, error: HalError | None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    elif settings is not None:
        future.set_result(settings)


_FILE_PCMS = """\
pcm.{playback} {{
    type file
    slave.pcm {{ type null }}
    file "{output}"
    format "raw"
}}
pcm.{capture} {{
    type file
    slave.pcm {{ type null }}
    file "/dev/null"
    infile "{input}"
    format "raw"
}}
"""


def file_pcms_config(playback: str, capture: str, output: Path, infile: Path) -> str:
    """An alsa-lib configuration (for ``ALSA_CONFIG_PATH``) with two PCMs that need no sound card.

    ``playback`` writes raw samples to ``output``, ``capture`` reads them from ``infile`` (the tests
    and benchmarks exercise the real back-ends through them).
    """

    def quoted(path: Path) -> str:
        return str(path).replace("\\", "\\\\").replace('"', '\\"')

    return _FILE_PCMS.format(
        playback=playback, capture=capture, output=quoted(output), input=quoted(infile)
    )
