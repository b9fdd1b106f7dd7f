"""The layout of ``device/``: subpackages by job, each used through its small public surface.

A module of one subpackage reaches another subpackage only through that package's
``__init__`` and only for names its ``__all__`` lists; private modules (``_name.py``) stay
private to their package. The shipped packages never import the test harnesses.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVICE = ROOT / "device"
SUBPACKAGES = sorted(p.parent.name for p in DEVICE.glob("*/__init__.py"))
SHIPPED = ("device", "services", "hal")


def device_modules() -> list[Path]:
    return sorted(DEVICE.rglob("*.py"))


def imports_of(path: Path) -> list[ast.ImportFrom | ast.Import]:
    """Every import statement of the module, lazy ones inside functions included."""
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom | ast.Import)]


def package_of(path: Path) -> str | None:
    parts = path.relative_to(DEVICE).parts
    return parts[0] if len(parts) > 1 else None


def test_device_is_split_into_subpackages() -> None:
    assert SUBPACKAGES == ["cli", "config", "daemon", "firstboot", "phone", "simulator"]
    loose = sorted(p.name for p in DEVICE.glob("*.py") if p.name != "__init__.py")
    assert not loose, f"modules outside a subpackage: {loose}"


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_subpackage_has_a_docstring_and_an_explicit_public_surface(name: str) -> None:
    package = importlib.import_module(f"device.{name}")
    assert package.__doc__ and package.__doc__.strip()
    exported = getattr(package, "__all__", None)
    assert exported, f"device.{name} lists no __all__"
    missing = [n for n in exported if not hasattr(package, n)]
    assert not missing, f"device.{name}.__all__ names what it does not have: {missing}"


@pytest.mark.parametrize("path", device_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_another_subpackage_is_used_only_through_its_public_names(path: Path) -> None:
    own = package_of(path)
    for node in imports_of(path):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        parts = node.module.split(".")
        if parts[0] != "device" or len(parts) < 2 or parts[1] == own:
            continue
        where = f"{path.relative_to(ROOT)}:{node.lineno}"
        assert len(parts) == 2, f"{where} reaches into {node.module}; import from device.{parts[1]}"
        exported = importlib.import_module(node.module).__all__
        private = [a.name for a in node.names if a.name not in exported]
        assert not private, f"{where} uses {private}, not in device.{parts[1]}.__all__"


def test_shipped_code_never_imports_the_test_harnesses() -> None:
    offenders = []
    for path in sorted(p for layer in SHIPPED for p in (ROOT / layer).rglob("*.py")):
        for node in imports_of(path):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            if any((name or "").split(".")[0] in ("harness", "tests", "support") for name in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"shipped modules import a test harness: {offenders}"
