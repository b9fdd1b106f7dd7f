"""An Opus decoder on the system libopus (ctypes): decode, conceal (PLC) and in-band FEC.

aiortc decodes Opus with PyAV's ``libopus`` decoder, which only turns packets into PCM:
FFmpeg's wrapper calls ``opus_multistream_decode`` with a packet and never with a NULL
packet (libopus's packet loss concealment) nor with ``decode_fec=1`` (the low-bitrate
copy of the previous frame that a sender may put in each packet, "LBRR"). A playout
buffer needs both, so this module binds the three calls of libopus it needs directly:
``opus_decode`` with a packet, with no packet (PLC) and with the next packet's FEC.

The library is Debian's ``libopus0`` (``libopus.so.0``; ``make deps`` installs it).
Frames come out as aiortc's decoder gives them: 48 kHz, stereo, packed s16.
"""

from __future__ import annotations

import ctypes
import fractions

import av
import numpy as np

from services.media.errors import MediaError

SAMPLE_RATE = 48000
CHANNELS = 2
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
MAX_FRAME_SAMPLES = 5760
"""The longest Opus frame, 120 ms at 48 kHz, per channel."""
LIBRARY = "libopus.so.0"
PACKAGE = "libopus0"

_OPUS_OK = 0
_SILK_MAX_CONFIG = 11  # TOC configs 0-11: SILK only, 12-15: hybrid, 16-31: CELT only
_HYBRID_MAX_CONFIG = 15
_PCM = ctypes.POINTER(ctypes.c_int16)


class OpusUnavailableError(MediaError):
    """The system libopus could not be loaded (or lacks a function this module calls)."""


class OpusDecodeError(MediaError):
    """libopus refused a packet (corrupt or not Opus)."""


def _load() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError as err:
        raise OpusUnavailableError(
            f"libopus ({LIBRARY}, Debian package {PACKAGE}) could not be loaded: {err};"
            " install it (make deps) for audio loss concealment and FEC"
        ) from err
    try:
        lib.opus_decoder_create.argtypes = [
            ctypes.c_int32,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
        ]
        lib.opus_decoder_create.restype = ctypes.c_void_p
        lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
        lib.opus_decoder_destroy.restype = None
        lib.opus_decode.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int32,
            _PCM,
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.opus_decode.restype = ctypes.c_int
        lib.opus_packet_get_nb_samples.argtypes = [ctypes.c_char_p, ctypes.c_int32, ctypes.c_int32]
        lib.opus_packet_get_nb_samples.restype = ctypes.c_int
        lib.opus_strerror.argtypes = [ctypes.c_int]
        lib.opus_strerror.restype = ctypes.c_char_p
        lib.opus_get_version_string.argtypes = []
        lib.opus_get_version_string.restype = ctypes.c_char_p
    except AttributeError as err:
        raise OpusUnavailableError(f"{LIBRARY} lacks a function callbox calls: {err}") from err
    return lib


def _error(lib: ctypes.CDLL, code: int) -> str:
    message: bytes = lib.opus_strerror(code)
    return message.decode(errors="replace")


def libopus_version() -> str:
    """The loaded libopus's version string ("libopus 1.3.1")."""
    version: bytes = _load().opus_get_version_string()
    return version.decode()


def packet_has_fec(packet: bytes) -> bool:
    """Whether ``packet`` carries in-band FEC (LBRR) for the frame before it.

    Only SILK and hybrid packets can (CELT-only packets never do). RFC 6716 section
    4.2.3: the SILK layer opens with, per channel, one VAD flag per 20 ms SILK frame and
    then the LBRR flag, all coded with probability 1/2, which are the first bits of the
    first frame's data. Single-frame packets (code 0 and 1, what WebRTC sends) are read;
    for the rarer multi-frame codes (2, 3) the answer is False, and the playout conceals.
    """
    if len(packet) < 2:
        return False
    toc = packet[0]
    config = toc >> 3
    if config > _HYBRID_MAX_CONFIG or toc & 0x3 > 1:
        return False
    # hybrid frames are 10 or 20 ms: one SILK frame; SILK-only ones 10 to 60 ms
    silk_frames = max(1, (10, 20, 40, 60)[config & 0x3] // 20) if config <= _SILK_MAX_CONFIG else 1
    first = packet[1]
    mid_lbrr = (first >> (7 - silk_frames)) & 1
    if not toc & 0x4:  # mono
        return bool(mid_lbrr)
    side_lbrr = (first >> (6 - 2 * silk_frames)) & 1
    return bool(mid_lbrr or side_lbrr)


class OpusDecoder:
    """One Opus stream's decoder state (48 kHz stereo s16 out), owned by one playout.

    Not thread-safe: call it from one thread (the event loop; a 20 ms frame decodes in
    tens of microseconds).
    """

    def __init__(self) -> None:
        self._handle: int | None = None
        self._lib = _load()
        error = ctypes.c_int(0)
        handle = self._lib.opus_decoder_create(SAMPLE_RATE, CHANNELS, ctypes.byref(error))
        if error.value != _OPUS_OK or not handle:
            raise OpusUnavailableError(
                f"opus_decoder_create failed: {_error(self._lib, error.value)}"
            )
        self._handle = handle
        self._pcm = np.zeros(MAX_FRAME_SAMPLES * CHANNELS, dtype=np.int16)

    def samples(self, packet: bytes) -> int:
        """Samples per channel at 48 kHz that ``packet`` holds (960 for 20 ms)."""
        count: int = self._lib.opus_packet_get_nb_samples(packet, len(packet), SAMPLE_RATE)
        if count <= 0:
            raise OpusDecodeError(f"not an Opus packet: {_error(self._lib, count)}")
        return count

    def decode(self, packet: bytes) -> av.AudioFrame:
        """Decode one packet."""
        return self._run(packet, MAX_FRAME_SAMPLES, fec=False)

    def conceal(self, samples: int) -> av.AudioFrame:
        """``samples`` per channel of concealment for a lost frame (libopus PLC).

        ``samples`` must be a multiple of 2.5 ms (120 at 48 kHz).
        """
        return self._run(None, samples, fec=False)

    def decode_fec(self, next_packet: bytes, samples: int) -> av.AudioFrame:
        """Recover the lost frame before ``next_packet`` from its in-band FEC.

        ``samples`` is the lost frame's length. libopus conceals instead when the packet
        has no FEC (see :func:`packet_has_fec`). Decode ``next_packet`` itself next.
        """
        return self._run(next_packet, samples, fec=True)

    def _run(self, packet: bytes | None, frame_size: int, *, fec: bool) -> av.AudioFrame:
        if self._handle is None:
            raise OpusDecodeError("the Opus decoder is closed")
        pcm = self._pcm.ctypes.data_as(_PCM)
        size = len(packet) if packet is not None else 0
        count = self._lib.opus_decode(self._handle, packet, size, pcm, frame_size, int(fec))
        if count < 0:
            raise OpusDecodeError(f"opus_decode failed: {_error(self._lib, count)}")
        data = self._pcm[: count * CHANNELS].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = TIME_BASE
        return frame

    def close(self) -> None:
        """Free the libopus state; calling it again does nothing."""
        handle, self._handle = self._handle, None
        if handle is not None:
            self._lib.opus_decoder_destroy(handle)

    def __del__(self) -> None:
        self.close()
