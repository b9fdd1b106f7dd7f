"""Displays: the ``Display`` interface, an in-memory one (sim) and KMS/DRM full screen (Pi).

A display shows whole frames: numpy ``uint8`` arrays of shape (height, width, 3), RGB,
exactly its ``size``. The call UI (``services.ui``) renders them; the display only puts
them on the glass. ``set_blank(True)`` shows nothing and switches the backlight off (the
handset at the face); touches come back as pixel coordinates through ``on_touch``, called
on the event loop.

- ``SimDisplay``: keeps the last frame in memory (``last_frame()``, ``last_jpeg()``) for
  tests and the simulator, which also injects touches (``touch(x, y)``, thread-safe).
- ``KmsDisplay``: pygame-ce on SDL's ``kmsdrm`` video driver, full screen without a desktop,
  touch from pygame's FINGER / mouse events. pygame is imported lazily, in its own thread.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from hal.errors import DeviceUnavailableError, HalError

if TYPE_CHECKING:
    from hal.backlight import Backlight

_log = logging.getLogger(__name__)

Frame = npt.NDArray[np.uint8]
"""One screenful: shape (height, width, 3), RGB."""
TouchHandler = Callable[[int, int], None]
"""Called on the event loop with the pixel coordinates of a touch."""

JPEG_QUALITY = 8
"""Worst mjpeg quantiser of ``SimDisplay.last_jpeg`` (2 best .. 31 worst)."""
MIN_SIZE = 64
MAX_SIZE = 7680


def check_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` if both are a usable display size, else HalError saying why."""
    for what, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or not MIN_SIZE <= value <= MAX_SIZE:
            raise HalError(f"display {what} {value!r} must be within {MIN_SIZE}..{MAX_SIZE}")
    return width, height


class Display(abc.ABC):
    """A screen that shows whole RGB frames, can be blanked, and may report touches."""

    def __init__(self, backlight: Backlight | None = None) -> None:
        self._backlight = backlight
        self._on_touch: TouchHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    @abc.abstractmethod
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""

    @property
    def on_touch(self) -> TouchHandler | None:
        """Who hears touches (the UI sets it from the event loop, whose loop is then used)."""
        return self._on_touch

    @on_touch.setter
    def on_touch(self, handler: TouchHandler | None) -> None:
        self._on_touch = handler
        # set outside a loop: the loop of the next show() / set_blank() is used
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()

    def _remember_loop(self) -> None:
        self._loop = asyncio.get_running_loop()

    def _dispatch_touch(self, x: int, y: int) -> None:
        """Deliver a touch on the event loop (callable from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            _log.warning("touch at (%d, %d) dropped: the display is not in use yet", x, y)
            return
        loop.call_soon_threadsafe(self._deliver_touch, x, y)

    def _deliver_touch(self, x: int, y: int) -> None:
        handler = self._on_touch
        if handler is None:
            _log.info("touch at (%d, %d): nobody listens", x, y)
            return
        try:
            handler(x, y)
        except Exception:  # noqa: BLE001 - a faulty handler must not stop the display
            _log.exception("touch handler failed for (%d, %d)", x, y)

    def check_frame(self, frame: Frame) -> None:
        """HalError unless ``frame`` is a (height, width, 3) uint8 array of this display."""
        width, height = self.size
        if frame.dtype != np.uint8 or frame.shape != (height, width, 3):
            raise HalError(
                f"a frame for this {width}x{height} display must be uint8 of shape "
                f"({height}, {width}, 3), not {frame.dtype} {frame.shape}"
            )

    async def start(self) -> None:  # noqa: B027 - optional: most displays need no opening
        """Open the screen (nothing to open for an in-memory display)."""

    @abc.abstractmethod
    async def show(self, frame: Frame) -> None:
        """Put ``frame`` on the screen (ignored while blank)."""

    async def set_blank(self, blank: bool) -> None:
        """Blank (nothing drawn, backlight off) or unblank the screen."""
        self._remember_loop()
        if self._backlight is not None and self._backlight.is_on == blank:
            await self._backlight.set_power(not blank)

    @abc.abstractmethod
    def close(self) -> None:
        """Let go of the screen; calling it again does nothing."""


class SimDisplay(Display):
    """An in-memory display: keeps the frames shown, for tests and the simulator page."""

    def __init__(self, width: int = 800, height: int = 480, *, backlight: Backlight | None = None):
        """A ``width`` x ``height`` display; ``backlight`` is switched by ``set_blank``."""
        super().__init__(backlight)
        self._size = check_size(width, height)
        self.frames_shown = 0
        self.blank = False
        self.frame_event = asyncio.Event()
        """Set whenever a frame is shown; whoever waits on it clears it."""
        self._frame: Frame | None = None
        self._lock = threading.Lock()
        self._jpeg: tuple[int, bytes] | None = None
        self._closed = False

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self._size

    async def show(self, frame: Frame) -> None:
        """Keep ``frame`` as what the screen shows now (ignored while blank)."""
        self._remember_loop()
        self.check_frame(frame)
        if self.blank or self._closed:
            return
        with self._lock:
            self._frame = frame
            self.frames_shown += 1
        self.frame_event.set()

    async def set_blank(self, blank: bool) -> None:
        """Blank: nothing is shown (``last_frame`` is None) and the backlight goes off."""
        await super().set_blank(blank)
        self.blank = blank
        if blank:
            with self._lock:
                self._frame = None

    def last_frame(self) -> Frame | None:
        """What the screen shows now, or None (blank, or nothing shown yet)."""
        with self._lock:
            return self._frame

    def last_jpeg(self) -> bytes | None:
        """The frame shown now as a JPEG (encoded once per frame, with PyAV), or None.

        Thread-safe: a web server thread may call it while frames arrive.
        """
        with self._lock:
            frame, number, cached = self._frame, self.frames_shown, self._jpeg
        if frame is None:
            return None
        if cached is not None and cached[0] == number:
            return cached[1]
        data = encode_jpeg(frame)
        with self._lock:
            if self.frames_shown == number:
                self._jpeg = (number, data)
        return data

    def touch(self, x: int, y: int) -> None:
        """A finger at pixel (x, y): ``on_touch`` runs on the event loop (any thread may call).

        ValueError when (x, y) is outside the screen.
        """
        width, height = self._size
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"touch at ({x}, {y}) is outside the {width}x{height} display")
        self._dispatch_touch(x, y)

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called (frames shown after it are dropped)."""
        return self._closed

    def close(self) -> None:
        """Stop keeping frames."""
        self._closed = True


