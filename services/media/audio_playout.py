"""An adaptive playout buffer for received audio (a small NetEq): jitter, loss, delay.

aiortc's audio jitter buffer hands out at most one frame per arriving packet and stops
at the first gap (aiortc issue #543): after one lost packet every later frame waits in
it for the rest of the call, and lost frames are not concealed. :class:`AudioPlayout`
replaces it. Packets go in by RTP sequence number as they arrive (:meth:`push`); frames
come out on a playout clock, one per frame duration (:meth:`tick`, paced by the caller).

At each tick, the due frame is, in that order of preference:

1. decoded from its packet;
2. recovered from the next packet's in-band FEC (Opus LBRR) when that one is here;
3. concealed (Opus PLC, silence for other codecs).

The delay follows the network. :class:`DelayEstimator` keeps each packet's arrival time
minus its RTP time over the last second; the fastest one is the baseline, and the target
delay is the 95th percentile above it plus a margin, within 10-200 ms: half a frame on a
clean link. FEC needs more: a lost frame can be recovered only if the packet after it is
here when the lost one is due, so while the stream carries FEC (a packet with it arrived
in the last ``FEC_MEMORY_S``) the margin over the jitter is one frame. The playout delay
(how long after a packet on the fastest path would arrive its frame plays) is held near
the target: 3/4 of a frame above it one frame is dropped ("accelerate", at most every
other tick, so 200 ms of excess drains in well under a second; beyond ``SNAP_S`` of
excess the playout jumps), half a frame below it one frame of concealment is inserted
before the due frame ("stretch"; the two bands add up to more than a frame, so one
adjustment never calls for the other). While FEC is usable the delay must not fall below
the target, or the next packet would miss its lost predecessor's slot: then a frame is
inserted ``FEC_BELOW_S`` under the target and dropped 1.25 frames above it. A packet
for a frame already played is dropped and counted as late. While nothing is buffered the
playout conceals and waits for the late packet (the delay grows, as after a delay
spike); if a later packet comes first, the awaited one was lost and the frames concealed
while waiting stood in for it (no second concealment, no growth); after ``MAX_DRY_S`` of
waiting it goes idle and restarts with the next packet (the peer went mute or the link
is gone).

Bounded: at most ``MAX_PACKETS`` (about one second) are held, whatever arrives.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import av

MAX_PACKETS = 50
"""At most this many packets are held (one second of 20 ms packets)."""
MIN_TARGET_S = 0.010
"""The least target delay: the margin over a clean link's jitter."""
FEC_MEMORY_S = 5.0
"""The target's margin stays a frame this long after the last packet that carried FEC (a
sender adds FEC only to active speech, so it comes and goes between words)."""
MAX_TARGET_S = 0.200
JITTER_WINDOW_S = 1.0
"""How far back the delay estimator looks: a jitter burst is forgotten a second later."""
JITTER_PERCENTILE = 0.95
MARGIN_S = 0.010
SNAP_S = 0.300
"""Beyond this much delay over the target, skip straight to the target (old audio)."""
MAX_DRY_S = 0.3
"""Concealment while the buffer is empty stops after this long: the playout idles."""
ADJUST_EVERY = 2
"""Accelerate or stretch at most every this many ticks (50 % speed change at most)."""
# the delay may stray this many frames above / below the target before it is adjusted
_ABOVE, _BELOW = 0.75, 0.5
_FEC_ABOVE = 1.25  # with FEC_BELOW_S: 8 ms more than a frame, so a wavering target does
# not make one adjustment call for the other
FEC_BELOW_S = 0.003
"""While FEC is usable a frame is inserted once the delay is this far under the target (which
wavers by a millisecond or two), not half a frame under it."""


class AudioDecoder(Protocol):
    """What the playout needs from a codec; durations are in RTP clock ticks."""

    clock_rate: int

    def duration(self, payload: bytes) -> int:
        """How many RTP ticks ``payload`` covers."""
        ...

    def decode(self, payload: bytes) -> av.AudioFrame:
        """Decode one packet's payload."""
        ...

    def conceal(self, ticks: int) -> av.AudioFrame:
        """A frame standing in for ``ticks`` of lost audio."""
        ...

    def recover(self, next_payload: bytes, ticks: int) -> av.AudioFrame | None:
        """The lost frame before ``next_payload`` from its in-band FEC, or None if none."""
        ...

    def has_fec(self, payload: bytes) -> bool:
        """Whether ``payload`` carries in-band FEC for the frame before it."""
        ...


class FrameKind(enum.Enum):
    """Where a played frame came from."""

    DECODED = "decoded"
    FEC = "fec"
    CONCEALED = "concealed"


@dataclass(frozen=True)
class PlayoutFrame:
    """One frame out of the playout, and whether it holds audio that really arrived."""

    frame: av.AudioFrame
    kind: FrameKind

    @property
    def received(self) -> bool:
        """True for audio from the peer's packets (decoded or FEC), False for concealment."""
        return self.kind is not FrameKind.CONCEALED


