"""Names of a package imported on first use (PEP 562), so a light import stays light.

``callbox config get`` needs the configuration schema, not aiortc: a package whose
``__init__`` re-exports its heavy modules' names (the Call API, the daemon) hands them out
through :func:`lazy_exports` instead, and lists them under ``if TYPE_CHECKING:`` for
type checkers and readers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``homes`` maps each name to its submodule."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{home}")
        return getattr(module, name)

    return __getattr__
