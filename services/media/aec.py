"""Echo cancellation and noise suppression for the microphone path.

A hands-free intercom hears its own speaker: without cancellation the peer hears
itself back. An :class:`EchoCanceller` is fed two streams of 10 ms int16 mono blocks:

- ``process_render(block)``: the far-end reference, exactly what the speaker plays
  (the peer's voice and our own ringtones, ringback and busy tones), at the moment it is
  handed to the speaker;
- ``process_capture(block) -> block``: each microphone block, returned with the echo of
  the reference removed and the background noise suppressed.

The delay between the two (speaker buffer, sound travel, capture buffer) is unknown to
the caller: the engines find it themselves. Engines, best first (``ENGINES``):

- ``webrtc-aec3``: WebRTC's AEC3 with its noise suppressor, from the
  ``aec-audio-processing`` package (which builds WebRTC's audio processing module);
- ``speexdsp``: Speex's MDF canceller plus its preprocessor (residual echo and noise
  suppression), through ctypes on the system's ``libspeexdsp.so.1``;
- ``none``: a pass-through, for devices with a handset only and for baselines.

Engine libraries are imported only when that engine is built, so a board without them
still starts with the next engine in line; :func:`make_echo_canceller` logs the choice.
"""

from __future__ import annotations

import abc
import ctypes
import ctypes.util
import importlib
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from services.media.errors import MediaError

_log = logging.getLogger(__name__)

Samples = npt.NDArray[np.int16]

BLOCK_MS = 10
SUPPORTED_RATES = (8000, 16000, 32000, 48000)
ENGINES = ("webrtc-aec3", "speexdsp", "none")


class EngineUnavailableError(MediaError):
    """The engine's library is not installed or cannot be loaded on this system."""


