"""The layering rule: imports flow device -> services -> hal.

Hardware libraries are imported lazily inside hal/ only, and every module imports on a machine
without them.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"hal": set(), "services": {"hal"}, "device": {"services", "hal"}}
HARDWARE_LIBRARIES = {"picamera2", "libcamera", "alsaaudio", "RPi", "lgpio", "gpiozero", "smbus2"}


def modules() -> list[Path]:
    return sorted(p for layer in LAYERS for p in (ROOT / layer).rglob("*.py"))


def top_level_imports(path: Path) -> set[str]:
    """Packages imported at module level (not inside functions: those are lazy)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_imports_only_lower_layers_and_no_hardware_library(path: Path) -> None:
    layer = path.relative_to(ROOT).parts[0]
    imported = top_level_imports(path)
    higher = {other for other in LAYERS if other != layer and other not in LAYERS[layer]}
    assert not imported & higher, f"{path} imports a higher layer: {imported & higher}"
    assert not imported & HARDWARE_LIBRARIES, f"{path} imports hardware at module level"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_imports_on_this_machine(path: Path) -> None:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    importlib.import_module(name)
