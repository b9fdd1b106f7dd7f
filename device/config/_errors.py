"""Refusing a configuration: `ConfigError` (file, key path, reason).

And the translation of pydantic's validation errors into key paths and reasons in plain words.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from device.config._entrance import TAGGED_TABLES
from device.config._models import PROXIMITY_KINDS
from hal.errors import CallboxError

__all__ = ["ConfigError", "validation_problems"]


class ConfigError(CallboxError):
    """A configuration was refused: the file, and for each problem the key path and reason.

    ``str()`` gives one line per problem, ``"<file>: <key>: <reason>"``.
    """

    def __init__(
        self,
        path: Path | None,
        key: str = "",
        reason: str = "",
        *,
        problems: Sequence[tuple[str, str]] = (),
    ) -> None:
        """One problem (`key`, `reason`), or several as `problems`."""
        self.path = path
        self.problems: tuple[tuple[str, str], ...] = tuple(problems) or ((key, reason),)
        super().__init__(str(self))

    @property
    def key(self) -> str:
        """The key path of the first problem ("" for the file as a whole)."""
        return self.problems[0][0]

    @property
    def reason(self) -> str:
        """The reason of the first problem."""
        return self.problems[0][1]

    def __str__(self) -> str:
        """One ``file: key: reason`` line per problem."""
        prefix = f"{self.path}: " if self.path is not None else ""
        return "\n".join(
            f"{prefix}{key}: {reason}" if key else f"{prefix}{reason}"
            for key, reason in self.problems
        )


def validation_problems(err: ValidationError, root: type[BaseModel]) -> list[tuple[str, str]]:
    """Each error of `err` (raised validating `root`) as (dotted key path, plain reason)."""
    return [_problem(error, root) for error in err.errors()]


_TYPE_WORDS: Final = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string in quotes",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
}
_RANGE_WORDS: Final = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def _problem(error: ErrorDetails, root: type[BaseModel]) -> tuple[str, str]:
    """A pydantic error as (dotted key path, reason in plain words)."""
    loc = error["loc"]
    parts = _without_union_tags([str(part) for part in loc if part != "[key]"])
    key, kind, ctx = ".".join(parts), error["type"], error.get("ctx", {})
    value = error["input"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        kinds = _TAGGED.get(next(p for p in reversed(parts) if not p.isdigit()), PROXIMITY_KINDS)
        return f"{key}.kind", "must be " + " or ".join(repr(k) for k in kinds)
    if kind == "extra_forbidden":
        return key, _unknown_key(loc, root)
    if kind == "missing":
        return key, "is required but missing"
    if kind in _TYPE_WORDS:
        return key, f"must be {_TYPE_WORDS[kind]}, not {_toml_type(value)}"
    if kind in _RANGE_WORDS:
        name, sign = _RANGE_WORDS[kind]
        return key, f"must be {sign} {_number(ctx[name])} (got {_number(value)})"
    if kind == "value_error":
        return key, str(ctx["error"])
    if kind == "literal_error":
        return key, f"must be {ctx['expected']}"
    if kind == "too_short":
        return key, f"must list at least {ctx['min_length']}"
    if kind == "finite_number":
        return key, "must be a finite number"
    return key, error["msg"]


_TAGGED: Final = {"proximity": PROXIMITY_KINDS, **TAGGED_TABLES}
"""Tables whose ``kind`` picks the model, and their kinds."""


def _without_union_tags(parts: list[str]) -> list[str]:
    """``keypad.matrix.rows`` -> ``keypad.rows``: drop the tag pydantic puts in the path."""
    out: list[str] = []
    table: str | None = None
    for part in parts:
        if table is not None and part in _TAGGED.get(table, ()):
            table = None
            continue
        out.append(part)
        if not part.isdigit():
            table = part
    return out


def _number(value: object) -> object:
    """30.0 as 30: bounds of float keys read as the installer wrote them."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _toml_type(value: object) -> str:
    """How TOML calls the type of `value` (never the value itself: it may be a password)."""
    for kind, words in ((bool, "a boolean"), (int, "an integer"), (float, "a float")):
        if isinstance(value, kind):
            return words
    names = {str: "a string", list: "an array", dict: "a table"}
    return next((words for kind, words in names.items() if isinstance(value, kind)), "a date/time")


def _unknown_key(loc: tuple[int | str, ...], root: type[BaseModel]) -> str:
    """Reason for an unknown key: the likely intended key, or the keys allowed there."""
    known = _known_keys(loc, root)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; allowed here: {', '.join(known)}"


def _known_keys(loc: tuple[int | str, ...], root: type[BaseModel]) -> list[str]:
    """The keys the table at `loc` (minus its last part) allows."""
    models: list[type[BaseModel]] = [root]
    for part in loc[:-1]:
        fields = {f.alias or n: f for m in models for n, f in m.model_fields.items()}
        if part in fields:
            models = _models_in(fields[part].annotation)
        elif tagged := [m for m in models if _kind_of(m) == part]:
            models = tagged
    return sorted({f.alias or n for m in models for n, f in m.model_fields.items()})


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _kind_of(model: type[BaseModel]) -> object:
    field = model.model_fields.get("kind")
    return field.default if field else None
