"""The layering rule: imports flow device -> services -> hal.

Hardware libraries are imported lazily inside hal/ only, services/ has no import cycle, and
every module imports on a machine without the hardware libraries.

Every import is followed (module level, under ``if TYPE_CHECKING:``, inside functions,
relative ones): see tests/layering_rules.py, whose own tests are in
tests/test_layering_rules.py. Modules are found by walking the trees.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from layering_rules import (
    LAYERS,
    cycles,
    discover,
    format_cycle,
    import_graph,
    imports_of,
    layer_violations,
)

ROOT = Path(__file__).resolve().parents[1]
MODULES = discover(ROOT, LAYERS)
SERVICES = sorted(name for name in MODULES if name.split(".")[0] == "services")
_PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def _group(module: str) -> str:
    """``services.media`` for a module of that package; ``services`` for a top-level one."""
    package = ".".join(module.split(".")[:2])
    return package if package in _PACKAGES else "services"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports_only_lower_layers_and_hardware_only_lazily_in_hal(name: str) -> None:
    violations = layer_violations(imports_of(ROOT, MODULES[name], MODULES))
    assert not violations, "\n".join(violations)


@pytest.mark.parametrize("group", sorted({_group(name) for name in SERVICES}))
def test_services_have_no_import_cycle(group: str) -> None:
    """A cycle fails the test of every package (or the top level) it passes through."""
    imports = [imp for name in SERVICES for imp in imports_of(ROOT, MODULES[name], MODULES)]
    found = [
        cycle
        for cycle in cycles(import_graph(imports, SERVICES))
        if any(_group(module) == group for module in cycle)
    ]
    assert not found, "import cycles:\n" + "\n".join(format_cycle(cycle) for cycle in found)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports_on_this_machine(name: str) -> None:
    importlib.import_module(name)
