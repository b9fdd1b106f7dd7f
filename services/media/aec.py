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
  ``aec-audio-processing`` package (which builds WebRTC's audio processing module),
  driven through our own binding ``_callbox_aec3`` (``_callbox_aec3.cpp``, built by
  ``make deps``) with :data:`TUNED_AEC3_CONFIG`; without the binding, the package's own
  ``AudioProcessor`` with AEC3's default config, and a warning saying why;
- ``webrtc-aec3-defaults``: always the package's ``AudioProcessor`` (default config),
  the baseline bench/aec.py compares the tuned config with;
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
import importlib.util
import logging
import os
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
ENGINES = ("webrtc-aec3", "webrtc-aec3-defaults", "speexdsp", "none")

# AEC3's settings for the tuned binding: EchoCanceller3Config field -> value, each one
# that differs from WebRTC's default (the default in the comment); the rest keep theirs.
# Found by a random search then a hill-climb over ~30 fields on bench/aec.py's own scene
# (48 kHz espeak-ng talkers, echo delays 0-200 ms, linear and clipping speaker, double
# talk with the near end as loud as the echo), scored on the four targets; the
# figures, and how they hold off that scene, are in docs/performance.md.
TUNED_AEC3_CONFIG: dict[str, float | int | bool] = {
    # the delay search starts at 0 blocks and the filter reaches 192 samples before the
    # estimate: with the defaults a 0 ms echo is never caught (9.6 dB ERLE)
    "delay.default_delay": 0,  # 5
    "delay.delay_headroom_samples": 192,  # 32
    "ep_strength.default_len": 0.9,  # 0.83
    "ep_strength.nearend_len": 0.5,  # 0.83
    "erle.max_l": 8.0,  # 4
    # double talk: the near-end state is entered and left at other echo-to-near-end
    # ratios, held twice as long, and in it the low band is left nearly unsuppressed
    # (the linear filter has removed the echo there); the defaults take 5-7 dB off the
    # near-end voice
    "suppressor.dominant_nearend_detection.enr_threshold": 0.5,  # 0.25
    "suppressor.dominant_nearend_detection.enr_exit_threshold": 20.0,  # 10
    "suppressor.dominant_nearend_detection.hold_duration": 100,  # 50
    "suppressor.nearend_tuning.mask_lf.enr_transparent": 100.0,  # 1.09
    "suppressor.nearend_tuning.mask_lf.enr_suppress": 100.0,  # 1.1
    "suppressor.nearend_tuning.mask_lf.emr_transparent": 3.0,  # 0.3
    "suppressor.nearend_tuning.mask_hf.enr_transparent": 1.0,  # 0.1
    "suppressor.nearend_tuning.mask_hf.enr_suppress": 3.5,  # 0.3
    "suppressor.nearend_tuning.mask_hf.emr_transparent": 1.0,  # 0.3
    "suppressor.nearend_tuning.max_inc_factor": 4.0,  # 2
    "suppressor.nearend_tuning.max_dec_factor_lf": 1.0,  # 0.25
    # outside double talk, residual echo is suppressed a little harder
    "suppressor.normal_tuning.mask_lf.enr_suppress": 0.3,  # 0.4
    "suppressor.normal_tuning.mask_lf.emr_transparent": 0.1,  # 0.3
    "suppressor.normal_tuning.mask_hf.emr_transparent": 0.1,  # 0.3
}
TUNED_DETAIL = "tuned AEC3 (callbox binding)"
DEFAULTS_DETAIL = "AEC3 defaults (aec-audio-processing)"
_BINDING = "services.media._callbox_aec3"


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

    @property
    def detail(self) -> str:
        """What exactly runs under ``engine`` (status and selftest show it beside it)."""
        return self.engine

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

    @property
    def detail(self) -> str:
        """Says that nothing is cancelled."""
        return "pass-through, no echo cancellation"

    def _render(self, samples: Samples) -> None:
        pass

    def _capture(self, samples: Samples) -> Samples:
        return samples

    def _release(self) -> None:
        pass


class WebRtcAec3(EchoCanceller):
    """WebRTC's audio processing module: AEC3, then its noise suppressor.

    With ``tuned`` (the ``webrtc-aec3`` engine), AEC3 runs with
    :data:`TUNED_AEC3_CONFIG` through our binding when it loads, else with its defaults
    through the package's ``AudioProcessor`` (logged as a warning with the reason);
    without ``tuned`` (``webrtc-aec3-defaults``), always the latter. Both set up the
    module alike: noise suppression moderate, the gain controller and the VAD off
    (levels are the mixer's job, and a gain that moves would hide what the canceller
    does). ``detail`` says which one runs.
    """

    def __init__(
        self, sample_rate: int, *, noise_suppression: bool = True, tuned: bool = True
    ) -> None:
        """Build the module for ``sample_rate``; raises EngineUnavailableError if absent."""
        super().__init__(sample_rate)
        self._engine = "webrtc-aec3" if tuned else "webrtc-aec3-defaults"
        self._apm: Any = None
        self._processor: Any = None
        if tuned:
            try:
                self._apm = _tuned_apm(sample_rate, noise_suppression)
            except EngineUnavailableError as err:
                _log.warning("%s; using %s instead", err, DEFAULTS_DETAIL)
        self._detail = TUNED_DETAIL if self._apm is not None else DEFAULTS_DETAIL
        if self._apm is None:
            module = _import("aec_audio_processing", self._engine)
            processor: Any = module.AudioProcessor(
                enable_aec=True,
                enable_ns=noise_suppression,
                ns_level=1,  # moderate; low..high differ by < 0.5 dB on speech here
                enable_agc=False,
                enable_vad=False,
            )
            processor.set_stream_format(sample_rate, 1, sample_rate, 1)
            processor.set_reverse_stream_format(sample_rate, 1)
            self._processor = processor

    @property
    def engine(self) -> str:
        """``"webrtc-aec3"``, or ``"webrtc-aec3-defaults"`` when built untuned."""
        return self._engine

    @property
    def detail(self) -> str:
        """:data:`TUNED_DETAIL` or :data:`DEFAULTS_DETAIL`: which AEC3 runs."""
        return self._detail

    def _render(self, samples: Samples) -> None:
        if self._apm is not None:
            self._apm.process_render(samples)
        else:
            self._processor.process_reverse_stream(samples.tobytes())

    def _capture(self, samples: Samples) -> Samples:
        if self._apm is not None:
            out = self._apm.process_capture(samples)
        else:
            out = self._processor.process_stream(samples.tobytes())
        return np.frombuffer(out, dtype=np.int16).copy()

    def _release(self) -> None:
        self._apm = None
        self._processor = None


def _tuned_apm(sample_rate: int, noise_suppression: bool) -> Any:
    """Our binding's APM with :data:`TUNED_AEC3_CONFIG`; EngineUnavailableError if not.

    The binding links to the libwebrtc-audio-processing-2.so bundled in the
    aec-audio-processing wheel, whose SONAME (``...-2.so.1``) is not its file name: the
    dynamic loader finds it only once it is loaded, so it is loaded by path first.
    """
    why = "tuned AEC3 binding unavailable"
    try:
        spec = importlib.util.find_spec("aec_audio_processing")
    except (ImportError, ValueError):  # ValueError: in sys.modules without a spec
        spec = None
    if spec is None or spec.origin is None:
        raise EngineUnavailableError(f"{why}: aec-audio-processing is not installed")
    library = os.path.join(os.path.dirname(spec.origin), "files", "libwebrtc-audio-processing-2.so")
    try:
        ctypes.CDLL(library)
        binding = importlib.import_module(_BINDING)
    except (ImportError, OSError) as err:
        raise EngineUnavailableError(
            f"{why} (build it with `make deps`): cannot load {_BINDING}: {err}"
        ) from err
    try:
        apm = binding.Apm(sample_rate, TUNED_AEC3_CONFIG, noise_suppression=noise_suppression)
    except (KeyError, ValueError, TypeError) as err:  # a binding older than this file
        raise EngineUnavailableError(f"{why}: {_BINDING} refuses the config: {err}") from err
    if not apm.config_valid:
        _log.warning("AEC3 corrected TUNED_AEC3_CONFIG (EchoCanceller3Config::Validate)")
    return apm


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

    @property
    def detail(self) -> str:
        """Speex's MDF canceller and preprocessor, from the system's libspeexdsp."""
        return "Speex MDF + preprocessor (libspeexdsp)"

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
    "webrtc-aec3-defaults": lambda rate, ns: WebRtcAec3(rate, noise_suppression=ns, tuned=False),
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
    return list(engine_details())


def engine_details() -> dict[str, str]:
    """Each engine that loads here, best first, with the ``detail`` of what it runs."""
    found = {}
    for name in ENGINES:
        try:
            canceller = _FACTORIES[name](SUPPORTED_RATES[1], True)
        except EngineUnavailableError:
            continue
        found[name] = canceller.detail
        canceller.close()
    return found