class EchoCanceller(abc.ABC):
    """Removes the echo of what the speaker plays from what the microphone hears.

    Blocks are 1-D ``int16`` arrays of ``block_size`` samples (10 ms). Render and capture
    blocks come at the same average rate; the engine absorbs jitter between them. The
    two streams may be fed from different threads (playback and capture back-ends).
    """

    def __init__(self, sample_rate: int) -> None:
        """Check ``sample_rate`` (8, 16, 32 or 48 kHz) and fix the block size from it."""
        if sample_rate not in SUPPORTED_RATES:
            raise MediaError(
                f"echo canceller sample rate must be one of {SUPPORTED_RATES} Hz,"
                f" got {sample_rate!r}"
            )
        self.sample_rate = sample_rate
        self.block_size = sample_rate * BLOCK_MS // 1000
        self._closed = False
        self._lock = threading.Lock()

    @property
    @abc.abstractmethod
    def engine(self) -> str:
        """The engine's name, one of ``ENGINES``: what status and selftest report."""

    def process_render(self, samples: Samples) -> None:
        """Take one 10 ms block of what the speaker plays now (the far-end reference)."""
        block = self._checked(samples, "render")
        with self._lock:
            self._require_open()
            self._render(block)

    def process_capture(self, samples: Samples) -> Samples:
        """Return one 10 ms microphone block with the echo and noise removed."""
        block = self._checked(samples, "capture")
        with self._lock:
            self._require_open()
            return self._capture(block)

    def close(self) -> None:
        """Release the engine's native state; safe to call twice, and from any thread."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._release()

    @abc.abstractmethod
    def _release(self) -> None: ...

    @abc.abstractmethod
    def _render(self, samples: Samples) -> None: ...

    @abc.abstractmethod
    def _capture(self, samples: Samples) -> Samples: ...

    def _require_open(self) -> None:
        if self._closed:
            raise MediaError(f"{self.engine} echo canceller is closed")

    def _checked(self, samples: Samples, stream: str) -> Samples:
        if not isinstance(samples, np.ndarray) or samples.dtype != np.int16:
            kind = getattr(samples, "dtype", type(samples).__name__)
            raise MediaError(f"{stream} block must be an int16 numpy array, got {kind}")
        if samples.shape != (self.block_size,):
            raise MediaError(
                f"{stream} block must be {self.block_size} mono samples"
                f" ({BLOCK_MS} ms at {self.sample_rate} Hz), got shape {samples.shape}"
            )
        return np.ascontiguousarray(samples)


class PassThrough(EchoCanceller):
    """The ``none`` engine: the microphone block comes back unchanged."""

    @property
    def engine(self) -> str:
        """Always ``"none"``."""
        return "none"

    def _render(self, samples: Samples) -> None:
        pass

    def _capture(self, samples: Samples) -> Samples:
        return samples

    def _release(self) -> None:
        pass


class WebRtcAec3(EchoCanceller):
    """WebRTC's audio processing module: AEC3, then its noise suppressor.

    The gain controller and the VAD stay off: levels are the mixer's job, and a gain
    that moves would hide what the canceller does.
    """

    def __init__(self, sample_rate: int, *, noise_suppression: bool = True) -> None:
        """Build the module for ``sample_rate``; raises EngineUnavailableError if absent."""
        super().__init__(sample_rate)
        module = _import("aec_audio_processing", "webrtc-aec3")
        processor: Any = module.AudioProcessor(
            enable_aec=True,
            enable_ns=noise_suppression,
            ns_level=1,  # moderate; low..high differ by < 0.5 dB on speech in bench/aec.py
            enable_agc=False,
            enable_vad=False,
        )
        processor.set_stream_format(sample_rate, 1, sample_rate, 1)
        processor.set_reverse_stream_format(sample_rate, 1)
        self._processor: Any = processor

    @property
    def engine(self) -> str:
        """Always ``"webrtc-aec3"``."""
        return "webrtc-aec3"

    def _render(self, samples: Samples) -> None:
        self._processor.process_reverse_stream(samples.tobytes())

    def _capture(self, samples: Samples) -> Samples:
        out = self._processor.process_stream(samples.tobytes())
        return np.frombuffer(out, dtype=np.int16).copy()

    def _release(self) -> None:
        self._processor = None


# speex_echo.h / speex_preprocess.h request codes
_SPEEX_ECHO_SET_SAMPLING_RATE = 24
_SPEEX_PREPROCESS_SET_DENOISE = 0
_SPEEX_PREPROCESS_SET_ECHO_STATE = 24


class SpeexDsp(EchoCanceller):
    """Speex's MDF echo canceller and its preprocessor (residual echo, noise).

    The reference waits in a short queue until the capture block it goes with: at most
    ``max_lead_ms`` of it (older blocks are dropped), so a speaker that played while
    nobody captured does not push the reference out of the filter's reach. The filter
    covers ``tail_ms`` of delay plus reverberation after that.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        noise_suppression: bool = True,
        tail_ms: int = 300,
        max_lead_ms: int = 40,
    ) -> None:
        """Create the native states; raises EngineUnavailableError without libspeexdsp."""
        super().__init__(sample_rate)
        lib = _load_speexdsp()
        n = self.block_size
        self._lib = lib
        self._echo = lib.speex_echo_state_init(n, sample_rate * tail_ms // 1000)
        self._pre = lib.speex_preprocess_state_init(n, sample_rate)
        self._free = weakref.finalize(self, _free_speex, lib, self._echo, self._pre)
        lib.speex_echo_ctl(self._echo, _SPEEX_ECHO_SET_SAMPLING_RATE, _int(sample_rate))
        lib.speex_preprocess_ctl(self._pre, _SPEEX_PREPROCESS_SET_ECHO_STATE, self._echo)
        lib.speex_preprocess_ctl(
            self._pre, _SPEEX_PREPROCESS_SET_DENOISE, _int(int(noise_suppression))
        )
        self._far: deque[Samples] = deque(maxlen=max(1, max_lead_ms // BLOCK_MS))
        self._silence = np.zeros(n, dtype=np.int16)

    @property
    def engine(self) -> str:
        """Always ``"speexdsp"``."""
        return "speexdsp"

    def _render(self, samples: Samples) -> None:
        self._far.append(samples.copy())

    def _capture(self, samples: Samples) -> Samples:
        far = self._far.popleft() if self._far else self._silence
        out = np.empty(self.block_size, dtype=np.int16)
        self._lib.speex_echo_cancellation(self._echo, samples.ctypes, far.ctypes, out.ctypes)
        self._lib.speex_preprocess_run(self._pre, out.ctypes)
        return out

    def _release(self) -> None:
        self._free()


def _int(value: int) -> Any:
    return ctypes.byref(ctypes.c_int(value))


def _free_speex(lib: Any, echo: int, pre: int) -> None:
    lib.speex_preprocess_state_destroy(pre)
    lib.speex_echo_state_destroy(echo)


def _load_speexdsp() -> Any:
    name = ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1"
    try:
        lib: Any = ctypes.CDLL(name)
    except OSError as err:
        raise EngineUnavailableError(f"speexdsp: cannot load {name}: {err}") from err
    ptr, i16, i32 = ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "speex_echo_state_init": (ptr, [i32, i32]),
        "speex_echo_ctl": (i32, [ptr, i32, ptr]),
        "speex_echo_cancellation": (None, [ptr, i16, i16, i16]),
        "speex_echo_state_destroy": (None, [ptr]),
        "speex_preprocess_state_init": (ptr, [i32, i32]),
        "speex_preprocess_ctl": (i32, [ptr, i32, ptr]),
        "speex_preprocess_run": (i32, [ptr, i16]),
        "speex_preprocess_state_destroy": (None, [ptr]),
    }
    for symbol, (restype, argtypes) in signatures.items():
        function = getattr(lib, symbol)
        function.restype, function.argtypes = restype, argtypes
    return lib


def _import(module: str, engine: str) -> Any:
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as err:
        raise EngineUnavailableError(f"{engine}: cannot import {module}: {err}") from err


_FACTORIES: dict[str, Callable[[int, bool], EchoCanceller]] = {
    "webrtc-aec3": lambda rate, ns: WebRtcAec3(rate, noise_suppression=ns),
    "speexdsp": lambda rate, ns: SpeexDsp(rate, noise_suppression=ns),
    "none": lambda rate, ns: PassThrough(rate),
}


def _order(prefer: str | Sequence[str]) -> list[str]:
    wanted = [prefer] if isinstance(prefer, str) else list(prefer)
    unknown = [name for name in wanted if name not in ENGINES]
    if unknown:
        raise MediaError(f"unknown echo canceller engine {unknown[0]!r}; known: {ENGINES}")
    return list(dict.fromkeys([*wanted, *ENGINES]))


def make_echo_canceller(
    sample_rate: int,
    prefer: str | Sequence[str] = ENGINES,
    *,
    noise_suppression: bool = True,
) -> EchoCanceller:
    """The first engine of ``prefer`` (then of ``ENGINES``) that loads here, logged.

    ``prefer`` is an engine name or names in order of preference; ``"none"`` always
    loads, so this returns a canceller whenever the arguments are valid.
    """
    for name in _order(prefer):
        try:
            canceller = _FACTORIES[name](sample_rate, noise_suppression)
        except EngineUnavailableError as err:
            _log.warning("echo canceller %s unavailable: %s", name, err)
            continue
        _log.info("echo canceller: %s at %d Hz", canceller.engine, sample_rate)
        return canceller
    raise AssertionError("the 'none' engine always loads")  # pragma: no cover


def available_engines() -> list[str]:
    """The engines whose libraries load on this system, best first (for selftest)."""
    found = []
    for name in ENGINES:
        try:
            _FACTORIES[name](SUPPORTED_RATES[1], True).close()
        except EngineUnavailableError:
            continue
        found.append(name)
    return found
