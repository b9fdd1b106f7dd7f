"""The one fake of picamera2 in the tests (and in bench/video_send.py).

picamera2 needs libcamera and a Raspberry Pi camera, neither of which exists here, so
``hal.picamera.PiCamera`` is tested against this stand-in. It implements only the calls
the back-end makes, with picamera2's names and signatures:

- ``Picamera2(camera_num)``: ``create_video_configuration(main=, controls=, queue=)``,
  ``configure(config)``, ``start()``, ``stop()``, ``close()``,
  ``capture_array("main")`` (YUV420 as (height * 3 / 2) x stride bytes, the next frame),
  ``start_encoder(encoder, output)``, ``stop_encoder(encoder)``;
- ``H264Encoder(bitrate=, repeat=, iperiod=, profile=)``: ``force_key_frame()``;
- ``Output``: the base class of outputs, whose ``outputframe(frame, keyframe, timestamp,
  packet, audio)`` an encoder calls on its own thread.

What it emits is real: a sensor thread (``callbox-fake-picamera2``, so the leak check
catches a camera left open) draws hal.camera's frame stamp (counter and capture time) into
a moving picture at the configured frame rate, and a running encoder turns every frame
into H.264 with PyAV's libx264 (Annex B, SPS/PPS in front of every IDR, an IDR every
``iperiod`` frames and on ``force_key_frame``), handed to the output with the keyframe
flag and a microsecond timestamp, as picamera2's V4L2 encoder does.

``hardware_encoder=False`` makes ``start_encoder`` fail as on a Pi 5 (no /dev/video11).
``noise`` adds sensor-like grain (+-``noise`` levels) to the picture. With ``clip_frames``
the fake renders and encodes that many frames at ``start()`` and then replays them (a
keyframe request jumps to the next IDR of the clip): the benchmark uses this so that the
hardware encoder's work is not counted on the CPU.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from hal.camera import encode_stamp, stamp_fits
from hal.picamera import Picamera2Library, yuv420_frame

Array = npt.NDArray[np.uint8]
U_LEVEL, V_LEVEL = 100, 160  # the chroma planes, told apart (a stride bug shows)


class FakeOutput:
    """picamera2.outputs.Output: the base class the back-end's output derives from."""

    def __init__(self, pts: Any = None) -> None:
        self.recording = False

    def outputframe(
        self,
        frame: Any,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        """Receive one encoded frame (overridden by the back-end)."""


class FakeH264Encoder:
    """picamera2.encoders.H264Encoder, encoding with libx264 instead of the VideoCore."""

    def __init__(
        self,
        bitrate: int | None = None,
        repeat: bool = True,
        iperiod: int | None = None,
        profile: str | None = None,
    ) -> None:
        self.bitrate = bitrate
        self.repeat = repeat
        self.iperiod = iperiod
        self.profile = profile
        self.output: Any = None
        self.keyframes_requested = 0
        self.keyframes_sent = 0
        self.frames_out = 0
        self.stopped = False
        self._keyframes_done = 0
        self._codec: Any = None

    def force_key_frame(self) -> None:
        """Make the next frame a keyframe (picamera2's name)."""
        self.keyframes_requested += 1

    @property
    def keyframes_pending(self) -> int:
        """Keyframe requests not honoured yet."""
        return self.keyframes_requested - self._keyframes_done

    def _take_request(self) -> bool:
        if self.keyframes_requested > self._keyframes_done:
            self._keyframes_done = self.keyframes_requested
            return True
        return False

    def _open(self, width: int, height: int, fps: int) -> Any:
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.time_base = Fraction(1, fps)
        codec.framerate = Fraction(fps, 1)
        codec.bit_rate = self.bitrate or 1_000_000
        codec.gop_size = self.iperiod or fps
        codec.options = {"tune": "zerolatency", "preset": "veryfast", "profile": "baseline"}
        return codec

    def encode(self, array: Array, size: tuple[int, int], fps: int, index: int) -> list[Any]:
        """Encode one sensor frame (on the sensor thread); returns the packets."""
        width, height = size
        if self._codec is None:
            self._codec = self._open(width, height, fps)
        frame = av.VideoFrame.from_ndarray(array, format="yuv420p")
        frame.pts = index
        frame.time_base = Fraction(1, fps)
        if self._take_request():
            frame.pict_type = av.video.frame.PictureType.I
        return list(self._codec.encode(frame))

    def emit(self, data: bytes, keyframe: bool, timestamp_us: int) -> None:
        """Hand one encoded frame to the output, as picamera2's encoder thread does."""
        self.frames_out += 1
        self.keyframes_sent += keyframe
        self.output.outputframe(data, keyframe, timestamp_us, None, False)


@dataclass
class _ClipFrame:
    array: Array
    data: bytes
    keyframe: bool


@dataclass
class FakePicamera2:
    """picamera2.Picamera2 for one camera; see the module docstring."""

    camera_num: int
    clip_frames: int | None = None
    stride_align: int = 1
    noise: int = 0
    hardware_encoder: bool = True
    config: dict[str, Any] | None = None
    started: bool = False
    closed: bool = False
    encoders: list[FakeH264Encoder] = field(default_factory=list)
    clips: dict[tuple[int, int, int], list[_ClipFrame]] = field(default_factory=dict)
    emitted: list[tuple[int, float]] = field(default_factory=list)  # (counter, monotonic)
    captures: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._latest: tuple[int, Array] | None = None
        self._running: list[FakeH264Encoder] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._clip: list[_ClipFrame] = []
        self._cursor = 0
        self._random = np.random.default_rng(self.camera_num)

    # configuration -----------------------------------------------------------------------

    def create_video_configuration(
        self, main: dict[str, Any], controls: dict[str, Any], queue: bool = True
    ) -> dict[str, Any]:
        """A configuration dictionary, as picamera2 builds it (only the keys we read)."""
        return {"main": dict(main), "controls": dict(controls), "queue": queue}

    def configure(self, config: dict[str, Any]) -> None:
        """Take ``config``; refuses a running camera, as libcamera does."""
        if self.started:
            raise RuntimeError("camera must be stopped before configuring")
        if config["main"]["format"] != "YUV420":
            raise RuntimeError(f"the fake supports YUV420 only, not {config['main']['format']}")
        self.config = config

    @property
    def size(self) -> tuple[int, int]:
        """The configured (width, height)."""
        assert self.config is not None
        width, height = self.config["main"]["size"]
        return int(width), int(height)

    @property
    def fps(self) -> int:
        """The frame rate of the configured FrameDurationLimits."""
        assert self.config is not None
        duration_us: int = self.config["controls"]["FrameDurationLimits"][0]
        return round(1_000_000 / duration_us)

    # running ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sensor thread."""
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        if self.clip_frames:
            key = (*self.size, self.fps)
            if key not in self.clips:  # made once per format, shared by the library's cameras
                self.clips[key] = self._make_clip(self.clip_frames)
            self._clip = self.clips[key]
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="callbox-fake-picamera2")
        self.started = True
        self._thread.start()

    def stop(self) -> None:
        """Stop the sensor thread; a capture waiting for a frame fails at once."""
        with self._lock:
            self._stop.set()
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._thread = None
        self.started = False

    def close(self) -> None:
        """Release the camera."""
        self.stop()
        self.closed = True

    def start_encoder(self, encoder: FakeH264Encoder, output: Any) -> None:
        """Start ``encoder`` on the main stream, writing to ``output``."""
        if not isinstance(output, FakeOutput):
            raise RuntimeError("Must pass Output")
        if not self.hardware_encoder:  # a Pi 5: picamera2's V4L2 encoder finds no device
            raise FileNotFoundError(2, "No such file or directory", "/dev/video11")
        encoder.output = output
        self.encoders.append(encoder)
        with self._lock:
            self._running.append(encoder)

    def stop_encoder(self, encoder: FakeH264Encoder) -> None:
        """Stop ``encoder``."""
        with self._lock:
            self._running.remove(encoder)
        encoder.stopped = True

    def capture_array(self, name: str = "main") -> Array:
        """The next frame of stream ``name`` (queue=False: a fresh one), copied."""
        assert name == "main"
        with self._lock:
            seen = self._latest[0] if self._latest else -1
            if not self._lock.wait_for(
                lambda: (
                    self._stop.is_set() or (self._latest is not None and self._latest[0] > seen)
                ),
                timeout=2.0,
            ):
                raise RuntimeError("no frame from the camera")
            if self._stop.is_set():
                raise RuntimeError("the camera stopped")
            assert self._latest is not None
            self.captures += 1
            return self._latest[1].copy()

    # the sensor ---------------------------------------------------------------------------

    def _render(self, index: int) -> Array:
        width, height = self.size
        stride = -(-width // self.stride_align) * self.stride_align
        luma = np.empty((height, stride), dtype=np.uint8)
        x = (np.arange(stride) + 4 * index) % 256
        luma[:] = (x // 2 + 40).astype(np.uint8)[None, :]
        bar = (index * 8) % width
        luma[:, bar : bar + 16] = 235
        if self.noise:  # sensor noise: what makes a camera's pictures costly to encode
            grain = self._random.integers(-self.noise, self.noise + 1, luma.shape)
            luma[:] = np.clip(luma.astype(np.int16) + grain, 0, 255).astype(np.uint8)
        if stamp_fits(width, height):
            encode_stamp(luma[:, :width], index, time.monotonic_ns() // 1000)
        quarter = height * stride // 4
        u, v = np.full(quarter, U_LEVEL, dtype=np.uint8), np.full(quarter, V_LEVEL, dtype=np.uint8)
        return np.concatenate([luma.reshape(-1), u, v]).reshape(height * 3 // 2, stride)

    def _make_clip(self, count: int) -> list[_ClipFrame]:
        encoder = FakeH264Encoder(bitrate=1_000_000, iperiod=self.fps)
        clip: list[_ClipFrame] = []
        for index in range(count):
            array = self._render(index)
            packets = encoder.encode(array, self.size, self.fps, index)
            data = b"".join(bytes(p) for p in packets)
            clip.append(_ClipFrame(array, data, any(p.is_keyframe for p in packets)))
        return clip

    def _run(self) -> None:
        interval = 1.0 / self.fps
        due = time.monotonic()
        index = 0
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            self._frame(index)
            index += 1
            due += interval
            if time.monotonic() - due > interval:
                due = time.monotonic()  # a late sensor drops frames, it does not burst

    def _frame(self, index: int) -> None:
        timestamp_us = round(index * 1_000_000 / self.fps)
        with self._lock:
            running = list(self._running)
        if self._clip:
            self._replay(index, timestamp_us, running)
            return
        array = self._render(index)
        with self._lock:
            self._latest = (index, array)
            self._lock.notify_all()
        self.emitted.append((index, time.monotonic()))
        for encoder in running:
            packed = encoder.encode(self._crop(array), self.size, self.fps, index)
            for packet in packed:
                encoder.emit(bytes(packet), packet.is_keyframe, timestamp_us)

    def _crop(self, array: Array) -> Array:
        width, height = self.size
        if array.shape[1] == width:
            return array
        return np.asarray(yuv420_frame(array, width, height).to_ndarray(), dtype=np.uint8)

    def _replay(self, index: int, timestamp_us: int, running: list[FakeH264Encoder]) -> None:
        position = self._cursor % len(self._clip)
        if any(e._take_request() for e in running):
            position = (position // self.fps + 1) * self.fps % len(self._clip)
        self._cursor = position + 1
        clip = self._clip[position]
        with self._lock:
            self._latest = (index, clip.array)
            self._lock.notify_all()
        self.emitted.append((position, time.monotonic()))
        for encoder in running:
            encoder.emit(clip.data, clip.keyframe, timestamp_us)


class FakePicamera2Library:
    """Stands in for ``hal.picamera.load_picamera2``; remembers every camera it opened."""

    def __init__(
        self,
        *,
        clip_frames: int | None = None,
        stride_align: int = 1,
        noise: int = 0,
        hardware_encoder: bool = True,
    ) -> None:
        self.clip_frames = clip_frames
        self.stride_align = stride_align
        self.noise = noise
        self.hardware_encoder = hardware_encoder
        self.cameras: list[FakePicamera2] = []
        self._clips: dict[tuple[int, int, int], list[_ClipFrame]] = {}

    def __call__(self) -> Picamera2Library:
        """picamera2's three names, faked."""
        return Picamera2Library(
            camera=self._open, h264_encoder=FakeH264Encoder, output_base=FakeOutput
        )

    def _open(self, camera_num: int) -> FakePicamera2:
        camera = FakePicamera2(
            camera_num,
            self.clip_frames,
            self.stride_align,
            self.noise,
            self.hardware_encoder,
            clips=self._clips,
        )
        self.cameras.append(camera)
        return camera

    @property
    def camera(self) -> FakePicamera2:
        """The last camera opened."""
        assert self.cameras, "no camera was opened"
        return self.cameras[-1]

    def encoders(self) -> list[FakeH264Encoder]:
        """Every encoder started on any camera, oldest first."""
        return [e for c in self.cameras for e in c.encoders]