@dataclass(frozen=True)
class PlayoutStats:
    """What the playout did so far, for benchmarks and tests (delays in milliseconds)."""

    frames_played: int
    concealed: int
    recovered_fec: int
    late_drops: int
    accelerated: int
    stretched: int
    overflow_drops: int
    packets_held: int
    delay_ms: float
    target_ms: float
    buffered_ms: float


@dataclass(frozen=True)
class _Packet:
    timestamp: int  # unwrapped
    payload: bytes


def _unwrap(value: int, last: int | None, bits: int) -> int:
    """``value`` (``bits`` wide, wrapping) as the integer nearest to ``last``."""
    if last is None:
        return value
    half, full = 1 << (bits - 1), 1 << bits
    delta = ((value - last + half) % full) - half
    return last + delta


class DelayEstimator:
    """The target delay from arrival times against RTP times over a sliding window."""

    def __init__(self, window_s: float = JITTER_WINDOW_S) -> None:
        self._window_s = window_s
        self.margin_s = MARGIN_S
        """The target's margin over the jitter (the playout makes it a frame for FEC)."""
        # (arrival, arrival - media time); bounded also when a flood arrives at once
        self._samples: deque[tuple[float, float]] = deque(maxlen=4 * MAX_PACKETS)

    def add(self, arrival: float, media_time: float) -> None:
        """Record a packet that arrived at ``arrival`` for media time ``media_time`` (s)."""
        self._samples.append((arrival, arrival - media_time))
        while self._samples and self._samples[0][0] < arrival - self._window_s:
            self._samples.popleft()

    def reset(self) -> None:
        """Forget the past (a new talk spurt after the playout idled)."""
        self._samples.clear()

    @property
    def baseline(self) -> float | None:
        """Arrival minus media time of the fastest packet in the window."""
        return min(offset for _, offset in self._samples) if self._samples else None

    @property
    def target_s(self) -> float:
        """The delay to aim at, in seconds."""
        if not self._samples:
            return max(MIN_TARGET_S, self.margin_s)
        offsets = sorted(offset for _, offset in self._samples)
        high = offsets[math.ceil(JITTER_PERCENTILE * len(offsets)) - 1]
        return min(MAX_TARGET_S, max(MIN_TARGET_S, high - offsets[0] + self.margin_s))


