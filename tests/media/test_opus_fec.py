"""Which Opus encoder settings give packets whose FEC brings a lost frame back (real libopus).

The measurement behind encoder.install_opus: FEC (LBRR) exists only in SILK/hybrid
modes, so the CELT-only low-delay mode and aiortc's 96 kb/s "voip" never carry it.
"""

from __future__ import annotations

import fractions
from collections.abc import Mapping

import av
import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from opus_stream import FRAME, NO_FEC, opus_packets, snr_db

from hal.audio import ToneMicrophone, VoiceMicrophone
from services.media.encoder import OPUS_BITRATE, OPUS_OPTIONS, opus_encoder
from services.media.opus_codec import OpusDecoder, OpusUnavailableError, packet_has_fec


def recovery_db(options: Mapping[str, str], bitrate: int) -> tuple[float, float, float]:
    """(share of packets with FEC, mean SNR of FEC-recovered frames, of concealed ones)."""
    packets = opus_packets(2.0, options, bitrate)
    clean_decoder = OpusDecoder()
    clean = [clean_decoder.decode(p).to_ndarray() for p in packets]
    fec, plc = [], []
    for lost in range(20, len(packets) - 1, 10):
        with_fec, concealing = OpusDecoder(), OpusDecoder()
        for packet in packets[:lost]:
            with_fec.decode(packet)
            concealing.decode(packet)
        fec.append(snr_db(clean[lost], with_fec.decode_fec(packets[lost + 1], FRAME).to_ndarray()))
        plc.append(snr_db(clean[lost], concealing.conceal(FRAME).to_ndarray()))
    share = sum(map(packet_has_fec, packets)) / len(packets)
    return share, sum(fec) / len(fec), sum(plc) / len(plc)


def test_callbox_opus_settings_carry_fec_that_recovers_lost_speech() -> None:
    share, fec_db, plc_db = recovery_db(OPUS_OPTIONS, OPUS_BITRATE)
    assert share > 0.7, "most packets of speech carry FEC"
    assert fec_db > plc_db + 6, f"FEC {fec_db:.1f} dB is no better than concealment {plc_db:.1f} dB"


@pytest.mark.parametrize(
    ("options", "bitrate"),
    [
        (NO_FEC, 96000),  # aiortc's own encoder
        ({"application": "lowdelay", "fec": "1", "packet_loss": "10"}, 48000),  # CELT only
        ({**OPUS_OPTIONS, "packet_loss": "0"}, OPUS_BITRATE),  # FEC on, but no loss expected
    ],
)
def test_settings_without_fec_packets(options: Mapping[str, str], bitrate: int) -> None:
    share, fec_db, plc_db = recovery_db(options, bitrate)
    assert share == 0
    assert fec_db == pytest.approx(plc_db, abs=0.5)  # libopus conceals: nothing to recover


@pytest.mark.parametrize(
    ("microphone", "least", "most"),
    [(VoiceMicrophone("voice"), 0.6, 1.0), (ToneMicrophone("tone", 440.0), 0.0, 0.2)],
)
def test_libopus_sends_fec_for_a_voice_and_soon_stops_for_a_steady_tone(
    microphone: ToneMicrophone, least: float, most: float
) -> None:
    """Why the impaired-network bench speaks with ``VoiceMicrophone``, not a sine.

    SILK's voice-activity detector takes a steady tone for background noise after a
    moment, and libopus codes FEC only for active speech.
    """
    codec = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2)
    encoder = opus_encoder(codec, fec=True)
    packets: list[bytes] = []
    for index in range(250):
        pcm = microphone.samples(index * FRAME, FRAME, 48000)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, index * FRAME
        frame.time_base = fractions.Fraction(1, 48000)
        packets += encoder.encode(frame)[0]
    share = sum(map(packet_has_fec, packets)) / len(packets)
    assert least <= share <= most, share


def test_packet_has_fec_reads_only_silk_and_hybrid_packets() -> None:
    assert not packet_has_fec(b"")
    assert not packet_has_fec(bytes([31 << 3, 0xFF]))  # CELT-only config 31: never
    assert packet_has_fec(bytes([9 << 3, 0b0100_0000]))  # SILK 20 ms mono, LBRR bit set
    assert not packet_has_fec(bytes([9 << 3, 0b1000_0000]))  # only the VAD bit
    assert packet_has_fec(bytes([(15 << 3) | 0x4, 0b0001_0000]))  # hybrid stereo, side LBRR


def test_missing_libopus_is_a_media_error_naming_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import services.media.opus_codec as opus_codec

    monkeypatch.setattr(opus_codec, "LIBRARY", "libopus-missing.so.0")
    with pytest.raises(OpusUnavailableError, match="libopus0"):
        OpusDecoder()
