"""The audio playout buffer on real Opus packets: loss, FEC, late packets, jitter, floods.

Time is simulated (opus_stream.run), so these tests neither sleep nor depend on speed.
"""

from __future__ import annotations

import random

import numpy as np
from aiortc.codecs import PCMU_CODEC
from opus_stream import FRAME, FRAME_S, NO_FEC, Link, Tick, opus_packets, run, snr_db

from services.media.audio_playout import MAX_PACKETS, MIN_TARGET_S, AudioPlayout, FrameKind
from services.media.audio_receive import OpusAudio, decoder_for
from services.media.encoder import OPUS_OPTIONS
from services.media.opus_codec import OpusDecoder, packet_has_fec

BAND_MS = 0.75 * FRAME_S * 1000  # how far the delay may stray from the target


def playout() -> AudioPlayout:
    return AudioPlayout(OpusAudio())


def clean_decode(packets: list[bytes]) -> list[np.ndarray]:
    decoder = OpusDecoder()
    return [decoder.decode(p).to_ndarray() for p in packets]


def end(packets: list[bytes], *, fec: bool = False) -> float:
    """When the last packet of a clean link has played (the playout then runs dry).

    A stream with ``fec`` plays 20 ms later: the frame inserted to reach the delay that
    lets FEC work once the first FEC arrived.
    """
    return len(packets) * FRAME_S + (0.025 if fec else 0.01)


def settled(tick: Tick) -> bool:
    return abs(tick.stats.delay_ms - tick.stats.target_ms) <= BAND_MS


def test_clean_link_plays_every_frame_at_the_least_delay_that_lets_fec_work() -> None:
    """Without FEC a frame waits half a frame; with FEC one frame, so the next one is here."""
    for options, target_ms in ((NO_FEC, 1000 * MIN_TARGET_S), (OPUS_OPTIONS, 1000 * FRAME_S)):
        packets = opus_packets(2.0, options)
        ticks = run(playout(), Link(packets), until=end(packets, fec=options is OPUS_OPTIONS))
        last = ticks[-1].stats
        assert last.frames_played == 100 and last.concealed == last.stretched <= 1, options
        assert round(last.target_ms, 6) == round(target_ms, 6), options
        assert all(settled(t) for t in ticks), options


def test_one_lost_packet_is_concealed_and_the_delay_returns_to_target() -> None:
    packets = opus_packets(3.0, NO_FEC)
    ticks = run(playout(), Link(packets, delays={50: None}), until=end(packets))
    last = ticks[-1].stats
    assert last.recovered_fec == 0 and last.concealed >= 1
    assert last.frames_played >= len(packets) - 2  # at most one more dropped to catch up
    after = [t for t in ticks if t.at > 50 * FRAME_S + 1.0]
    assert after and all(settled(t) for t in after), [t.stats for t in after if not settled(t)]
    assert after[-1].stats.delay_ms < 40, "the loss left the audio late for good (aiortc #543)"


def test_a_loss_noticed_late_costs_one_concealed_frame_and_no_real_one() -> None:
    """The successor of a lost packet arrives after the lost frame was due (jitter).

    The frame concealed while waiting stands in for the lost one: the successor plays in
    its own slot, so nothing else is concealed and no real frame is dropped to catch up.
    """
    packets = opus_packets(3.0, NO_FEC)
    link = Link(packets, delays={50: None, 51: 0.012})
    ticks = run(playout(), link, until=end(packets))
    last = ticks[-1].stats
    assert last.concealed == 1
    assert last.frames_played == len(packets) - 1 and last.accelerated == 0
    assert all(settled(t) for t in ticks if t.at > 53 * FRAME_S)


def test_lost_packet_whose_successor_carries_fec_is_recovered_from_it() -> None:
    packets = opus_packets(2.0)  # callbox's own encoder settings
    ticks = run(playout(), Link(packets, delays={50: None}), until=end(packets))
    fec = [t for t in ticks if t.kind is FrameKind.FEC]
    assert len(fec) == 1 and ticks[-1].stats.recovered_fec == 1
    # It sounds like the lost frame: far closer to it than libopus's concealment.
    reference = clean_decode(packets)[50]
    plc = OpusDecoder()
    for packet in packets[:50]:
        plc.decode(packet)
    concealed = plc.conceal(FRAME).to_ndarray()
    assert snr_db(reference, fec[0].pcm) > snr_db(reference, concealed) + 6


