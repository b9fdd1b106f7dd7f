"""The layering checker catches each kind of forbidden import and accepts the allowed forms.

Throwaway modules are written to a package tree under tmp_path and checked with the same
functions tests/test_layering.py runs on the real tree.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from layering_rules import (
    LAYERS,
    Where,
    cycles,
    discover,
    format_cycle,
    import_graph,
    imports_of,
    layer_violations,
)


def _tree(root: Path, files: dict[str, str]) -> dict[str, Path]:
    """Write `files` (relative path -> source) plus every package's __init__.py."""
    for relative, source in files.items():
        path = root / relative
        for package in [root / part for part in [*path.relative_to(root).parents][:-1]]:
            package.mkdir(parents=True, exist_ok=True)
            (package / "__init__.py").touch()
        path.write_text(textwrap.dedent(source))
    return discover(root, LAYERS)


def _violations(root: Path, files: dict[str, str], module: str) -> list[str]:
    modules = _tree(root, files)
    return layer_violations(imports_of(root, modules[module], modules))


FORBIDDEN = {
    "upward at top level": ("hal/camera.py", "import services.media\n"),
    "upward from-import": ("services/media/x.py", "from device.app import App\n"),
    "upward under TYPE_CHECKING": (
        "services/media/x.py",
        """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from device.app import App
        """,
    ),
    "upward under typing.TYPE_CHECKING": (
        "hal/x.py",
        """
        import typing
        if typing.TYPE_CHECKING:
            import services.tasks
        """,
    ),
    "upward in a function": (
        "services/media/x.py",
        """
        def f() -> None:
            from device import app
        """,
    ),
    "upward in a method": (
        "hal/x.py",
        """
        class C:
            async def m(self) -> None:
                import device.cli
        """,
    ),
    "hardware library in services at module level": ("services/media/x.py", "import gpiozero\n"),
    "hardware library in services in a function": (
        "services/media/x.py",
        """
        def f() -> None:
            from RPi import GPIO
        """,
    ),
    "hardware library in services under TYPE_CHECKING": (
        "services/ui/x.py",
        """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            import pygame
        """,
    ),
    "hardware library in device in a function": (
        "device/x.py",
        "def f() -> None:\n    import picamera2\n",
    ),
    "hardware library at module level in hal": ("hal/x.py", "import alsaaudio\n"),
    "hardware library submodule at module level in hal": (
        "hal/x.py",
        "from gpiozero.pins.mock import MockFactory\n",
    ),
    "hardware library at module level in hal, in a class body": (
        "hal/x.py",
        "class C:\n    import lgpio\n",
    ),
    "hardware library at module level in hal, in the else of TYPE_CHECKING": (
        "hal/x.py",
        """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            pass
        else:
            import smbus2
        """,
    ),
}


@pytest.mark.parametrize("case", sorted(FORBIDDEN))
def test_fail__forbidden_import_is_reported(tmp_path: Path, case: str) -> None:
    relative, source = FORBIDDEN[case]
    module = relative.removesuffix(".py").replace("/", ".")
    violations = _violations(tmp_path, {relative: source}, module)
    assert len(violations) == 1, violations
    assert violations[0].startswith(relative), violations


ALLOWED = {
    "downward at top level": ("device/x.py", "import services.tasks\nfrom hal import errors\n"),
    "downward under TYPE_CHECKING": (
        "services/media/x.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from hal.camera import Camera\n",
    ),
    "same layer, relative": ("services/media/x.py", "from . import y\nfrom ..ui import z\n"),
    "hardware library in hal in a function": (
        "hal/x.py",
        "def open_pin() -> None:\n    import gpiozero\n    from RPi import GPIO\n",
    ),
    "hardware library in hal in a method": (
        "hal/x.py",
        "class Camera:\n    def start(self) -> None:\n        from picamera2 import Picamera2\n",
    ),
    "hardware library in hal under TYPE_CHECKING (never runs)": (
        "hal/x.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import alsaaudio\n",
    ),
    "other libraries anywhere": ("services/media/x.py", "import aiortc\nimport numpy as np\n"),
    "a name that only starts like a hardware library": ("services/x.py", "import pygments\n"),
}


@pytest.mark.parametrize("case", sorted(ALLOWED))
def test_ok__allowed_import_is_accepted(tmp_path: Path, case: str) -> None:
    relative, source = ALLOWED[case]
    module = relative.removesuffix(".py").replace("/", ".")
    assert _violations(tmp_path, {relative: source}, module) == []


def test_ok__imports_are_found_where_they_stand(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "services/media/x.py": """
                from typing import TYPE_CHECKING
                import hal.camera
                from . import y
                if TYPE_CHECKING:
                    from .z import Z
                def f() -> None:
                    from ..ui import w
            """,
            "services/media/y.py": "",
            "services/media/z.py": "",
            "services/ui/w.py": "",
        },
    )
    found = {
        (imp.target, imp.where)
        for imp in imports_of(tmp_path, modules["services.media.x"], modules)
    }
    assert found == {
        ("typing", Where.MODULE),
        ("hal.camera", Where.MODULE),
        ("services.media.y", Where.MODULE),
        ("services.media.z", Where.TYPE_CHECKING),
        ("services.ui.w", Where.FUNCTION),
    }


def _cycles(root: Path, files: dict[str, str]) -> list[str]:
    modules = _tree(root, files)
    imports = [imp for path in modules.values() for imp in imports_of(root, path, modules)]
    return [format_cycle(cycle) for cycle in cycles(import_graph(imports, modules))]


def test_fail__two_module_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    found = _cycles(
        tmp_path,
        {
            "services/a/one.py": "from services.a.two import X\n",
            "services/a/two.py": "def f() -> None:\n    from services.a import one\n",
        },
    )
    assert found == ["services.a.one -> services.a.two -> services.a.one"]


def test_fail__cycle_through_type_checking_and_relative_imports_is_reported(
    tmp_path: Path,
) -> None:
    found = _cycles(
        tmp_path,
        {
            "services/a/one.py": "from .two import X\n",
            "services/a/two.py": "from . import three\n",
            "services/a/three.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .one import Y\n"
            ),
        },
    )
    assert found == ["services.a.one -> services.a.two -> services.a.three -> services.a.one"]


def test_fail__self_import_is_a_cycle(tmp_path: Path) -> None:
    assert _cycles(tmp_path, {"services/a.py": "def f() -> None:\n    import services.a\n"}) == [
        "services.a -> services.a"
    ]


def test_ok__imports_without_a_cycle_are_accepted(tmp_path: Path) -> None:
    found = _cycles(
        tmp_path,
        {
            "services/a/one.py": "from .two import X\nfrom . import three\n",
            "services/a/two.py": "from .three import Z\n",
            "services/a/three.py": "import services.b\n",
            "services/b.py": "import hal.x\n",
            "hal/x.py": "",
        },
    )
    assert found == []
