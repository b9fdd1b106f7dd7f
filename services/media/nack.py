"""NACKs that are retried after a round trip and given up on in time (video receive path).

aiortc's receiver asks once for each missing packet and never again: one lost
retransmission leaves a hole for good. :class:`NackGenerator` keeps the same contract
(aiortc calls ``add(packet)`` for every packet and, when it returns True, sends a NACK
for ``sorted(generator.missing)``) but ``missing`` is the batch due *now*: new holes, and
holes whose last NACK got no answer within about one round trip. Retries are checked on
every packet, so they fall due while packets keep arriving without any timer. A packet
asked for ``max_nacks`` times, or missing for longer than ``max_age_s``, is given up on:
:class:`services.media.frame_assembler.FrameAssembler` then skips it and asks for a key
frame.

The round trip is measured here, from a NACK to the arrival of the packet it asked for,
from packets asked for once only: after a retry, which NACK brought the packet is unknown
(Karn's rule). Where RTX is negotiated only retransmissions count
(:meth:`NackGenerator.retransmitted`): an original that jitter delayed past the NACK says
nothing about the round trip, and counting it made retries fire too early and give up.
Until one is measured it is the one RTCP measured (``rtt_hint``: aiortc's senders,
from the peer's receiver reports; none for a peer that only receives), else 100 ms. A
round trip longer than the first retry is never measured: it only costs a repeated NACK.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc.rtp import RtpPacket

INITIAL_RTT_S = 0.1
MIN_RTT_S = 0.005
MAX_RTT_S = 1.0
MAX_GAP = 500  # a jump of more sequence numbers is a restart, not a loss
MAX_PENDING = 300  # holes tracked at most (bounds a NACK's size and our work per packet)


@dataclass
class VideoReceiveCounters:
    """What the video receive path did, for tests and benchmarks (one per receiver)."""

    nacks_sent: int = 0  # RTCP NACK packets
    packets_nacked: int = 0  # sequence numbers asked for the first time
    nack_retries: int = 0  # sequence numbers asked for again
    packets_recovered: int = 0  # asked-for packets that arrived
    packets_given_up: int = 0
    plis_sent: int = 0
    frames_completed: int = 0  # frames handed to the decoder
    frames_dropped: int = 0  # frames (or parts) thrown away at an unrecoverable hole
    keyframe_resyncs: int = 0  # times decoding resumed at a key frame after a drop
    freezes_detected: int = 0
    rtt_ms: float = INITIAL_RTT_S * 1000
    rtt_samples: list[float] = field(default_factory=list, repr=False)


class RttEstimate:
    """A smoothed round-trip time (RFC 6298 style: mean and mean deviation)."""

    def __init__(self, initial_s: float = INITIAL_RTT_S) -> None:
        self.srtt = initial_s
        self.rttvar = initial_s / 4  # a first retry after 1.5 guessed round trips
        self.samples = 0

    def add(self, sample_s: float) -> None:
        """Take one measured round trip."""
        sample = min(max(sample_s, MIN_RTT_S), MAX_RTT_S)
        if self.samples == 0:
            self.srtt, self.rttvar = sample, sample / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - sample)
            self.srtt = 0.875 * self.srtt + 0.125 * sample
        self.samples += 1

    def seed(self, rtt_s: float) -> None:
        """Start from another measurement (RTCP's) until our own first sample."""
        if self.samples == 0:
            self.srtt = min(max(rtt_s, MIN_RTT_S), MAX_RTT_S)
            self.rttvar = self.srtt / 4

    @property
    def retry_s(self) -> float:
        """How long a NACK waits for its retransmission before it is repeated."""
        return self.srtt + max(2 * self.rttvar, 0.01)


@dataclass
class _Hole:
    noticed_at: float
    nacked_at: list[float] = field(default_factory=list)


class NackGenerator:
    """aiortc's NACK generator contract, with retries after a round trip and a deadline.

    ``clock`` is injectable (seconds, monotonic); ``counters`` is shared with the frame
    assembler of the same receiver; ``rtt_hint`` gives the round trip RTCP measured (None
    while unknown), used until a NACK measured one.
    """

    def __init__(
        self,
        counters: VideoReceiveCounters | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_nacks: int = 3,
        max_age_s: float = 1.0,
        rtt_hint: Callable[[], float | None] | None = None,
    ) -> None:
        self.counters = counters if counters is not None else VideoReceiveCounters()
        self.rtt = RttEstimate()
        self.missing: set[int] = set()  # the batch aiortc sends after add() returned True
        self._clock = clock
        self._rtt_hint = rtt_hint
        self._max_nacks = max_nacks
        self._max_age_s = max_age_s
        self._highest: int | None = None  # extended (unwrapped) sequence number
        self._holes: OrderedDict[int, _Hole] = OrderedDict()  # extended seq -> hole
        self._retransmission: int | None = None  # 16-bit seq of the RTX packet being added
        self.rtx_negotiated: bool | None = None  # None: unknown, any arrival is an answer

    @property
    def rtt_s(self) -> float:
        """The smoothed round-trip time, NACK to retransmission."""
        return self.rtt.srtt

    def pending(self, seq: int) -> bool:
        """Whether 16-bit ``seq`` is still being asked for (False: arrived or given up)."""
        return self._extend(seq) in self._holes

    def retransmitted(self, seq: int) -> None:
        """The next packet added, 16-bit ``seq``, came as a retransmission (RTX)."""
        self._retransmission = seq

    def add(self, packet: RtpPacket) -> bool:
        """Mark ``packet`` received; True if a NACK for ``missing`` is due now."""
        now = self._clock()
        if self.rtt.samples == 0 and self._rtt_hint is not None:
            hint = self._rtt_hint()
            if hint:
                self.rtt.seed(hint)
                self.counters.rtt_ms = self.rtt.srtt * 1000
        seq = self._extend(packet.sequence_number)
        if self._highest is None or abs(seq - self._highest) > MAX_GAP:
            self._holes.clear()  # first packet or a restart: nothing to ask for
            self._highest = seq
        elif seq > self._highest:
            for lost in range(self._highest + 1, seq):
                self._holes[lost] = _Hole(now)
            self._highest = seq
        else:
            self._arrived(seq, now, retransmitted=packet.sequence_number == self._retransmission)
        self._retransmission = None
        self._bound()
        self.missing = self._due(now)
        if self.missing:
            self.counters.nacks_sent += 1
        return bool(self.missing)

    def _extend(self, seq: int) -> int:
        if self._highest is None:
            return seq
        delta = (seq - self._highest + 2**15) % 2**16 - 2**15
        return self._highest + delta

    def _arrived(self, seq: int, now: float, *, retransmitted: bool) -> None:
        hole = self._holes.pop(seq, None)
        if hole is None or not hole.nacked_at:
            return
        self.counters.packets_recovered += 1
        if len(hole.nacked_at) > 1 or (self.rtx_negotiated and not retransmitted):
            return  # which NACK brought it is unknown, or none did: no sample (Karn's rule)
        sample = now - hole.nacked_at[0]
        self.rtt.add(sample)
        self.counters.rtt_ms = self.rtt.srtt * 1000
        samples = self.counters.rtt_samples
        samples.append(sample * 1000)
        del samples[:-50]

    def _bound(self) -> None:
        while len(self._holes) > MAX_PENDING:
            self._holes.popitem(last=False)
            self.counters.packets_given_up += 1

    def _due(self, now: float) -> set[int]:
        due: set[int] = set()
        retry_s = self.rtt.retry_s
        for seq, hole in list(self._holes.items()):
            asked = len(hole.nacked_at)
            if now - hole.noticed_at > self._max_age_s or (
                asked >= self._max_nacks and now - hole.nacked_at[-1] >= retry_s
            ):
                del self._holes[seq]
                self.counters.packets_given_up += 1
            elif asked == 0 or (asked < self._max_nacks and now - hole.nacked_at[-1] >= retry_s):
                hole.nacked_at.append(now)
                due.add(seq % 2**16)
                if asked:
                    self.counters.nack_retries += 1
                else:
                    self.counters.packets_nacked += 1
        return due
