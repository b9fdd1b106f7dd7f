"""Listeners and helpers shared by the tests: they record what happens.

They let a test wait for it with a timeout, never sleep-and-hope.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness.simsite import SimSite

if TYPE_CHECKING:
    from aiortc import RTCRtpReceiver
    from aiortc.rtp import RtpPacket

from services.callapi import (
    Call,
    CallProperties,
    Calls,
    CallStatus,
    HangupReason,
    IncomingListener,
    InProgressListener,
    NotifyKind,
    UserProfile,
)
from services.media.session import MediaSession

TIMEOUT = 10.0
MakeSite = Callable[..., Awaitable[SimSite]]
"""The ``make_site`` fixture: ``await make_site(EndpointSpec("door", role="door"), ...)``."""


class Recorder:
    """Something tests wait on: a condition notified whenever a record changes."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()

    def _touch(self) -> None:
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        """Wait until ``predicate()`` holds; TimeoutError after ``timeout`` s."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)


class Progress(InProgressListener, Recorder):
    """Records every in-progress callback with its time."""

    def __init__(self) -> None:
        Recorder.__init__(self)
        self.statuses: list[CallStatus] = []
        self.times: dict[CallStatus, float] = {}
        self.hangups: list[HangupReason] = []
        self.mutes: list[tuple[bool, bool, bool]] = []
        self.dtmf: list[int] = []
        self.audio_devices: list[tuple[int, int]] = []
        self.sources: list[str] = []
        self.sounds: list[tuple[int, bool]] = []
        self.videos: list[tuple[int, int, bool]] = []

    def on_status(self, call: Call, status: CallStatus, video: bool) -> None:
        self.statuses.append(status)
        self.times.setdefault(status, time.monotonic())
        self._touch()

    def on_hangup(self, call: Call, reason: HangupReason) -> None:
        self.hangups.append(reason)
        self._touch()

    def on_mute(self, call: Call, audio: bool, video: bool, remote: bool) -> None:
        self.mutes.append((audio, video, remote))
        self._touch()

    def on_dtmf(self, call: Call, digit: int) -> None:
        self.dtmf.append(digit)
        self._touch()

    def on_audio_device_changed(self, call: Call, active: int, inactive: int) -> None:
        self.audio_devices.append((active, inactive))
        self._touch()

    def on_video_source_changed(self, call: Call, source: str, index: int) -> None:
        self.sources.append(source)
        self._touch()

    def on_play_in_call_sound(self, call: Call, kind: int, play: bool) -> bool:
        self.sounds.append((kind, play))
        self._touch()
        return False

    def on_video(self, call: Call, width: int, height: int, remote: bool) -> None:
        self.videos.append((width, height, remote))
        self._touch()

    async def wait_status(self, status: CallStatus, timeout: float = TIMEOUT) -> None:
        """Wait until ``status`` was reported."""
        await self.wait_until(lambda: status in self.statuses, timeout)

    def terminal(self) -> list[CallStatus]:
        """The terminal statuses reported (a correct call reports exactly one)."""
        return [s for s in self.statuses if s & 0x40]


class Answering(IncomingListener, Recorder):
    """An app that accepts (or rejects) incoming calls and records call-level events."""

    def __init__(self, calls: Calls, *, accept: bool = True, auto_answer: bool = False) -> None:
        Recorder.__init__(self)
        self.calls_api = calls
        self.accept = accept
        self.auto_answer = auto_answer
        self.incoming: list[tuple[UserProfile, bool]] = []
        self.calls: list[Call] = []
        self.progress: list[Progress] = []
        self.notified: list[tuple[NotifyKind, str]] = []
        self.errors: list[int] = []

    def on_incoming(self, profile: UserProfile, video: bool) -> CallProperties | None:
        self.incoming.append((profile, video))
        self._touch()
        if not self.accept:
            return None
        props = self.calls_api.create_call_properties(video)
        props.auto_answer = self.auto_answer
        return props

    async def on_show_user_interface(self, call: Call, props: CallProperties) -> bool:
        progress = Progress()
        self.calls.append(call)
        self.progress.append(progress)
        await call.start(progress)
        self._touch()
        return True

    def on_notify(self, kind: NotifyKind, profile: UserProfile, video: bool) -> None:
        self.notified.append((kind, profile.address))
        self._touch()

    def on_error(self, props: CallProperties, error: int) -> None:
        self.errors.append(error)
        self._touch()

    async def next_call(self, timeout: float = TIMEOUT) -> tuple[Call, Progress]:
        """Wait for an incoming call that reached the app."""
        await self.wait_until(lambda: bool(self.calls), timeout)
        return self.calls[-1], self.progress[-1]


async def place_call(calls: Calls, props: CallProperties) -> tuple[Call, Progress]:
    """Place and start a call, recording its statuses."""
    call = calls.call(props)
    assert call is not None, f"{calls.address} is busy"
    progress = Progress()
    await call.start(progress)
    return call, progress


def props_for(calls: Calls, *targets: str, video: bool = True) -> CallProperties:
    """Call properties from ``calls`` to ``targets`` (a ring group when more than one)."""
    props = calls.create_call_properties(video)
    props.user = calls.profile_of(targets[0])
    props.extra_targets = [calls.profile_of(t) for t in targets[1:]]
    return props


def need(available: bool, what: str) -> None:
    """Skip when ``what`` is missing on a developer's machine; fail under ``make test``.

    The Makefile installs every prerequisite and sets CALLBOX_REQUIRE_ALL, so a missing one
    there is a broken install, never a silent skip.
    """
    if available:
        return
    if os.environ.get("CALLBOX_REQUIRE_ALL"):
        pytest.fail(f"{what} is missing, and make test installs it: the install is broken")
    pytest.skip(f"{what} is missing here")


async def wait_for(predicate: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    """Wait until ``predicate()`` holds, checking every 10 ms; AssertionError naming ``what``.

    For state that has no event of its own (a mock pin's level, a sysfs file, a media
    counter): the deadline bounds the wait, the check is the thing the user would notice.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""

    cert: Path
    key: Path


def self_signed_certificate(directory: Path) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost (a CA of its own).

    As ``web.crt`` and ``web.key`` in ``directory``.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callbox test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = Certificate(directory / "web.crt", directory / "web.key")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def lose_at_receiver(receiver: RTCRtpReceiver, lost: Callable[[RtpPacket], bool]) -> None:
    """Drop the packets ``lost`` picks before aiortc's ``receiver`` sees them.

    As the network would: aiortc's statistics, receiver reports and NACKs see the loss.
    """
    handle = receiver._handle_rtp_packet

    async def lossy(packet: RtpPacket, arrival_time_ms: int) -> None:
        if not lost(packet):
            await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = lossy  # type: ignore[method-assign]


def sign_a_foreign_fingerprint(site: SimSite, address: str) -> None:
    """``address`` answers with a signed fingerprint that is not its DTLS certificate's."""
    calls = site[address].calls
    new_session = calls.new_session

    def session_with_wrong_fingerprint(*args: object, **kwargs: object) -> MediaSession:
        session = new_session(*args, **kwargs)  # type: ignore[arg-type]
        accept = session.accept_offer

        async def accept_offer(sdp: str) -> str:
            answer = await accept(sdp)
            return re.sub(
                r"(a=fingerprint:sha-256 )(\S+)",
                lambda m: m.group(1) + ":".join(["AB"] * 32),
                answer,
            )

        session.accept_offer = accept_offer  # type: ignore[method-assign]
        return session

    calls.new_session = session_with_wrong_fingerprint  # type: ignore[method-assign]
