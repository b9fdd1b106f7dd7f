"""One peer connection of a call: HAL devices in, HAL devices out, with early media.

The caller prepares its offer while idle (:meth:`MediaSession.create_offer`), so a
doorbell press only has to send it. The callee answers the SDP at once while it
rings, so the caller's video (the visitor preview) flows before anyone answers,
while the callee's own tracks stay gated and its speaker silent until it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import av
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from hal.audio import Speaker
from hal.closing import CloseOnce
from services.media.audio_playout import FrameKind, PlayoutFrame, PlayoutStats
from services.media.audio_receive import PlayoutTrack, advertise_inband_fec, install_playout
from services.media.bitrate import LossBasedBitrate, control_bitrate_by_loss
from services.media.encoded import EncodedSource
from services.media.encoder import (
    CappedEncoder,
    follow_bitrate,
    forward_keyframe_requests,
    install_capped_encoder,
    install_opus,
    opus_lookahead_ms,
    sender_encoder,
    use_encoder,
)
from services.media.errors import MediaError, SecurityError
from services.media.ice import IcePolicy, ice_policy
from services.media.nack import VideoReceiveCounters
from services.media.opus_send import install_adaptive_opus
from services.media.relay import relay_failures, selected_pair_types
from services.media.tracks import OutgoingTrack, SharedSource
from services.media.video_receive import VideoRecovery, install_video_recovery, rtcp_round_trip

_log = logging.getLogger(__name__)

VIDEO_CODECS = {"VP8": "video/VP8", "H264": "video/H264"}
PASSTHROUGH_MIME = "video/h264"  # the codec a camera's hardware encoder makes
AudioFec = Literal["auto", "on", "off"]
AUDIO_FEC_MODES: tuple[AudioFec, ...] = ("auto", "on", "off")
ACCEPTED_FINGERPRINTS = frozenset({"sha-256", "sha-384", "sha-512"})
_TRANSPORT_POLICY = {True: RTCIceTransportPolicy.RELAY, False: RTCIceTransportPolicy.ALL}
_FINGERPRINT_LINE = re.compile(r"^a=fingerprint:(\S+)\s", re.MULTILINE)


def check_fingerprints(sdp: str) -> None:
    """Refuse an SDP without a DTLS fingerprint, or with one weaker than SHA-256."""
    algorithms = [a.lower() for a in _FINGERPRINT_LINE.findall(sdp)]
    if not algorithms:
        raise SecurityError("the peer's SDP carries no DTLS fingerprint")
    weak = sorted(set(algorithms) - ACCEPTED_FINGERPRINTS)
    if weak:
        raise SecurityError(f"the peer's SDP uses a weak DTLS fingerprint: {', '.join(weak)}")


@dataclass(frozen=True)
class MediaSettings:
    """How a session's media is set up: video on/off, codec, bitrate cap, ICE, audio FEC.

    ``audio_fec``: "auto" sends Opus in the restricted low-delay mode (2.5 ms lookahead, no
    FEC) until the peer reports loss, then with in-band FEC ("voip" mode, 6.5 ms) while it
    does (services/media/opus_send.py); "on" and "off" hold one mode for the whole call.
    """

    video: bool = True
    video_codec: str = "VP8"
    video_bitrate_bps: int = 1_000_000
    audio_fec: AudioFec = "auto"
    ice_servers: tuple[RTCIceServer, ...] = ()
    ice: IcePolicy = field(default_factory=IcePolicy)
    relay_only: bool = False
    """Offer only relayed candidates (``iceTransportPolicy: "relay"``): media always via TURN."""

    def __post_init__(self) -> None:
        if self.audio_fec not in AUDIO_FEC_MODES:
            raise MediaError(
                f"audio FEC {self.audio_fec!r} is not one of {', '.join(AUDIO_FEC_MODES)}"
            )
        if self.video_codec not in VIDEO_CODECS:
            raise MediaError(
                f"video codec {self.video_codec!r} is not one of {', '.join(VIDEO_CODECS)}"
            )


@dataclass
class MediaStats:
    """What arrived from the peer, for tests, benchmarks and reconnection."""

    video_frames: int = 0
    audio_frames: int = 0
    audio_samples: int = 0
    video_size: tuple[int, int] = (0, 0)
    first_video_at: float | None = None
    first_audio_at: float | None = None
    last_media_at: float | None = None
    last_video_frame: av.VideoFrame | None = None


class MediaSession:
    """An aiortc peer connection fed by shared camera and microphone sources.

    The peer's audio plays on a speaker once playback is on.
    """

    def __init__(
        self,
        settings: MediaSettings,
        *,
        video_source: SharedSource | None,
        audio_source: SharedSource | None,
        speaker: Speaker | None,
        label: str = "",
    ) -> None:
        self.settings = settings
        self.label = label
        self.stats = MediaStats()
        self.first_video = asyncio.Event()
        self.first_audio = asyncio.Event()
        self.connected = asyncio.Event()
        self.relay_failure = ""
        """Why the TURN server gave this session no relayed candidate ("" when it did)."""
        self._connected_pair: tuple[str, str] | None = None
        self.on_state: Callable[[str], None] | None = None
        self.on_video_frame: Callable[[av.VideoFrame], None] | None = None
        self._speaker = speaker
        self._playback = False
        self._video_track = (
            OutgoingTrack("video", video_source) if video_source and settings.video else None
        )
        self._video_encoded = video_source.encoded if video_source else None
        self._audio_track = OutgoingTrack("audio", audio_source) if audio_source else None
        self._pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=list(settings.ice_servers),
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
                iceTransportPolicy=_TRANSPORT_POLICY[settings.relay_only],
            )
        )
        self._pc.on("connectionstatechange", self._state_changed)
        self._pc.on("track", self._track_received)
        self._consumers: set[asyncio.Task[None]] = set()
        self._video_recovery: VideoRecovery | None = None
        self.video_loss_control = LossBasedBitrate()  # our video's rate under loss
        # None: our playout could not be installed (aiortc moved), aiortc's own path plays
        self._playouts: dict[RTCRtpReceiver, PlayoutTrack | None] = {}
        self._warm: CappedEncoder | None = None
        self._warm_mime = ""
        self._close = CloseOnce()

    # negotiation ---------------------------------------------------------------------------

    async def create_offer(self) -> str:
        """Add our tracks, gather candidates and return the offer SDP (done while idle)."""
        self._pc.addTransceiver(self._audio_track or "audio", direction="sendrecv")
        if self.settings.video:
            video = self._pc.addTransceiver(self._video_track or "video", direction="sendrecv")
            self._prefer_codec(video)
        self._install_audio_playout()
        self._recover_video()
        await self._gather(self._pc.createOffer)
        return self._pc.localDescription.sdp

    async def accept_offer(self, sdp: str) -> str:
        """Answer the caller's offer at once (early media) and return the answer SDP."""
        check_fingerprints(sdp)
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if self._audio_track is not None:
            self._pc.addTrack(self._audio_track)
        if self._video_track is not None and self._has_remote_video():
            self._pc.addTrack(self._video_track)
        self._install_audio_playout()
        self._recover_video()
        await self._gather(self._pc.createAnswer)
        self._cap_video_on_first_frame()
        self._fec_audio_on_first_frame()
        return self._pc.localDescription.sdp

    async def apply_answer(self, sdp: str) -> None:
        """Take the callee's answer: ICE and DTLS start, early media flows to the callee."""
        check_fingerprints(sdp)
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self._cap_video_on_first_frame()
        self._fec_audio_on_first_frame()

    def _has_remote_video(self) -> bool:
        return any(t.kind == "video" for t in self._pc.getTransceivers())

    def _prefer_codec(self, transceiver: RTCRtpTransceiver) -> None:
        wanted = VIDEO_CODECS[self.settings.video_codec]
        codecs = [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType in (wanted, "video/rtx")
        ]
        transceiver.setCodecPreferences(codecs)

    async def _gather(self, describe: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Set our offer or answer with ICE gathered under our policy; note a TURN failure."""
        with ice_policy(self.settings.ice), relay_failures() as failures:
            await self._set_local(await describe())
        if failures:
            self.relay_failure = "; ".join(failures)
            _log.error("media %s: no relayed candidate: %s", self.label, self.relay_failure)

    async def _set_local(self, description: RTCSessionDescription) -> None:
        """Set our SDP, asking the peer for Opus in-band FEC (aiortc writes no Opus fmtp)."""
        sdp = advertise_inband_fec(description.sdp)
        await self._pc.setLocalDescription(RTCSessionDescription(sdp=sdp, type=description.type))

    def _recover_video(self) -> None:
        """Our NACK retries and frame assembly on the video receiver, before its first packet."""
        video = [t for t in self._pc.getTransceivers() if t.kind == "video"]
        if not video or self._video_recovery is not None:
            return
        rtt = rtcp_round_trip(lambda: [t.sender for t in self._pc.getTransceivers()])
        try:
            self._video_recovery = install_video_recovery(video[0].receiver, rtt_hint=rtt)
        except MediaError as err:  # an aiortc upgrade: its own path, frozen video and all
            _log.error("media %s: video receive path not installed: %s", self.label, err)

    def _install_audio_playout(self) -> None:
        """Our playout buffer instead of aiortc's audio jitter buffer (audio_receive.py)."""
        for transceiver in self._pc.getTransceivers():
            receiver = transceiver.receiver
            if transceiver.kind == "audio" and receiver not in self._playouts:
                try:
                    self._playouts[receiver] = install_playout(receiver)
                except MediaError as err:  # an aiortc upgrade, or no libopus: aiortc's path
                    _log.error("media %s: audio playout not installed: %s", self.label, err)
                    self._playouts[receiver] = None

    def _fec_audio_on_first_frame(self) -> None:
        """Our Opus encoder, FEC as ``settings.audio_fec`` says, once negotiated."""
        track = self._audio_track
        transceiver = next(
            (t for t in self._pc.getTransceivers() if t.kind == "audio" and t.sender.track),
            None,
        )
        if track is None or transceiver is None:
            return

        def install() -> None:
            if not transceiver._codecs:
                return
            codec = transceiver._codecs[0]  # negotiated, best first
            if self.settings.audio_fec == "auto":
                install_adaptive_opus(transceiver.sender, codec)
            else:
                install_opus(transceiver.sender, codec, fec=self.settings.audio_fec == "on")

        track.on_first_recv(install)

    def _video_transceiver(self) -> RTCRtpTransceiver | None:
        for transceiver in self._pc.getTransceivers():
            if transceiver.kind == "video" and transceiver.sender.track is not None:
                return transceiver
        return None

    def _cap_video_on_first_frame(self) -> None:
        transceiver = self._video_transceiver()
        if transceiver is None or self._video_track is None:
            return
        track = self._video_track

        def install() -> None:
            codecs = transceiver._codecs  # negotiated, best first
            if not codecs:
                return
            encoded = self._passthrough_source(codecs[0])
            packets = encoded is not None and encoded.available
            warm, self._warm = self._warm, None
            if warm is not None and self._warm_mime == codecs[0].mimeType and not packets:
                use_encoder(transceiver.sender, warm)
            else:  # a passthrough encoder only packs: aiortc opens no codec unless needed
                install_capped_encoder(
                    transceiver.sender, codecs[0], self.settings.video_bitrate_bps
                )
            control_bitrate_by_loss(transceiver.sender, self.video_loss_control)
            if encoded is not None:
                track.use_encoded(encoded)
                follow_bitrate(transceiver.sender, track.set_bitrate)
                forward_keyframe_requests(transceiver.sender, track.request_keyframe)
            self._log_video_path(codecs[0], encoded)

        track.on_first_recv(install)

    def _passthrough_source(self, codec: RTCRtpCodecParameters) -> EncodedSource | None:
        """The camera's H.264 packets, when H.264 is what the peers negotiated."""
        if codec.mimeType.lower() != PASSTHROUGH_MIME:
            return None
        return self._video_encoded

    def _log_video_path(self, codec: RTCRtpCodecParameters, encoded: EncodedSource | None) -> None:
        name = codec.mimeType.split("/")[-1]
        if encoded is not None and encoded.available:
            _log.info(
                "media %s: video %s passthrough: the camera's encoded packets go to the peer"
                " as they are (no decode, no re-encode)",
                self.label,
                name,
            )
        elif encoded is not None:
            _log.info(
                "media %s: video %s encoded by aiortc from raw frames: the camera has no"
                " H.264 output (its packets will be used if a camera with one is switched to)",
                self.label,
                name,
            )
        else:
            _log.info(
                "media %s: video %s encoded by aiortc from raw frames (%s negotiated)",
                self.label,
                name,
                name,
            )

    def adopt_encoder(self, encoder: CappedEncoder, mime_type: str) -> None:
        """Use this already opened encoder for the first video frame.

        Only if ``mime_type`` is what the peers negotiate (opening one on the first frame costs ~10
        ms).
        """
        encoder.set_cap(self.settings.video_bitrate_bps)
        self._warm, self._warm_mime = encoder, mime_type

    # sending and playing ---------------------------------------------------------------------

    def set_sending(self, *, audio: bool, video: bool) -> None:
        """Open or close the outgoing audio and video (answer, mute, unmute)."""
        if self._audio_track is not None:
            self._audio_track.set_sending(audio)
        if self._video_track is not None:
            self._video_track.set_sending(video)

    def set_playback(self, enabled: bool) -> None:
        """Play (or stop playing) the peer's audio on the speaker."""
        self._playback = enabled

    @property
    def video_frames_sent(self) -> int:
        """How many camera frames (or H.264 packets, in passthrough) went to the sender."""
        return self._video_track.frames_sent if self._video_track else 0

    @property
    def audio_frames_sent(self) -> int:
        """How many microphone frames went to the encoder."""
        return self._audio_track.frames_sent if self._audio_track else 0

    def set_speaker(self, speaker: Speaker) -> None:
        """Play the peer's audio on another speaker from the next frame on."""
        self._speaker = speaker

    @property
    def speaker(self) -> Speaker | None:
        """Where the peer's audio plays."""
        return self._speaker

    def set_video_bitrate(self, bps: int) -> None:
        """Cap the video encoder's target bitrate (takes effect on the running encoder)."""
        self.settings = _replace_bitrate(self.settings, bps)
        transceiver = self._video_transceiver()
        if transceiver is not None and sender_encoder(transceiver.sender) is not None:
            install_capped_encoder(transceiver.sender, transceiver._codecs[0], bps)

    def audio_lookahead_ms(self) -> float | None:
        """Our Opus encoder's lookahead once audio went out (6.5 ms with FEC, 2.5 without)."""
        for transceiver in self._pc.getTransceivers():
            if transceiver.kind == "audio" and transceiver.sender.track is not None:
                return opus_lookahead_ms(transceiver.sender)
        return None

    def video_encoder(self) -> CappedEncoder | None:
        """The sender's video encoder once the first frame left (packs only in passthrough)."""
        transceiver = self._video_transceiver()
        return sender_encoder(transceiver.sender) if transceiver else None

    @property
    def video_passthrough(self) -> bool:
        """True while the camera's H.264 packets go to the peer unchanged."""
        return self._video_track is not None and self._video_track.passthrough

    def video_target_bitrate(self) -> int | None:
        """The running video encoder's target bitrate, once it encodes."""
        transceiver = self._video_transceiver()
        encoder = sender_encoder(transceiver.sender) if transceiver else None
        return encoder.target_bitrate if encoder else None

    # receiving --------------------------------------------------------------------------------

    @property
    def video_receive_counters(self) -> VideoReceiveCounters | None:
        """NACKs, retries, PLIs, dropped frames and freezes of the peer's video (bench, tests)."""
        return self._video_recovery.counters if self._video_recovery else None

    def _track_received(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._start_consumer(self._consume_video(track), "video")
            return
        # The callee's receivers appear inside setRemoteDescription, which fires this first.
        self._install_audio_playout()
        receiver = next((r for r in self._playouts if r.track is track), None)
        if receiver is None:
            _log.warning("media %s: audio track of no audio receiver, not played", self.label)
            return
        playout = self._playouts[receiver]
        if playout is None:
            self._start_consumer(self._consume_audio(_DecodedByAiortc(track)), "audio")
            return
        self._start_consumer(self._consume_audio(playout), "audio")
        self._start_consumer(self._end_with(track, playout), "audio-end")

    def _start_consumer(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=f"media-{self.label}-{name}")
        self._consumers.add(task)
        task.add_done_callback(self._consumers.discard)

    @staticmethod
    async def _end_with(remote: MediaStreamTrack, playout: PlayoutTrack) -> None:
        """Stop the playout when aiortc ends the remote track (receiver stopped, BYE)."""
        with contextlib.suppress(MediaStreamError):
            while True:  # aiortc's decoder thread gets no frames: recv() only ever ends
                await remote.recv()
        playout.stop()

    async def _consume_video(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.VideoFrame)
            now = time.monotonic()
            stats = self.stats
            stats.video_frames += 1
            stats.last_media_at = now
            stats.video_size = (frame.width, frame.height)
            stats.last_video_frame = frame
            if stats.first_video_at is None:
                stats.first_video_at = now
                self.first_video.set()
            if self.on_video_frame is not None:
                self.on_video_frame(frame)

    async def _consume_audio(self, playout: PlayoutTrack | _DecodedByAiortc) -> None:
        """Play the playout's frames; only audio that arrived counts as media received."""
        while True:
            try:
                out = await playout.recv_frame()
            except MediaStreamError:
                return
            now = time.monotonic()
            if out.received:  # concealment is not the peer's media (supervision reads this)
                self.stats.audio_frames += 1
                self.stats.last_media_at = now
            if self._playback and self._speaker is not None:
                if out.received:
                    self.stats.audio_samples += out.frame.samples
                    if self.stats.first_audio_at is None:
                        self.stats.first_audio_at = now
                        self.first_audio.set()
                await self._speaker.play(out.frame)

    def audio_receive_stats(self) -> PlayoutStats | None:
        """The audio playout's statistics (loss concealed, FEC, delay), once audio arrived."""
        for playout in self._playouts.values():
            stats = playout.stats() if playout is not None else None
            if stats is not None:
                return stats
        return None

    def _state_changed(self) -> None:
        state = self._pc.connectionState
        _log.debug("media %s: connection %s", self.label, state)
        if state == "connected":
            self._connected_pair = selected_pair_types(self._pc)
            self.connected.set()
        elif state == "failed" and self.relay_failure:
            _log.error(
                "media %s: no path to the peer, and no relay: %s", self.label, self.relay_failure
            )
        if self.on_state is not None:
            self.on_state(state)

    def selected_pair(self) -> tuple[str, str] | None:
        """The candidate types (local, remote) of the nominated ICE pair, or None before one.

        ``("relay", "host")`` and the like say the media goes through the TURN server. Once
        the session is closed (aioice forgets its pairs), the pair it connected on.
        """
        return selected_pair_types(self._pc) or self._connected_pair

    def failed_after_connectivity(self) -> bool:
        """True when ICE connected but DTLS failed.

        A certificate that does not match the peer's signed fingerprint, or a tampered handshake,
        rather than a network problem.
        """
        for transceiver in self._pc.getTransceivers():
            dtls = transceiver.receiver.transport
            if dtls.state == "failed" and dtls.transport.state == "completed":
                return True
        return False

    def expects_remote_media(self) -> bool:
        """True when the negotiated SDP has the peer send us audio or video."""
        return any(
            t.currentDirection in ("sendrecv", "recvonly") for t in self._pc.getTransceivers()
        )

    @property
    def state(self) -> str:
        """The aiortc connection state: new, connecting, connected, failed or closed."""
        return str(self._pc.connectionState)

    async def close(self) -> None:
        """Stop sending and receiving and release every device.

        Safe to call twice; a call made while a close is under way waits for it.
        """
        if not await self._close.begin():
            return
        try:
            await self._pc.close()
            for task in list(self._consumers):
                task.cancel()
            await asyncio.gather(*self._consumers, return_exceptions=True)
            for track in (self._video_track, self._audio_track):
                if track is not None:
                    track.stop()
            for playout in self._playouts.values():
                if playout is not None:
                    playout.stop()
        finally:
            self._close.finish()


class _DecodedByAiortc:
    """aiortc's own remote audio track, frames as our playout gives them (its fallback)."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self._track = track

    async def recv_frame(self) -> PlayoutFrame:
        """The next frame aiortc decoded (MediaStreamError once the track ended)."""
        frame = await self._track.recv()
        assert isinstance(frame, av.AudioFrame)
        return PlayoutFrame(frame, FrameKind.DECODED)


def _replace_bitrate(settings: MediaSettings, bps: int) -> MediaSettings:
    return replace(settings, video_bitrate_bps=bps)
