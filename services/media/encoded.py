"""A camera's H.264 packets shared by every call that sends them as they are.

A camera whose hardware encodes H.264 feeds :class:`EncodedSource`: when a session
negotiates H.264, its track hands aiortc the camera's packets (``av.Packet``), which aiortc
only packetises: no decode, no re-encode. Every track starts at a keyframe and then gets
every packet in order; a track that falls behind resumes at the next keyframe. The
camera's bitrate is the lowest any call asks for.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Protocol

import av

from services.media.errors import MediaError

KEYFRAME_RETRY_S = 0.3  # a keyframe request not answered by then may be repeated


class NoEncodedOutputError(MediaError):
    """The camera has no H.264 output (any more): a switch replaced it mid-read."""


class EncodedDevice(Protocol):
    """What :class:`EncodedSource` needs of a camera (``CameraSource`` provides it)."""

    @property
    def supports_h264(self) -> bool:
        """Whether the camera hands out H.264 now."""
        ...

    async def read_encoded(self) -> av.Packet[Any]:
        """The camera's next access unit; NoEncodedOutputError if it has none."""
        ...

    def request_keyframe(self) -> None:
        """Ask the camera's encoder for a keyframe."""
        ...

    def set_bitrate(self, bps: int) -> None:
        """Aim the camera's encoder at ``bps``."""
        ...


class EncodedSource:
    """Fans one camera's H.264 packets out to several tracks, each decodable on its own.

    Like :class:`SharedSource` it reads the device only when a reader waits, once per
    packet for all readers. It keeps the last ``history`` packets so a reader a little
    behind the others still gets each one; a reader that joins, or that lost packets
    (behind the history, or a packet older than ``max_age_s``: after a mute), asks for a
    keyframe and resumes there. The camera's bitrate is the lowest any reader asks for.
    """

    def __init__(self, device: EncodedDevice, history: int = 90, max_age_s: float = 0.5) -> None:
        self._device = device
        self._history: deque[tuple[int, float, av.Packet[Any]]] = deque(maxlen=history)
        self._max_age_s = max_age_s
        self._seq = 0
        self._reading = False
        self._changed = asyncio.Condition()
        self._key_wanted_at: float | None = None
        self._bitrates: dict[object, int] = {}
        self._bitrate: int | None = None
        self.keyframe_requests = 0

    @property
    def available(self) -> bool:
        """Whether the camera hands out H.264 now (a switch may change it)."""
        return self._device.supports_h264

    async def next_packet(self, after: int) -> tuple[int, av.Packet[Any]]:
        """The packet after number ``after`` and its number (``after`` 0: join)."""
        if after:
            packet = await self._packet(after + 1)
            if packet is not None:
                return after + 1, packet
        return await self._join()

    async def _join(self) -> tuple[int, av.Packet[Any]]:
        self.request_keyframe()
        after = self._seq
        while True:
            packet = await self._packet(after + 1)
            if packet is None:
                after = self._seq
                continue
            after += 1
            if packet.is_keyframe:
                return after, packet

    def _kept(self, wanted: int) -> av.Packet[Any] | None:
        if not self._history or wanted < self._history[0][0]:
            return None
        _, at, packet = self._history[wanted - self._history[0][0]]
        return packet if time.monotonic() - at <= self._max_age_s else None

    async def _packet(self, wanted: int) -> av.Packet[Any] | None:
        """Packet number ``wanted`` (read if it is the next one), None if it is lost."""
        async with self._changed:
            while wanted > self._seq and self._reading:
                await self._changed.wait()
            if wanted <= self._seq:
                return self._kept(wanted)
            self._reading = True
        packet: av.Packet[Any] | None = None
        try:
            packet = await self._device.read_encoded()
            return packet
        finally:
            async with self._changed:
                self._reading = False
                if packet is not None:
                    self._seq += 1
                    self._history.append((self._seq, time.monotonic(), packet))
                    if packet.is_keyframe:
                        self._key_wanted_at = None
                self._changed.notify_all()

    def request_keyframe(self) -> None:
        """Ask the camera for a keyframe, unless one was asked for and is on its way."""
        now = time.monotonic()
        if self._key_wanted_at is not None and now - self._key_wanted_at < KEYFRAME_RETRY_S:
            return
        self._key_wanted_at = now
        self.keyframe_requests += 1
        self._device.request_keyframe()

    def set_bitrate(self, reader: object, bps: int | None) -> None:
        """``reader`` wants at most ``bps`` (None: it left); the camera gets the lowest wish."""
        if bps is None:
            self._bitrates.pop(reader, None)
        else:
            self._bitrates[reader] = bps
        lowest = min(self._bitrates.values(), default=None)
        if lowest is not None and lowest != self._bitrate:
            self._bitrate = lowest
            self._device.set_bitrate(lowest)
