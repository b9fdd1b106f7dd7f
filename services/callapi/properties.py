"""CallProperties and its parts: what a call should be, set by the app before it starts.

Mutable like mesibo's, so an app adjusts the defaults from
``Calls.create_call_properties(video)`` before placing or answering a call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.callapi.status import AudioDevice, CallError, VideoCodec


@dataclass
class UserProfile:
    """Who is at the other end: an address in the site, a display name and a role."""

    address: str
    name: str = ""
    role: str = ""

    def display_name(self) -> str:
        """The name to show a person: the profile name, or the address."""
        return self.name or self.address


VIDEO_BITRATE_RANGE_KBPS = {VideoCodec.VP8: (250, 1500), VideoCodec.H264: (500, 3000)}
"""The range aiortc's encoders work in; a cap outside it would silently do nothing."""


@dataclass
class VideoProperties:
    """Video of a call: whether it is on, the capture format, bitrate cap, codec and source."""

    enabled: bool = True
    send: bool = True
    receive: bool = True
    width: int = 640
    height: int = 480
    fps: int = 30
    bitrate_kbps: int = 1000
    codec: VideoCodec = VideoCodec.VP8
    source: str = ""

    def validate(self) -> None:
        """Raise CallError naming the field when a value is out of range."""
        if not (16 <= self.width <= 4096 and self.width % 2 == 0):
            raise CallError(f"video.width {self.width} must be even and within 16..4096")
        if not (16 <= self.height <= 4096 and self.height % 2 == 0):
            raise CallError(f"video.height {self.height} must be even and within 16..4096")
        if not 1 <= self.fps <= 120:
            raise CallError(f"video.fps {self.fps} must be within 1..120")
        low, high = VIDEO_BITRATE_RANGE_KBPS[self.codec]
        if not low <= self.bitrate_kbps <= high:
            raise CallError(
                f"video.bitrate_kbps {self.bitrate_kbps} must be within {low}..{high} "
                f"for {self.codec.name} (the encoder's range)"
            )


@dataclass
class AudioProperties:
    """Audio of a call: whether it is on, Opus bitrate cap and the output device."""

    enabled: bool = True
    send: bool = True
    receive: bool = True
    bitrate_kbps: int = 32
    codec: str = "opus"
    speaker: bool = True
    device: AudioDevice = AudioDevice.SPEAKER

    def validate(self) -> None:
        """Raise CallError naming the field when a value is out of range."""
        if not 6 <= self.bitrate_kbps <= 510:
            raise CallError(f"audio.bitrate_kbps {self.bitrate_kbps} must be within 6..510")
        if self.codec != "opus":
            raise CallError(f"audio.codec {self.codec!r} is not supported: only 'opus'")


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server for ICE (none by default: host candidates on the LAN)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass
class UiProperties:
    """What the default call UI shows."""

    title: str = ""
    call_status_text: str = ""
    auto_hide_controls: bool = True


@dataclass(frozen=True)
class Bell:
    """Which bell of an entrance panel started a call: a button, or a code dialled.

    ``name``: the bell's name in the door's configuration (``[[bells]] name``); ``label``:
    what people are shown ("Flat 12 - Smith"); ``via``: ``"button"`` or ``"code"``. It
    travels in the invite (docs/protocol.md) and reaches the callee's call properties.
    """

    name: str
    label: str = ""
    via: str = "button"


BELL_VIAS = ("button", "code")
"""How a bell can be rung: its push button, or its code dialled on the keypad."""
BELL_NAME_MAX = 40
"""The longest bell name an invite may carry (``flat:`` and a flat of 32 characters fit)."""
BELL_LABEL_MAX = 64
"""The longest bell label an invite may carry (``[[bells]] label`` allows 64)."""


def bell_json(bell: Bell) -> dict[str, str]:
    """The ``bell`` field of an invite (docs/protocol.md)."""
    return {"name": bell.name, "label": bell.label, "via": bell.via}


def parse_bell(value: object) -> Bell:
    """The invite's ``bell`` field as a `Bell`; ValueError saying what is wrong with it.

    ``{"name": str, "label": str, "via": "button" | "code"}``: a name of 1 to 40 and a
    label of at most 64 printable characters; no other keys.
    """
    if not isinstance(value, dict):
        raise ValueError(f"bell must be an object, not {type(value).__name__}")
    extra = sorted(set(value) - {"name", "label", "via"})
    if extra:
        raise ValueError(f"bell has unknown keys {extra}")
    name, label, via = value.get("name"), value.get("label", ""), value.get("via", "button")
    for key, text, most in (("name", name, BELL_NAME_MAX), ("label", label, BELL_LABEL_MAX)):
        if not isinstance(text, str) or len(text) > most or not text.isprintable():
            raise ValueError(f"bell.{key} must be a printable text of at most {most} characters")
    if not name:
        raise ValueError("bell.name must not be empty")
    if via not in BELL_VIAS:
        raise ValueError(f"bell.via must be one of {', '.join(BELL_VIAS)}, not {via!r}")
    assert isinstance(name, str) and isinstance(label, str)
    return Bell(name=name, label=label, via=via)


@dataclass
class CallProperties:
    """Everything about one call: media, peer, UI, behaviour flags and timeouts (mesibo's model)."""

    user: UserProfile | None = None
    video: VideoProperties = field(default_factory=VideoProperties)
    audio: AudioProperties = field(default_factory=AudioProperties)
    ui: UiProperties = field(default_factory=UiProperties)
    auto_answer: bool = False
    hide_on_proximity: bool = True
    disable_speaker_on_proximity: bool = False
    ice_servers: list[IceServer] = field(default_factory=list)
    ice_relay_only: bool = False
    """Offer only relayed candidates (WebRTC's ``iceTransportPolicy: "relay"``)."""
    in_call_sounds: bool = True
    ring_timeout_s: float = 30.0
    connect_timeout_s: float = 15.0
    max_duration_s: float = 0.0
    reconnect_grace_s: float = 30.0
    incoming: bool = False
    extra_targets: list[UserProfile] = field(default_factory=list)
    bell: Bell | None = None
    """Outgoing (a door): the bell that rang, sent in the invite; incoming: the caller's."""

    def validate(self) -> None:
        """Raise CallError naming the field when a value is out of range."""
        if self.user is None:
            raise CallError("user: a call needs a destination (CallProperties.user)")
        self.video.validate()
        self.audio.validate()
        for name in ("ring_timeout_s", "connect_timeout_s", "reconnect_grace_s"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise CallError(f"{name} {value} must be within (0, 3600] seconds")
        if self.max_duration_s < 0:
            raise CallError(f"max_duration_s {self.max_duration_s} must not be negative")
        for server in self.ice_servers:
            for url in server.urls:
                if not url.startswith(("stun:", "turn:", "turns:")):
                    raise CallError(f"ice_servers: {url!r} is not a stun:, turn: or turns: URL")

    def targets(self) -> list[UserProfile]:
        """Every callee of this call: the user plus the ring group's extra targets."""
        return ([self.user] if self.user else []) + list(self.extra_targets)
