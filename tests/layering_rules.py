"""The checker behind tests/test_layering.py: every import of every module, read with `ast`.

It follows each import statement wherever it stands -- at module level, under
``if TYPE_CHECKING:``, inside a function or method -- and resolves relative imports, so a
type-only import of a higher layer or a lazy import of a hardware library in services/ is
seen as well as a plain top-level one. Three rules are checked:

* layers: ``device -> services -> hal``, never upward (whatever the kind of import);
* hardware libraries only inside hal/, and there only lazily (inside a function, or under
  ``if TYPE_CHECKING:``, which never runs): never at module level, never outside hal/;
* no import cycle within a tree (the module graph, TYPE_CHECKING imports included), reported
  as the path that closes the cycle.

Modules are discovered by walking the package trees, so moved or new files are covered.
"""

from __future__ import annotations

import ast
import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LAYERS: Mapping[str, frozenset[str]] = {
    "hal": frozenset(),
    "services": frozenset({"hal"}),
    "device": frozenset({"services", "hal"}),
}
"""Each layer and the layers it may import."""

HARDWARE_LIBRARIES = frozenset(
    {
        "picamera2",
        "libcamera",
        "alsaaudio",
        "RPi",
        "lgpio",
        "gpiozero",
        "smbus2",
        "pygame",
        "evdev",
        "adafruit_pn532",
        "adafruit_extended_bus",
        "busio",
        "digitalio",
        "board",
    }
)
"""Top-level packages that talk to hardware (or need a display): hal/ back-ends only, lazily."""


class Where(enum.Enum):
    """Where an import statement stands, which decides when it runs."""

    MODULE = "at module level"
    TYPE_CHECKING = "under TYPE_CHECKING"
    FUNCTION = "inside a function"


@dataclass(frozen=True, kw_only=True)
class Import:
    """One imported module as one statement of one module names it."""

    importer: str
    path: Path
    line: int
    target: str
    where: Where

    def describe(self) -> str:
        """``hal/x.py:3 imports gpiozero at module level``: where to look, and what."""
        return f"{self.path}:{self.line} imports {self.target} {self.where.value}"


def module_name(root: Path, path: Path) -> str:
    """The dotted name of the module in `path` (a file under `root`); a package is its folder."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def discover(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every module of the given top-level packages under `root`, by dotted name."""
    return {
        module_name(root, path): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }


def imports_of(root: Path, path: Path, known: Iterable[str] = ()) -> list[Import]:
    """Every import in the module at `path`, resolved to absolute module names.

    ``from package import name`` names ``package.name`` when that is one of the `known`
    modules (a submodule), else ``package`` itself.
    """
    importer = module_name(root, path)
    tree = ast.parse(path.read_text(), filename=str(path))
    collector = _Collector(
        importer=importer,
        path=path.relative_to(root),
        is_package=path.name == "__init__.py",
        known=frozenset(known),
    )
    collector.visit(tree)
    return collector.found


def layer_violations(imports: Iterable[Import]) -> list[str]:
    """The imports that break the layer or the hardware-library rule, described."""
    problems: list[str] = []
    for imp in imports:
        layer = imp.importer.split(".")[0]
        target_top = imp.target.split(".")[0]
        if target_top in LAYERS and target_top != layer and target_top not in LAYERS[layer]:
            problems.append(f"{imp.describe()}: {layer}/ may not import {target_top}/")
        if target_top in HARDWARE_LIBRARIES:
            if layer != "hal":
                problems.append(f"{imp.describe()}: hardware libraries belong in hal/ back-ends")
            elif imp.where is Where.MODULE:
                problems.append(f"{imp.describe()}: import it lazily, inside the function")
    return problems


def import_graph(imports: Iterable[Import], modules: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the modules it imports, restricted to `modules` (any kind of import)."""
    nodes = set(modules)
    graph: dict[str, set[str]] = {name: set() for name in nodes}
    for imp in imports:
        if imp.importer in nodes and imp.target in nodes:
            graph[imp.importer].add(imp.target)
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one, as a closed path.

    A path is ``[a, b, ..., a]``; components are found with Tarjan's algorithm and each is
    reported once, by a shortest cycle through its smallest module name.
    """
    return [
        _shortest_cycle(graph, min(component), component)
        for component in _components(graph)
        if len(component) > 1 or min(component) in graph[min(component)]
    ]


def format_cycle(path: Sequence[str]) -> str:
    """``a -> b -> a``."""
    return " -> ".join(path)


@dataclass
class _Collector(ast.NodeVisitor):
    """Walks one module's tree, recording each import with where it stands."""

    importer: str
    path: Path
    is_package: bool
    known: frozenset[str]

    def __post_init__(self) -> None:
        self.found: list[Import] = []
        self._where = Where.MODULE

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._inside(node, Where.FUNCTION)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._inside(node, Where.FUNCTION)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._inside(node, Where.FUNCTION)

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test) or self._where is Where.FUNCTION:
            self.generic_visit(node)
            return
        self.visit(node.test)
        saved, self._where = self._where, Where.TYPE_CHECKING
        for statement in node.body:
            self.visit(statement)
        self._where = saved
        for statement in node.orelse:
            self.visit(statement)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._absolute(node)
        for alias in node.names:
            submodule = f"{base}.{alias.name}" if base else alias.name
            self._add(node, submodule if submodule in self.known else base)

    def _inside(self, node: ast.AST, where: Where) -> None:
        saved, self._where = self._where, where
        self.generic_visit(node)
        self._where = saved

    def _absolute(self, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        package = self.importer.split(".") if self.is_package else self.importer.split(".")[:-1]
        if node.level - 1 > len(package) - 1:
            raise ValueError(f"{self.path}:{node.lineno}: relative import beyond the top package")
        base = package[: len(package) - (node.level - 1)]
        return ".".join([*base, node.module] if node.module else base)

    def _add(self, node: ast.stmt, target: str) -> None:
        self.found.append(
            Import(
                importer=self.importer,
                path=self.path,
                line=node.lineno,
                target=target,
                where=self._where,
            )
        )


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING`` (the only forms used to guard imports)."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _components(graph: Mapping[str, set[str]]) -> Iterator[set[str]]:
    """The strongly connected components of `graph` (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                yield component


def _shortest_cycle(graph: Mapping[str, set[str]], start: str, within: set[str]) -> list[str]:
    """A shortest path from `start` back to `start` inside the component `within` (BFS)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for succ in sorted(graph[node] & within):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if succ not in previous:
                    previous[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no cycle through {start} in its component")  # pragma: no cover
