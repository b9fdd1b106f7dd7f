"""Contacts: who may talk to this endpoint, with their pinned public keys and rights.

Keys are pinned like Signal does: a known contact whose key changes is refused
(``KEY_CHANGED``) until a person confirms the new key with :meth:`ContactBook.trust`.
Only a signed profile (services/signaling/profile.py) can say that a pinned contact's key
changed, and it is said once per new key: a second login on the contact's broker account,
a presence flap or an unsigned or forged profile never does. With ``first_use`` pinning,
an unknown sender whose retained profile advertises keys is pinned on its first message;
without it, unknown senders are refused.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from services.signaling.errors import KeyChangedError, SignalingError
from services.signaling.identity import PublicKeys
from services.signaling.topics import valid_name

_log = logging.getLogger(__name__)

LEAVING_S = 3600.0
"""How long a contact removed by a newer site directory may still finish a call in progress."""

_MAX_ANNOUNCED = 16
"""New keys remembered per contact as already announced (then the memory starts anew)."""


class Right(enum.Enum):
    """What a contact may do beyond calling."""

    UNLOCK = "unlock"
    MONITOR = "monitor"


@dataclass(frozen=True)
class Contact:
    """One peer: its address, display name, pinned keys, rights and whether it is blocked."""

    address: str
    keys: PublicKeys
    name: str = ""
    role: str = ""
    rights: frozenset[Right] = frozenset()
    blocked: bool = False
    flat: str = ""
    """The flat it belongs to (site directory entries): a door's ``flat:<flat>`` target."""
    source: str = "config"
    """Who pinned it: "config" (``[[contacts]]``), "directory" (the signed site directory) or
    "trusted" (first use, or a person's `callbox keys trust` at run time)."""

    def __post_init__(self) -> None:
        valid_name("contact address", self.address)


