"""Access codes and cards: who may open the door without a call (issue 19).

- `store`: ``<state_dir>/access.json`` (0600, atomic, file-locked), shared with the CLI;
- `kdf`: codes and cards hashed with scrypt, never stored in clear;
- `entries`: one code or card, its validity window, one-time use and weekly schedule;
- `lockout`: wrong attempts in a row lock for a growing time, across restarts;
- `control`: `AccessControl`, the timing-independent check, its log and history;
- `second_factor`: card and code, the card waiting for its resident's code;
- `enroll`: the PIN rules and ``callbox access add | remove``;
- `keypad_entry`: `KeypadEntry`, the keypad grammar (dial codes and access codes).

No door logic: `services.intercom.entrance` opens the door on a grant.
"""

from services.access.control import LOCKED, AccessAttempt, AccessControl, AccessDecision
from services.access.entries import AccessEntry, EntryKind
from services.access.errors import AccessError, AccessStoreError, EnrollError
from services.access.keypad_entry import EntryResult, EntryType, KeypadEntry
from services.access.lockout import LockoutPolicy, LockoutState
from services.access.second_factor import CARD_AND_CODE, CARD_OR_CODE, MODES, SecondFactor
from services.access.store import FILE_NAME, AccessList, AccessStore

__all__ = [
    "CARD_AND_CODE",
    "CARD_OR_CODE",
    "FILE_NAME",
    "LOCKED",
    "MODES",
    "AccessAttempt",
    "AccessControl",
    "AccessDecision",
    "AccessEntry",
    "AccessError",
    "AccessList",
    "AccessStore",
    "AccessStoreError",
    "EnrollError",
    "EntryKind",
    "EntryResult",
    "EntryType",
    "KeypadEntry",
    "LockoutPolicy",
    "LockoutState",
    "SecondFactor",
]
