"""services.ui.paint: where text goes for each anchor (pygame's Rect names, our own maths)."""

from __future__ import annotations

import pytest

from services.ui import Rect
from services.ui.paint import ANCHORS, anchored


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [
        ("topleft", Rect(100, 50, 31, 11)),
        ("midtop", Rect(85, 50, 31, 11)),
        ("topright", Rect(69, 50, 31, 11)),
        ("midleft", Rect(100, 45, 31, 11)),
        ("center", Rect(85, 45, 31, 11)),
        ("midright", Rect(69, 45, 31, 11)),
        ("bottomleft", Rect(100, 39, 31, 11)),
        ("midbottom", Rect(85, 39, 31, 11)),
        ("bottomright", Rect(69, 39, 31, 11)),
    ],
)
def test_the_anchor_point_of_the_box_is_the_position(anchor: str, expected: Rect) -> None:
    assert anchored((31, 11), anchor, (100, 50)) == expected


def test_every_anchor_is_tested_and_an_unknown_one_is_refused() -> None:
    assert len(ANCHORS) == 9
    with pytest.raises(ValueError, match="unknown anchor 'middle'"):
        anchored((1, 1), "middle", (0, 0))
