"""How a change to each key of ``callbox.toml`` is put in force by a running daemon.

The schema declares it, not a list kept elsewhere: a section (a `Section` model) sets
``APPLY`` for every key in it, and a single key may carry its own with
``Annotated[type, Apply.X]``. A key that declares nothing takes the way of the section (or
field) it is in. The reload reads the declarations through `apply_of`; a key that has none
at all is rebuilt as a whole endpoint (never taken for live and silently left unapplied),
and a test walks `schema_keys` so that no key ships without one.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, Final

from pydantic import BaseModel

__all__ = ["Apply", "declared_keys", "strongest", "way_under"]


class Apply(enum.Enum):
    """How a running daemon applies a changed configuration key (``callbox config set``, SIGHUP)."""

    FIRST_BOOT = "first boot"
    """Applied by first boot only (the operating system: ``[system]``); the daemon ignores it."""
    LIVE = "live"
    """At once, without dropping a call (the next call, the next press, the next log line)."""
    DEVICES = "devices"
    """The GPIO devices and the call service are rebuilt once no call is in progress; the
    broker connection, the media devices and the call log stay."""
    ENDPOINT = "endpoint"
    """The whole endpoint is rebuilt once no call is in progress: identity, broker login,
    announced profile, media devices."""


_RANK: Final = {Apply.FIRST_BOOT: 0, Apply.LIVE: 1, Apply.DEVICES: 2, Apply.ENDPOINT: 3}


def strongest(ways: Iterable[Apply]) -> Apply | None:
    """The way that rebuilds the most among ``ways`` (None for none): it covers the others."""
    return max(ways, key=_RANK.__getitem__, default=None)


def declared_keys(model: type[BaseModel]) -> dict[str, Apply | None]:
    """Every key of ``model``'s schema, nested ones included, and how a change to it applies.

    Keys are dotted TOML paths; ``*`` stands for any name of a map (``leds.*.pin``) or any
    entry of an array of tables (``contacts.*.sign_key``). None: the key declares nothing and
    neither does anything around it.
    """
    return dict(_walk(model, "", _own_apply(model)))


def way_under(keys: Mapping[str, Apply | None], key: str) -> Apply:
    """How a change to ``key`` applies, given every key's declaration (`declared_keys`).

    The way that rebuilds the most among those of the key and every key under it; a key
    with no declaration, or with an undeclared key under it, rebuilds the whole endpoint:
    no change is taken for live and silently never applied.
    """
    ways = [way for path, way in keys.items() if path == key or path.startswith(key + ".")]
    declared = [way for way in ways if way is not None]
    if not ways or len(declared) < len(ways):
        return Apply.ENDPOINT
    return strongest(declared) or Apply.ENDPOINT


def _walk(
    model: type[BaseModel], prefix: str, inherited: Apply | None
) -> Iterator[tuple[str, Apply | None]]:
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        nested = list(_models_in(field.annotation))
        own = [m for m in field.metadata if isinstance(m, Apply)]
        sections = [a for _, m in nested if (a := _own_apply(m)) is not None]
        way = strongest(own) or strongest(sections) or inherited
        yield key, way
        for suffix, sub in nested:
            yield from _walk(sub, f"{key}{suffix}.", _own_apply(sub) or way)


def _own_apply(model: type[BaseModel]) -> Apply | None:
    way = getattr(model, "APPLY", None)
    return way if isinstance(way, Apply) else None


def _models_in(annotation: Any, suffix: str = "") -> Iterator[tuple[str, type[BaseModel]]]:
    """The models a field's type holds, each with the key suffix that reaches it."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        yield from _models_in(args[0], suffix)
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _models_in(arg, suffix)
    elif origin in (tuple, list):
        yield from _models_in(args[0], suffix + ".*")
    elif origin is dict:
        yield from _models_in(args[1], suffix + ".*")
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield suffix, annotation