def encode_jpeg(frame: Frame, quality: int = JPEG_QUALITY) -> bytes:
    """``frame`` (H x W x 3 RGB) as JPEG bytes, with PyAV's mjpeg encoder."""
    import av

    height, width, _ = frame.shape
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width = width
    codec.height = height
    codec.pix_fmt = "yuvj420p"
    codec.options = {"qmin": "2", "qmax": str(quality)}
    video = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    packets = codec.encode(video.reformat(format="yuvj420p"))
    packets += codec.encode(None)
    return b"".join(bytes(p) for p in packets)


class KmsDisplay(Display):
    """Full screen through pygame-ce on SDL's KMS/DRM driver: no X11, no Wayland.

    The size is the display's own unless ``width``/``height`` are given; it is known after
    ``start()``. Every pygame call runs in the display's own thread ("callbox-display"),
    never on the event loop. Touches (FINGERDOWN, scaled to pixels) and mouse clicks reach
    ``on_touch``. ``backlight`` (the sysfs one) is switched by ``set_blank``.
    """

    POLL_S = 0.05

    def __init__(
        self,
        width: int | None = None,
        height: int | None = None,
        *,
        backlight: Backlight | None = None,
        driver: str = "kmsdrm",
    ) -> None:
        """A display to open with ``start()``; ``width``/``height`` None: the panel's size."""
        super().__init__(backlight)
        if (width is None) != (height is None):
            raise HalError("display width and height go together (or neither: the panel's)")
        if width is not None and height is not None:
            check_size(width, height)
        self._wanted = (width, height)
        self._driver = driver
        self._size: tuple[int, int] | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._screen: Any = None
        self._pump_task: asyncio.Task[None] | None = None
        self._blank = False

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels; HalError before ``start()``."""
        if self._size is None:
            raise HalError("the KMS display is not started: its size is not known yet")
        return self._size

    async def start(self) -> None:
        """Open the screen full screen (DeviceUnavailableError when SDL cannot)."""
        if self._thread is not None:
            return
        self._remember_loop()
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "callbox-display")
        try:
            self._size = await self._run(self._open)
        except BaseException:
            await asyncio.to_thread(self.close)  # joins the display thread: off the loop
            raise
        self._pump_task = asyncio.create_task(self._pump_events(), name="display-events")

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _open(self) -> tuple[int, int]:
        os.environ.setdefault("SDL_VIDEODRIVER", self._driver)
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        try:
            import pygame
        except ImportError as err:
            raise DeviceUnavailableError(f"pygame-ce is not installed: {err}") from err
        try:
            pygame.display.init()
            width, height = self._wanted
            if width is None or height is None:
                info = pygame.display.Info()
                width, height = int(info.current_w), int(info.current_h)
            self._screen = pygame.display.set_mode((width, height), pygame.FULLSCREEN)
            pygame.mouse.set_visible(False)
        except pygame.error as err:
            raise DeviceUnavailableError(
                f"cannot open the display with SDL driver {self._driver!r}: {err}"
            ) from err
        _log.info("display %dx%d on %s", width, height, pygame.display.get_driver())
        return width, height

    async def show(self, frame: Frame) -> None:
        """Draw ``frame`` and flip (in the display thread)."""
        self.check_frame(frame)
        if self._blank or self._screen is None:
            return
        await self._run(self._draw, frame)

    def _draw(self, frame: Frame | None) -> None:
        import pygame

        if frame is None:
            self._screen.fill((0, 0, 0))
        else:
            width, height = self.size
            pixels = np.ascontiguousarray(frame).data
            image = pygame.image.frombuffer(pixels, (width, height), "RGB")
            self._screen.blit(image, (0, 0))
        pygame.display.flip()

    async def set_blank(self, blank: bool) -> None:
        """Blank: black screen, no drawing, backlight off."""
        self._blank = blank
        if blank and self._screen is not None:
            await self._run(self._draw, None)
        await super().set_blank(blank)

    async def _pump_events(self) -> None:
        while self._screen is not None:
            for x, y in await self._run(self._touches):
                self._deliver_touch(x, y)
            await asyncio.sleep(self.POLL_S)  # SDL has no awaitable event queue: poll it

    def _touches(self) -> list[tuple[int, int]]:
        import pygame

        width, height = self.size
        touches = []
        for event in pygame.event.get():
            if event.type == pygame.FINGERDOWN:
                touches.append((int(event.x * (width - 1)), int(event.y * (height - 1))))
            elif event.type == pygame.MOUSEBUTTONDOWN and not getattr(event, "touch", False):
                touches.append((int(event.pos[0]), int(event.pos[1])))
        return touches

    def close(self) -> None:
        """Close the screen and stop its thread; calling it again does nothing."""
        if self._pump_task is not None:
            self._pump_task.cancel()
            self._pump_task = None
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._screen is not None:
            self._screen = None
            thread.submit(_quit_display)
        thread.shutdown(wait=True)


def _quit_display() -> None:
    import pygame

    pygame.display.quit()