def test_on_a_jittery_lossy_link_fec_recovers_the_losses_it_can() -> None:
    """The delay stays at least a frame plus the jitter, so a loss's successor is in time.

    The jitter grows from 0-2 ms to 0-16 ms after 3 s, then 1 % of the packets are lost:
    every lost frame whose successor carries FEC is recovered from it, none is concealed
    instead (with the delay left up to half a frame under its target, most were).
    """
    rng = random.Random(7)
    packets = opus_packets(12.0)
    delays: dict[int, float | None] = {
        seq: 0.005 + rng.uniform(0.0, 0.002 if seq < 150 else 0.016) for seq in range(len(packets))
    }
    lost = list(range(200, len(packets) - 1, 41))  # about 1 %, none in a row
    delays.update(dict.fromkeys(lost, None))
    ticks = run(playout(), Link(packets, delays=delays), until=end(packets, fec=True) + 0.1)
    recoverable = [seq for seq in lost if packet_has_fec(packets[seq + 1])]
    assert len(recoverable) >= 5
    played = max(i for i, t in enumerate(ticks) if t.kind is not FrameKind.CONCEALED)
    last = ticks[played].stats  # the last packet's frame (then the playout runs dry)
    assert last.frames_played + last.recovered_fec + len(lost) - len(recoverable) == len(packets)
    assert last.recovered_fec == len(recoverable), last
    assert last.concealed - last.stretched == len(lost) - len(recoverable), last
    assert last.accelerated <= 2 and last.stretched <= 2, "no see-saw around the target"


def test_late_packet_is_dropped_and_counted() -> None:
    packets = opus_packets(2.0)
    ticks = run(playout(), Link(packets, delays={30: 0.5}), until=end(packets))
    last = ticks[-1].stats
    assert last.late_drops == 1
    assert last.recovered_fec + last.concealed >= 1
    assert last.frames_played >= len(packets) - 2


def test_jitter_burst_raises_the_delay_and_it_returns_to_target_once_the_link_clears() -> None:
    packets = opus_packets(6.0)
    stalled = range(100, 110)  # the link stalls for 200 ms at t = 2 s, then delivers at once
    delays: dict[int, float | None] = {seq: 2.2 - seq * FRAME_S + 0.005 for seq in stalled}
    ticks = run(playout(), Link(packets, delays=delays), until=end(packets))
    during = [t for t in ticks if 2.0 < t.at < 3.0]
    assert max(t.stats.target_ms for t in during) >= 150
    assert max(t.stats.delay_ms for t in during) >= 150
    # Within ~1 s of the burst leaving the jitter window (1 s), the delay is back to a frame.
    back = next(t.at for t in ticks if t.at > 2.2 and t.stats.delay_ms < 40)
    assert back - 2.2 < 1.6, f"delay back to target {back - 2.2:.2f} s after the link cleared"
    assert all(settled(t) and t.stats.target_ms <= 30 for t in ticks if t.at > 3.9)
    assert ticks[-1].stats.late_drops == 0  # waited for the stalled packets: nothing lost


def test_flood_of_packets_stays_bounded() -> None:
    packets = opus_packets(0.2)
    buffer = playout()
    rng = random.Random(14)
    for i in range(20000):
        buffer.push(rng.randrange(65536), rng.randrange(1 << 32), packets[i % len(packets)], 0.0)
        assert buffer.stats().packets_held <= MAX_PACKETS
    assert buffer.stats().overflow_drops > 0
    assert len(buffer._estimator._samples) <= 4 * MAX_PACKETS  # its jitter history too
    assert buffer.tick(1.0) is not None  # still plays


def test_sequence_and_timestamp_wrap_around_is_seamless() -> None:
    packets = opus_packets(1.0, NO_FEC)
    ticks = run(
        playout(),
        Link(packets),
        until=end(packets),
        seq_offset=65536 - 20,
        ts_offset=(1 << 32) - 30 * FRAME,
    )
    last = ticks[-1].stats
    assert last.frames_played == len(packets) and last.concealed == 0 and last.late_drops == 0


def test_silent_peer_idles_the_playout_instead_of_concealing_forever() -> None:
    packets = opus_packets(1.0)
    ticks = run(playout(), Link(packets), until=10.0)
    concealed = sum(t.kind is FrameKind.CONCEALED for t in ticks)
    assert concealed * FRAME_S <= 0.35


def test_pcmu_plays_through_the_same_playout_with_silence_for_a_lost_packet() -> None:
    """G.711 has no FEC or PLC: aiortc's decoder, and silence where a packet was lost."""
    buffer = AudioPlayout(decoder_for(PCMU_CODEC))
    payload = bytes((i * 37) % 256 for i in range(160))  # any byte is a mu-law sample
    outs = []
    for seq in range(50):
        if seq != 20:
            buffer.push(seq, seq * 160, payload, arrival=seq * FRAME_S)
        if seq >= 1:
            out = buffer.tick(seq * FRAME_S + 0.001)
            assert out is not None
            outs.append(out)
    kinds = [o.kind for o in outs]
    assert kinds.count(FrameKind.CONCEALED) >= 1 and FrameKind.FEC not in kinds
    silent = [o for o in outs if o.kind is FrameKind.CONCEALED]
    assert all(not o.frame.to_ndarray().any() for o in silent)
    assert all(o.frame.sample_rate == 8000 and o.frame.samples == 160 for o in outs)
