"""A frame assembler for aiortc's video receiver that never stalls at a lost packet.

aiortc's video jitter buffer (512 packets) hands the decoder a frame only when every
packet before it arrived: at a hole whose retransmission was lost it waits until 512
more packets came, seconds of frozen video, and it never asks for a key frame.
:class:`FrameAssembler` keeps aiortc's contract (``add(packet) -> (pli, frame)``) and:

* hands out a frame as soon as its last packet (RTP marker bit) is in, not when the
  next frame's first packet arrives;
* waits at a hole only while the NACK generator (:mod:`services.media.nack`) still asks
  for it; then drops the frames it cannot complete, asks for a key frame (PLI) and
  resumes at the next key frame, never feeding the decoder a frame whose reference was
  lost; a complete key frame later in the buffer ends any wait at once;
* detects a freeze (packets arrive but no frame for ``freeze_s`` and three frame
  intervals) and asks for a key frame, rate-limited to one PLI per two round trips.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from services.media.nack import VideoReceiveCounters

CAPACITY = 512  # packets kept at most (a few key frames at our bitrates)
MIN_PLI_INTERVAL_S = 0.3
FREEZE_S = 0.3


class HoleTracker(Protocol):
    """What the assembler asks of the NACK generator."""

    @property
    def rtt_s(self) -> float:
        """The current round-trip estimate, in seconds."""
        ...

    def pending(self, seq: int) -> bool:
        """Whether ``seq`` may still arrive (asked for, not given up)."""
        ...


class FrameAssembler:
    """aiortc's video jitter-buffer contract, without the stall at a lost packet.

    ``is_keyframe_start(packet)`` tells a key frame's first packet (by payload type:
    see :func:`keyframe_detector`); ``holes`` is the NACK generator; ``clock`` is
    injectable (seconds, monotonic).
    """

    def __init__(
        self,
        is_keyframe_start: Callable[[RtpPacket], bool],
        holes: HoleTracker,
        counters: VideoReceiveCounters | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        capacity: int = CAPACITY,
        freeze_s: float = FREEZE_S,
    ) -> None:
        self.counters = counters if counters is not None else VideoReceiveCounters()
        self._is_key = is_keyframe_start
        self._holes = holes
        self._clock = clock
        self._capacity = capacity
        self._freeze_s = freeze_s
        self._packets: dict[int, RtpPacket] = {}  # extended seq -> packet
        self._key_starts: list[int] = []  # sorted extended seqs of key frames' first packets
        self._highest: int | None = None
        self._next: int | None = None  # first packet of the next frame; None: wait for a key
        self._ready: deque[tuple[int, JitterFrame]] = deque()  # (payload type, frame)
        self._last_packet_at = 0.0
        self._last_frame_at = 0.0
        self._frame_interval_s = 1 / 30
        self._last_timestamp: int | None = None
        self._last_pli_at: float | None = None
        self._frozen = False
        self._synced = False  # decoding started (the first key frame is no resync)
        self._stale = 0  # packets in a row from far behind the newest

    @property
    def capacity(self) -> int:
        """How many packets are kept at most (aiortc's JitterBuffer has this too)."""
        return self._capacity

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """Take one depayloaded packet; (send a PLI?, the next complete frame or None)."""
        now = self._clock()
        if now - self._last_packet_at > self._freeze_s:
            self._last_frame_at = now  # a pause in the stream (mute) is no freeze
        self._last_packet_at = now
        if self._highest is None:
            self._last_pli_at = now  # the stream starts with a key frame: give it time
        self._store(packet)
        self._assemble()
        pli = self._pli_due(now)
        return pli, self._pop(now)

    def take_ready(self) -> list[tuple[int, JitterFrame]]:
        """The frames completed along with the one ``add`` returned, with their payload types.

        A retransmission that fills a hole completes every frame held up behind it at once,
        and aiortc takes one frame per packet: call this right after aiortc's packet
        handling and decode them too, or they would lag a frame per packet behind.
        """
        now = self._clock()
        frames = []
        while self._ready:
            payload_type = self._ready[0][0]
            frame = self._pop(now)
            assert frame is not None
            frames.append((payload_type, frame))
        return frames

    def _pop(self, now: float) -> JitterFrame | None:
        if not self._ready:
            return None
        _, frame = self._ready.popleft()
        self._emitted(frame, now)
        return frame

    # storing ----------------------------------------------------------------------------

    def _store(self, packet: RtpPacket) -> None:
        seq = self._extend(packet.sequence_number)
        if self._highest is not None and self._highest - seq > self._capacity:
            self._stale += 1  # a straggler, or a sender that restarted lower: 8 in a row
            if self._stale <= 8:
                return
        self._stale = 0
        if self._highest is None or abs(seq - self._highest) > self._capacity:
            self._drop_all()  # first packet, or the sender restarted its sequence
            self._highest = seq
        if (self._next is not None and seq < self._next) or seq in self._packets:
            return  # too late or a duplicate
        self._packets[seq] = packet
        self._highest = max(self._highest, seq)
        if self._is_key(packet):
            bisect.insort(self._key_starts, seq)
        self._bound()

    def _extend(self, seq: int) -> int:
        if self._highest is None:
            return seq
        return self._highest + (seq - self._highest + 2**15) % 2**16 - 2**15

    def _bound(self) -> None:
        assert self._highest is not None
        oldest = self._highest - self._capacity
        if self._next is not None and self._next <= oldest:
            self._lose_sync(oldest + 1)
        if len(self._packets) > self._capacity // 2:  # else a few stragglers may stay
            self._discard(lambda s: s <= oldest)

    # assembling ---------------------------------------------------------------------------

    def _assemble(self) -> None:
        while True:
            if self._next is None and not self._resync():
                return
            assert self._next is not None
            self._skip_padding()
            end = self._complete(self._next)
            if end is not None:
                self._ready.append(self._take(self._next, end))
                continue
            if not self._give_up_or_jump():
                return

    def _skip_padding(self) -> None:
        """Padding-only packets (bandwidth probes) between frames take no part in any."""
        assert self._next is not None
        while (packet := self._packets.get(self._next)) is not None and not packet.payload:
            del self._packets[self._next]
            self._next += 1

    def _complete(self, start: int) -> int | None:
        """The last packet of the frame starting at ``start``, if all of it is here."""
        first = self._packets.get(start)
        if first is None:
            return None
        seq = start
        while True:
            packet = self._packets[seq]
            if packet.marker:
                return seq
            following = self._packets.get(seq + 1)
            if following is None:
                return None
            if following.timestamp != first.timestamp:
                return seq  # the sender set no marker bit: the timestamp tells
            seq += 1

    def _take(self, start: int, end: int) -> tuple[int, JitterFrame]:
        packets = [self._packets.pop(seq) for seq in range(start, end + 1)]
        del self._key_starts[: bisect.bisect_right(self._key_starts, end)]
        self._next = end + 1
        data = b"".join(getattr(p, "_data", b"") for p in packets)  # aiortc's depayloaded data
        return packets[0].payload_type, JitterFrame(data=data, timestamp=packets[0].timestamp)

    def _give_up_or_jump(self) -> bool:
        """Stuck at a hole: skip it if a later key frame is complete or the hole is final."""
        assert self._next is not None
        for key in self._key_starts:
            if key > self._next and self._complete(key) is not None:
                self._skip_to(key)
                self.counters.keyframe_resyncs += 1
                return True
        hole = self._first_missing(self._next)
        if hole is None or self._holes.pending(hole % 2**16):
            return False
        self._lose_sync(hole + 1)
        return True

    def _first_missing(self, start: int) -> int | None:
        assert self._highest is not None
        for seq in range(start, self._highest + 1):
            if seq not in self._packets:
                return seq
        return None

    def _resync(self) -> bool:
        """Waiting for a key frame: resume at the first key frame start kept."""
        if not self._key_starts:
            return False
        self._skip_to(self._key_starts[0])
        self.counters.keyframe_resyncs += self._synced
        self._synced = True
        return True

    def _skip_to(self, seq: int) -> None:
        self._discard(lambda s: s < seq)
        self._next = seq

    def _lose_sync(self, after: int) -> None:
        """The frame at the front cannot be completed: drop up to ``after``, wait for a key."""
        self._discard(lambda s: s < after)
        self._next = None

    def _drop_all(self) -> None:
        self._discard(lambda s: True)
        self._next = None

    def _discard(self, which: Callable[[int], bool]) -> None:
        dropped = [s for s in self._packets if which(s)]
        self.counters.frames_dropped += len({self._packets[s].timestamp for s in dropped})
        for seq in dropped:
            del self._packets[seq]
        self._key_starts = [s for s in self._key_starts if not which(s)]

    # key frame requests -------------------------------------------------------------------

    def _pli_due(self, now: float) -> bool:
        waiting = self._next is None and not self._ready
        frozen = not self._ready and now - self._last_frame_at > self._freeze_threshold()
        if frozen and not self._frozen:
            self._frozen = True
            self.counters.freezes_detected += 1
        if not (waiting or frozen):
            return False
        interval = max(MIN_PLI_INTERVAL_S, 2 * self._holes.rtt_s)
        if self._last_pli_at is not None and now - self._last_pli_at < interval:
            return False
        self._last_pli_at = now
        self.counters.plis_sent += 1
        return True

    def _freeze_threshold(self) -> float:
        return max(self._freeze_s, 3 * self._frame_interval_s)

    def _emitted(self, frame: JitterFrame, now: float) -> None:
        self.counters.frames_completed += 1
        self._frozen = False
        self._last_frame_at = now
        if self._last_timestamp is not None:
            step = ((frame.timestamp - self._last_timestamp) % 2**32) / 90000
            if 0 < step < 1:
                self._frame_interval_s = 0.9 * self._frame_interval_s + 0.1 * step
        self._last_timestamp = frame.timestamp