@dataclass
class ContactBook:
    """The pinned contacts of one endpoint, plus keys seen in profiles but not yet trusted."""

    contacts: dict[str, Contact] = field(default_factory=dict)
    first_use: bool = False
    advertised: dict[str, PublicKeys] = field(default_factory=dict)
    _announced: dict[str, set[str]] = field(default_factory=dict, repr=False)
    """Per contact, the fingerprints of new keys already announced as "key changed"."""
    _leaving: dict[str, tuple[Contact, float]] = field(default_factory=dict, repr=False)
    """Contacts a newer site directory removed, with when they stop finishing their calls."""
    on_change: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    """Called after a contact was added or removed (the endpoint follows its contacts' presence)."""

    def __setattr__(self, name: str, value: object) -> None:
        """Replacing ``contacts`` or switching ``first_use`` tells :attr:`on_change` too."""
        changed = name in ("contacts", "first_use") and getattr(self, name, value) is not value
        super().__setattr__(name, value)
        if changed:
            self._changed()

    def add(self, contact: Contact) -> None:
        """Pin a contact (an installer's or administrator's decision)."""
        known = contact.address in self.contacts
        self.contacts[contact.address] = contact
        if not known:
            self._changed()

    def remove(self, address: str) -> Contact | None:
        """Forget the contact at ``address`` (the one removed, or None if there was none)."""
        contact = self.contacts.pop(address, None)
        self.advertised.pop(address, None)
        self._announced.pop(address, None)
        if contact is not None:
            self._changed()
        return contact

    def addresses(self, *, source_not: str = "") -> frozenset[str]:
        """The addresses of every contact (but those whose ``source`` is ``source_not``)."""
        return frozenset(
            a for a, c in self.contacts.items() if not source_not or c.source != source_not
        )

    def _changed(self) -> None:
        if getattr(self, "on_change", None) is not None:
            assert self.on_change is not None
            self.on_change()

    def get(self, address: str) -> Contact | None:
        """The contact at ``address``, or None."""
        return self.contacts.get(address)

    def trust(self, address: str, keys: PublicKeys) -> Contact:
        """Confirm ``keys`` for ``address`` (first pin, or re-confirmation after a key change)."""
        current = self.contacts.get(address)
        contact = (
            replace(current, keys=keys)
            if current
            else Contact(address=address, keys=keys, source="trusted")
        )
        self.contacts[address] = contact
        self._announced.pop(address, None)
        _log.info("trusted %s with key %s", address, keys.fingerprint())
        if current is None:
            self._changed()
        return contact

    def use_directory(self, contacts: Iterable[Contact]) -> None:
        """Make ``contacts`` (an accepted site directory) the book's directory contacts.

        Those of an earlier directory that are not listed any more are removed (a call in
        progress keeps going; no new message of theirs is accepted). A contact pinned by the
        unit's own configuration (``[[contacts]]``) wins over an entry for the same address:
        the installer who set up this unit decided it here, and a directory (a stolen admin
        key) must not change what the unit's own configuration pins. Contacts trusted at run
        time are replaced by the directory's entry.
        """
        listed = {c.address: c for c in contacts}
        now = time.monotonic()
        self._leaving = {a: v for a, v in self._leaving.items() if v[1] > now and a not in listed}
        for address, pinned in list(self.contacts.items()):
            if pinned.source == "directory" and address not in listed:
                del self.contacts[address]
                # no rights, and only the messages of a call already under way (see endpoint)
                self._leaving[address] = (replace(pinned, rights=frozenset()), now + LEAVING_S)
                _log.info("%s left the site directory: no longer a contact", address)
        for address, contact in listed.items():
            current = self.contacts.get(address)
            if current is not None and current.source == "config":
                if current.keys != contact.keys:
                    _log.warning(
                        "the site directory gives %s key %s; [[contacts]] pins %s, which wins",
                        address,
                        contact.keys.fingerprint(),
                        current.keys.fingerprint(),
                    )
                continue
            if current is not None and current.blocked:
                contact = replace(contact, blocked=True)
            self.contacts[address] = contact
            self._announced.pop(address, None)
        self._changed()

    def leaving(self, address: str) -> Contact | None:
        """A contact a newer site directory removed less than LEAVING_S ago, or None.

        Not a contact (:meth:`get` says None: no new call, no rights); the endpoint lets it
        finish a call already in progress (every call message but an invite).
        """
        entry = self._leaving.get(address)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def in_flat(self, flat: str) -> list[str]:
        """The ring group of ``flat``: the indoor units and phones of that flat, by address."""
        return sorted(
            c.address
            for c in self.contacts.values()
            if c.flat == flat and c.role in ("indoor", "web")  # directory.RINGABLE
        )

    def block(self, address: str, blocked: bool = True) -> None:
        """Block (or unblock) a contact: its calls are answered BLOCKED."""
        contact = self.contacts.get(address)
        if contact is None:
            raise SignalingError(f"cannot block {address!r}: not a contact")
        self.contacts[address] = replace(contact, blocked=blocked)

    def saw_profile(self, address: str, keys: PublicKeys, *, signed: bool) -> None:
        """Remember the keys a retained profile advertises.

        For a pinned contact, other keys count only from a ``signed`` profile (one signed by
        the key it advertises): that is a key change, warned about once per new key. An
        unsigned profile with other keys is ignored (anyone with the contact's broker login
        can publish one); the same keys again, or a profile republished after a
        reconnection, say nothing.
        """
        contact = self.contacts.get(address)
        if contact is None or contact.keys == keys:
            self.advertised[address] = keys
            return
        if not signed:
            if self._first_time(address, f"unsigned {keys.fingerprint()}"):
                _log.info(
                    "an unsigned profile of %s advertises keys %s, not the pinned %s: "
                    "ignored (only a signed profile can change a key)",
                    address,
                    keys.fingerprint(),
                    contact.keys.fingerprint(),
                )
            return
        self.advertised[address] = keys
        if self._first_time(address, keys.fingerprint()):
            _log.warning(
                "key changed for %s: pinned %s, now advertised %s; refused until confirmed",
                address,
                contact.keys.fingerprint(),
                keys.fingerprint(),
            )

    def _first_time(self, address: str, what: str) -> bool:
        """True the first time ``what`` is announced for ``address`` (bounded memory)."""
        announced = self._announced.setdefault(address, set())
        if what in announced:
            return False
        if len(announced) >= _MAX_ANNOUNCED:
            announced.clear()
        announced.add(what)
        return True

    def keys_for_sender(self, address: str, *, pin: bool = True) -> PublicKeys | None:
        """The pinned keys to verify ``address``'s messages with, pinning on first use if allowed.

        Returns None for an unknown sender that may not be pinned. With ``pin=False`` the
        advertised keys of such a sender are returned but not pinned yet: the receiver pins
        them (:meth:`trust`) once a message verified with them, so a forgery pins nothing.
        """
        contact = self.contacts.get(address)
        if contact is not None:
            return contact.keys
        advertised = self.advertised.get(address)
        if self.first_use and advertised is not None:
            return self.trust(address, advertised).keys if pin else advertised
        return None

    def check_key_change(self, address: str) -> None:
        """Raise KeyChangedError if the profile of a pinned contact advertises other keys."""
        contact = self.contacts.get(address)
        advertised = self.advertised.get(address)
        if contact is not None and advertised is not None and advertised != contact.keys:
            raise KeyChangedError(address, contact.keys.fingerprint(), advertised.fingerprint())