class AudioPlayout:
    """Packets in by sequence number, one frame out per tick; see the module docstring.

    Single-threaded, no clock of its own: :meth:`push` and :meth:`tick` take the time.
    """

    def __init__(self, decoder: AudioDecoder) -> None:
        self._decoder = decoder
        self._clock = decoder.clock_rate
        self._frame_ticks = decoder.clock_rate // 50
        self._estimator = DelayEstimator()
        self._packets: dict[int, _Packet] = {}
        self._next_seq: int | None = None
        self._next_ts = 0
        self._last_seq: int | None = None
        self._last_ts: int | None = None
        self._idle = True
        self._dry_s = 0.0
        self._waited = 0  # frames concealed while the due packet was awaited
        self._ticks = 0
        self._adjusted_at = -ADJUST_EVERY
        self._delay_s = 0.0
        self._fec_seen_at: float | None = None
        self._fec_usable = False
        self._counts = dict.fromkeys(
            ("played", "concealed", "fec", "late", "accelerated", "stretched", "overflow"), 0
        )

    # packets in ------------------------------------------------------------------------------

    def push(self, sequence: int, timestamp: int, payload: bytes, arrival: float) -> None:
        """Take one RTP packet (16-bit ``sequence``, 32-bit ``timestamp``) that arrived."""
        seq = _unwrap(sequence, self._last_seq, 16)
        ts = _unwrap(timestamp, self._last_ts, 32)
        if self._last_seq is None or seq > self._last_seq:
            self._last_seq, self._last_ts = seq, ts
        self._estimator.add(arrival, ts / self._clock)
        self._follow_fec(payload, arrival)
        if self._idle:
            self._restart(seq, ts, arrival)
        elif self._next_seq is not None and seq < self._next_seq:
            self._counts["late"] += 1
            return
        elif self._next_seq is not None and seq >= self._next_seq + MAX_PACKETS:
            self._counts["overflow"] += len(self._packets)  # a jump: restart there
            self._packets.clear()
            self._next_seq, self._next_ts = seq, ts
        if seq in self._packets:
            return
        if len(self._packets) >= MAX_PACKETS:
            self._counts["overflow"] += 1
            return
        self._packets[seq] = _Packet(ts, payload)

    def _follow_fec(self, payload: bytes, arrival: float) -> None:
        """A frame of margin while packets carry FEC, so the next packet is here in time."""
        if self._decoder.has_fec(payload):
            self._fec_seen_at = arrival
        seen = self._fec_seen_at
        self._fec_usable = seen is not None and arrival - seen < FEC_MEMORY_S
        frame_s = self._frame_ticks / self._clock
        self._estimator.margin_s = max(MARGIN_S, frame_s) if self._fec_usable else MARGIN_S

    def _restart(self, seq: int, ts: int, arrival: float) -> None:
        self._idle = False
        self._dry_s = 0.0
        self._waited = 0
        self._packets.clear()
        self._next_seq, self._next_ts = seq, ts
        self._estimator.reset()
        self._estimator.add(arrival, ts / self._clock)

    # frames out ------------------------------------------------------------------------------

    def first_tick_at(self) -> float | None:
        """When the next frame should play if the playout is not ticking yet, else None."""
        if self._idle or self._next_seq is None:
            return None
        baseline = self._estimator.baseline
        assert baseline is not None
        return self._next_ts / self._clock + baseline + self._estimator.target_s

    def tick(self, now: float) -> PlayoutFrame | None:
        """The frame to play at ``now``; None when idle (nothing arrived for a while)."""
        if self._idle or self._next_seq is None:
            return None
        self._ticks += 1
        frame_s = self._frame_ticks / self._clock
        self._snap(now, frame_s)
        while True:
            due = self._packets.get(self._next_seq)
            if due is not None:
                self._dry_s = 0.0
                self._waited = 0
                return self._play_due(now, due, frame_s)
            if any(seq > self._next_seq for seq in self._packets):
                if self._waited:  # a frame concealed while waiting already stood in for it
                    self._waited -= 1
                    self._next_seq += 1
                    self._next_ts += self._frame_ticks
                    continue
                return self._replace_lost()
            self._dry_s += frame_s
            if self._dry_s > MAX_DRY_S:
                self._idle = True
                return None
            self._waited += 1
            return self._conceal()  # wait for it: late, or the link stalled

    def _delay(self, now: float) -> float:
        baseline = self._estimator.baseline
        if baseline is None:
            return 0.0
        due = self._packets.get(self._next_seq) if self._next_seq is not None else None
        ts = due.timestamp if due is not None else self._next_ts
        self._delay_s = now - (ts / self._clock + baseline)
        return self._delay_s

    def _snap(self, now: float, frame_s: float) -> None:
        excess = self._delay(now) - self._estimator.target_s
        if excess <= SNAP_S or self._next_seq is None:
            return
        skip = int(excess / frame_s)
        for seq in range(self._next_seq, self._next_seq + skip):
            if self._packets.pop(seq, None) is not None:
                self._counts["accelerated"] += 1
        self._next_seq += skip
        self._next_ts += skip * self._frame_ticks

    def _play_due(self, now: float, due: _Packet, frame_s: float) -> PlayoutFrame:
        assert self._next_seq is not None
        delay, target = self._delay(now), self._estimator.target_s
        may_adjust = self._ticks - self._adjusted_at >= ADJUST_EVERY
        following = self._packets.get(self._next_seq + 1)
        above, below = (
            (_FEC_ABOVE * frame_s, FEC_BELOW_S)
            if self._fec_usable
            else (_ABOVE * frame_s, _BELOW * frame_s)
        )
        if may_adjust and delay >= target + above and following is not None:
            self._adjusted_at = self._ticks
            self._counts["accelerated"] += 1
            self._decoder.decode(due.payload)  # keeps the decoder's state continuous
            self._advance(due)
            return self._play_due(now, following, frame_s)
        if may_adjust and delay <= target - below:
            self._adjusted_at = self._ticks
            self._counts["stretched"] += 1
            return self._conceal()
        frame = self._decoder.decode(due.payload)
        self._advance(due)
        self._counts["played"] += 1
        return PlayoutFrame(frame, FrameKind.DECODED)

    def _advance(self, played: _Packet) -> None:
        assert self._next_seq is not None
        self._packets.pop(self._next_seq, None)
        self._frame_ticks = self._decoder.duration(played.payload) or self._frame_ticks
        self._next_seq += 1
        self._next_ts = played.timestamp + self._frame_ticks

    def _replace_lost(self) -> PlayoutFrame:
        assert self._next_seq is not None
        following = self._packets.get(self._next_seq + 1)
        recovered = (
            self._decoder.recover(following.payload, self._frame_ticks) if following else None
        )
        self._next_seq += 1
        self._next_ts += self._frame_ticks
        if recovered is not None:
            self._counts["fec"] += 1
            return PlayoutFrame(recovered, FrameKind.FEC)
        return self._conceal()

    def _conceal(self) -> PlayoutFrame:
        self._counts["concealed"] += 1
        return PlayoutFrame(self._decoder.conceal(self._frame_ticks), FrameKind.CONCEALED)

    # statistics ------------------------------------------------------------------------------

    def stats(self) -> PlayoutStats:
        """The counters so far and the delays as of the last tick."""
        c = self._counts
        newest = max(self._packets, default=None)
        buffered = 0.0
        if newest is not None:
            end = self._packets[newest].timestamp + self._frame_ticks
            buffered = max(0.0, (end - self._next_ts) / self._clock)
        return PlayoutStats(
            frames_played=c["played"],
            concealed=c["concealed"],
            recovered_fec=c["fec"],
            late_drops=c["late"],
            accelerated=c["accelerated"],
            stretched=c["stretched"],
            overflow_drops=c["overflow"],
            packets_held=len(self._packets),
            delay_ms=1000 * self._delay_s,
            target_ms=1000 * self._estimator.target_s,
            buffered_ms=1000 * buffered,
        )
