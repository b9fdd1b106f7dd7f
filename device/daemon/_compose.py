"""The one factory of an endpoint's Call API: signaling over a transport, media on a board.

``callbox run`` (``DeviceApp``), the simulator and ``callbox demo`` (which run
``DeviceApp`` units) and the test and benchmark sites (tests/harness/simsite.py) all
wire their endpoints here, so what a role implies is decided in one place: a door
station issues door-release challenges, only an indoor unit rings for an incoming call.
"""

from __future__ import annotations

from hal.board import Board
from services.callapi import CallProperties, Calls
from services.media.aec import EchoCanceller
from services.media.ice import IcePolicy
from services.media.local import LocalMedia
from services.media.turn import TurnMinter
from services.signaling.base import SignalingTransport
from services.signaling.contacts import ContactBook
from services.signaling.endpoint import InviteRateLimit, SignalingEndpoint
from services.signaling.identity import Identity
from services.signaling.replay import ReplayGuard


def compose_calls(
    *,
    role: str,
    name: str,
    transport: SignalingTransport,
    identity: Identity,
    contacts: ContactBook,
    board: Board,
    ice: IcePolicy,
    defaults: CallProperties | None = None,
    camera: str | None = None,
    echo_canceller: EchoCanceller | None = None,
    invite_limit: InviteRateLimit | None = None,
    replay: ReplayGuard | None = None,
    turn: TurnMinter | None = None,
) -> Calls:
    """The Call API of one endpoint (not started); its signaling is ``calls.signaling``."""
    signaling = SignalingEndpoint(
        transport=transport,
        identity=identity,
        contacts=contacts,
        name=name,
        role=role,
        invite_limit=invite_limit,
        replay=replay,
    )
    return Calls(
        signaling,
        LocalMedia(board, camera=camera, echo_canceller=echo_canceller),
        name=name,
        role=role,
        ice=ice,
        defaults=defaults,
        issues_unlock_challenges=role == "door",
        ring_on_incoming=role == "indoor",
        turn=turn,
    )
