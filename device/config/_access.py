"""``[access]``: keypad access codes and cards open the door (a door station; issue 19).

Its own module so the section and its rules across keys stay together
(docs/operations.md, "Access codes and cards"). The codes and cards themselves are not in
``callbox.toml`` but in ``<state_dir>/access.json`` (``callbox access``), hashed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt

from device.config._apply import Apply
from device.config._models import Section
from services.access import LockoutPolicy

if TYPE_CHECKING:
    from device.config._file import CallboxConfig


class AccessConfig(Section):
    """``[access]``: codes and cards, the lockout after wrong ones, the keypad's entry pause.

    ``max_attempts`` wrong codes in a row lock the keypad for ``lockout_s``, doubled at each
    further lockout up to ``lockout_max_s`` (unknown cards lock the card readers the same
    way). A change rebuilds the call service and the entrance once no call is in progress.

    ``mode``: ``card_or_code`` (either opens) or ``card_and_code`` (a resident's card, then
    the same resident's code within ``second_factor_s``; a visitor's code opens alone;
    `services.access.second_factor`).
    """

    APPLY = Apply.DEVICES
    enabled: StrictBool = False
    max_attempts: StrictInt = Field(default=3, ge=1, le=20)
    lockout_s: StrictFloat = Field(default=30.0, gt=0, le=3600, allow_inf_nan=False)
    lockout_max_s: StrictFloat = Field(default=900.0, gt=0, le=86_400, allow_inf_nan=False)
    entry_timeout_s: StrictFloat = Field(default=10.0, ge=2, le=120, allow_inf_nan=False)
    mode: Literal["card_or_code", "card_and_code"] = "card_or_code"
    second_factor_s: StrictFloat = Field(default=10.0, ge=2, le=120, allow_inf_nan=False)

    def policy(self) -> LockoutPolicy:
        """The lockout policy of `services.access`."""
        return LockoutPolicy(
            max_attempts=self.max_attempts,
            lockout_s=self.lockout_s,
            lockout_max_s=self.lockout_max_s,
        )


def access_problems(config: CallboxConfig) -> Iterator[tuple[str, str]]:
    """The cross-key problems of ``[access]`` (see `device.config._rules`)."""
    access = config.access
    if access.lockout_max_s < access.lockout_s:
        yield "access.lockout_max_s", f"is less than lockout_s ({access.lockout_s:g} s)"
    if access.enabled and config.role != "door":
        yield "access.enabled", "only a door station opens its door with codes and cards"
    if access.enabled and config.relay is None and config.board != "sim":
        yield "access.enabled", "needs a door relay ([relay]) to open the door"
    if access.enabled and access.mode == "card_and_code":
        if config.keypad is None:
            yield "access.mode", "card_and_code needs a keypad ([keypad]) to type the code"
        if not config.card_readers:
            yield "access.mode", "card_and_code needs a card reader ([[card_readers]])"
