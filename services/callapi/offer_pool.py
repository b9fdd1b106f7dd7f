"""Media sessions for calls, and offers prepared while idle so a doorbell press only sends one.

Making an offer (ICE gathering, a DTLS certificate, opening a video encoder) takes tens
of milliseconds; the pool does it before the press. It also keeps one video encoder
opened at the camera's size, which the next session takes for its first frame.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

from aiortc import RTCIceServer

from services.callapi.properties import CallProperties, IceServer
from services.media.encoder import CappedEncoder, warm_encoder
from services.media.ice import IcePolicy
from services.media.local import LocalMedia
from services.media.session import VIDEO_CODECS, MediaSession, MediaSettings


class OfferPool:
    """Makes the media sessions of one endpoint's calls; keeps offers and an encoder ready."""

    def __init__(
        self,
        media: LocalMedia,
        *,
        address: str,
        ice: IcePolicy,
        default_props: Callable[[], CallProperties],
        own_relay: Callable[[], list[IceServer]] = list,
    ) -> None:
        self._media = media
        self._address = address
        self._ice = ice
        self._default_props = default_props
        self._own_relay = own_relay
        self._prepared: list[tuple[MediaSettings, MediaSession, str]] = []
        self._prewarm_count = 0
        self._prewarm_props: CallProperties | None = None
        self._preparing = asyncio.Lock()
        self._spare_encoders: dict[str, CappedEncoder] = {}
        self._sessions: weakref.WeakSet[MediaSession] = weakref.WeakSet()

    def settings_for(self, props: CallProperties, video: bool | None = None) -> MediaSettings:
        """The media settings a call with ``props`` uses.

        The endpoint's own relay credentials (``own_relay``) come first on an outgoing call
        and after the invite's on an incoming one; they are minted here, not in ``props``, so
        offers prepared while idle keep matching the calls that take them.
        """
        own = self._own_relay()
        listed = [*props.ice_servers, *own] if props.incoming else [*own, *props.ice_servers]
        servers = tuple(RTCIceServer(list(s.urls), s.username, s.credential) for s in listed)
        return MediaSettings(
            video=props.video.enabled if video is None else video,
            video_codec=props.video.codec.name,
            video_bitrate_bps=props.video.bitrate_kbps * 1000,
            ice_servers=servers,
            ice=self._ice,
            relay_only=props.ice_relay_only,
        )

    def new_session(self, props: CallProperties, *, video: bool, label: str) -> MediaSession:
        """A media session on this endpoint's devices (taking the spare encoder, if any)."""
        return self._session_with(self.settings_for(props, video), label)

    def _session_with(self, settings: MediaSettings, label: str) -> MediaSession:
        media = self._media
        session = MediaSession(
            settings,
            video_source=media.camera.shared if media.camera else None,
            audio_source=media.microphone.shared if media.microphone else None,
            speaker=media.speaker(),
            label=f"{self._address}:{label}",
        )
        self._sessions.add(session)
        spare = self._spare_encoders.pop(settings.video_codec, None) if settings.video else None
        if spare is not None:
            session.adopt_encoder(spare, VIDEO_CODECS[settings.video_codec])
        return session

    async def prepared_offer(
        self, props: CallProperties, *, label: str
    ) -> tuple[MediaSession, str]:
        """A session with its offer ready: from the pool when one matches, else made now."""
        settings = self.settings_for(props)
        for index, (pooled, session, sdp) in enumerate(self._prepared):
            if pooled == settings:
                del self._prepared[index]
                session.label = f"{self._address}:{label}"
                return session, sdp
        session = self._session_with(settings, label)
        return session, await session.create_offer()

    async def prewarm(self, props: CallProperties, count: int) -> None:
        """Prepare ``count`` offers for calls like ``props``, now and after every call."""
        self._prewarm_count = count
        self._prewarm_props = props
        settings = self.settings_for(props)
        async with self._preparing:  # one refill at a time: never prepare twice
            while sum(1 for s, _, _ in self._prepared if s == settings) < count:
                await self.open_spare_encoder(settings.video_codec)
                # the settings it is filed under are the ones it is built with (the relay's
                # credentials are minted in settings_for: computing them twice could differ)
                session = self._session_with(settings, "prepared")
                self._prepared.append((settings, session, await session.create_offer()))

    async def refill(self) -> None:
        """After a call: prepare offers again (when asked to), or at least an encoder."""
        if self._prewarm_count and self._prewarm_props is not None:
            await self.prewarm(self._prewarm_props, self._prewarm_count)
        else:
            await self.open_spare_encoder(self._default_props().video.codec.name)

    async def open_spare_encoder(self, codec: str) -> None:
        """Keep one video encoder for ``codec`` opened at the camera's size, off the loop.

        A session takes it for its first frame (the preview of an outgoing call, our video
        once an incoming call is answered) instead of opening one then (~10 ms).
        """
        camera = self._media.camera
        if camera is None or codec in self._spare_encoders:
            return
        if codec == "H264" and camera.supports_h264:
            return  # the camera's own encoder's packets are sent as they are
        fmt = camera.format
        bitrate = self._default_props().video.bitrate_kbps * 1000
        encoder = await asyncio.get_running_loop().run_in_executor(
            None, warm_encoder, VIDEO_CODECS[codec], fmt.width, fmt.height, bitrate
        )
        self._spare_encoders.setdefault(codec, encoder)

    async def close(self) -> None:
        """Close every session this pool made that is still open (prepared ones included)."""
        self._prepared.clear()
        for session in list(self._sessions):
            await session.close()
