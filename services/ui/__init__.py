"""The default call UI drawn on an indoor unit's display (offscreen, on ``hal.canvas``).

``DefaultCallUi`` is driven only by the Call API; ``ScreenRenderer`` draws a ``UiState``;
``Layout`` says where every on-screen button is at any display size. ``NoticeScreen`` /
``render_notice`` draw a full-screen notice (title, reasons, what to do) for states without
the call UI, such as the daemon's safe state.
"""

from services.ui.callui import DefaultCallUi
from services.ui.layout import Layout, Rect
from services.ui.model import SCREENS, UiState
from services.ui.notice import Notice, NoticeLayout, NoticeRow, NoticeScreen, render_notice
from services.ui.screens import ScreenRenderer

__all__ = [
    "SCREENS",
    "DefaultCallUi",
    "Layout",
    "Notice",
    "NoticeLayout",
    "NoticeRow",
    "NoticeScreen",
    "Rect",
    "ScreenRenderer",
    "UiState",
    "render_notice",
]
