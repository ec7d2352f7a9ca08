"""The plan of the code, checked from its source: the import graph of mailflow/, routing/, stores/
and bench/ has no cycle and respects the layers; no module is over 400 lines; no SQL is
executed in mailflow/ or routing/ (only stores/ of the lab runs it). Reads only source files;
imports nothing it checks.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mailflow", "routing", "stores", "bench")
# Lower layers first: a module may import its own layer and those before it, never a later one.
LAYERS = ("stores", "routing", "mailflow")
MAX_LINES = 400

Graph = Mapping[str, Iterable[str]]


def module_files(packages: Iterable[str] = PACKAGES, *, only_packages: bool = True
                 ) -> dict[str, Path]:
    """Dotted module name → source file, for every .py file under the given top folders.

    With ``only_packages``, a folder without an ``__init__.py`` is left out: its files are
    scripts, not modules that can import each other."""
    found: dict[str, Path] = {}
    for top in packages:
        folder = ROOT / top
        if only_packages and not (folder / "__init__.py").exists():
            continue
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every dotted name a module imports, anywhere in it.

    ``ast.walk`` visits the whole tree, so imports inside functions and under
    ``if TYPE_CHECKING:`` count too. Those under TYPE_CHECKING are kept on purpose: a type
    that one module needs from another that imports it back is the same knot, only hidden from
    the interpreter (mypy and the reader still follow it); the fix is a protocol in the lower
    module, which is what the redesign asks for. ``from pkg import name`` yields both
    ``pkg.name`` and ``pkg``; :func:`resolve` keeps whichever is a module."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            names.add(f"{source}#" + ",".join(alias.name for alias in node.names))
    return names


def resolve(names: Iterable[str], known: Iterable[str]) -> set[str]:
    """The known modules that importing ``names`` depends on.

    ``a.b.c`` is the deepest known module of its prefixes; ``pkg#x,y`` (from pkg import x, y)
    is ``pkg.x`` where that is a module, else ``pkg`` itself (x is a name defined in it).
    The parent packages the interpreter runs on the way to ``a.b.c`` are not edges: else the
    ``mailflow.cli`` package, which re-exports ``main`` for the ``mailflow.cli:main`` entry
    point, would be in a cycle with every command module. A package counts when its own names
    are imported (``from pkg import name``, ``import pkg``)."""
    modules = set(known)

    def deepest(name: str) -> str | None:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in modules:
                return candidate
        return None

    found: set[str] = set()
    for name in names:
        source, _, members = name.partition("#")
        targets = [f"{source}.{m}" for m in members.split(",")] if members else [source]
        for target in targets:
            hit = target if target in modules else deepest(source)
            if hit is not None:
                found.add(hit)
    return found


def import_graph(packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    files = module_files(packages)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        names = imported_names(tree, module, path.name == "__init__.py")
        graph[module] = resolve(names, files) - {module}
    return graph


def knots(graph: Graph) -> list[list[str]]:
    """The strongly connected sets of ``graph`` (Tarjan): modules that all reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            knot: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                knot.append(member)
                if member == node:
                    break
            if len(knot) > 1 or node in graph.get(node, ()):
                found.append(sorted(knot))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle (a path that ends where it starts) per knot: the shortest through its first
    module, which is where a reader starts untying it."""
    return [_shortest_cycle(graph, knot) for knot in knots(graph)]


def _shortest_cycle(graph: Graph, knot: list[str]) -> list[str]:
    start, members = knot[0], set(knot)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for succ in sorted(graph.get(node, ())):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if succ in members and succ not in came_from:
                    came_from[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"{knot} is not a knot")  # Tarjan only yields strongly connected sets


def layer_violations(graph: Graph) -> list[str]:
    def layer(module: str) -> int | None:
        top = module.split(".", 1)[0]
        return LAYERS.index(top) if top in LAYERS else None

    found = []
    for module, targets in sorted(graph.items()):
        own = layer(module)
        for target in sorted(targets):
            other = layer(target)
            if own is not None and other is not None and other > own:
                found.append(f"{module} imports {target} (a higher layer)")
    return found


# -- the checks on this repository ---------------------------------------------------------------


def test_no_module_imports_itself_back() -> None:
    graph = import_graph()
    found = [f"  {len(knot)} modules that import each other: {', '.join(knot)}\n"
             f"    for example {' -> '.join(_shortest_cycle(graph, knot))}"
             for knot in knots(graph)]
    assert not found, "import cycles (function-level and TYPE_CHECKING imports included):\n" + \
        "\n".join(found)


def test_lower_layers_never_import_higher_ones() -> None:
    found = layer_violations(import_graph())
    assert not found, "stores < routing < mailflow:\n" + "\n".join("  " + v for v in found)


def test_no_module_is_over_400_lines() -> None:
    too_long = {
        str(path.relative_to(ROOT)): lines
        for path in module_files(only_packages=False).values()
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_no_sql_is_executed_outside_stores() -> None:
    grep = shutil.which("grep")
    if grep is None:
        pytest.skip("grep is not installed")
    # The acceptance line of issue 15, as written there.
    found = subprocess.run([grep, "-rnE", r"\.execute(many|script)?\(", "mailflow", "routing"],
                           cwd=ROOT, capture_output=True, text=True, check=False)
    assert found.returncode in (0, 1), found.stderr
    lines = found.stdout.splitlines()
    assert not lines, f"{len(lines)} SQL calls outside stores/:\n" + found.stdout


# -- the checks check: they see what they are meant to see ----------------------------------------


def test_the_detector_finds_a_cycle_when_one_is_added() -> None:
    acyclic = {"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a"}}
    assert cycles(acyclic) == []
    assert cycles({**acyclic, "c": {"d"}}) == [["a", "c", "d", "a"]]  # the shortest way round
    assert cycles({"a": {"a"}}) == [["a", "a"]]
    two = cycles({"a": {"b"}, "b": {"a"}, "x": {"y"}, "y": {"z"}, "z": {"x"}})
    assert two == [["a", "b", "a"], ["x", "y", "z", "x"]]


def test_imports_in_functions_relative_ones_and_type_checking_ones_all_count() -> None:
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from .. import helpers\n"
        "from .sibling import thing\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.typed import Shape\n"
        "def late() -> None:\n"
        "    import pkg.inner.deep\n"
        "    from pkg.top import name\n"
    )
    known = ["pkg", "pkg.inner", "pkg.inner.sibling", "pkg.inner.deep", "pkg.inner.me",
             "pkg.helpers", "pkg.typed", "pkg.top"]
    names = imported_names(ast.parse(source), "pkg.inner.me", is_package=False)
    assert resolve(names, known) == {"pkg.inner.sibling", "pkg.helpers", "pkg.typed",
                                     "pkg.inner.deep", "pkg.top"}
    # In a package's __init__, "." is the package itself.
    names = imported_names(ast.parse("from . import sibling\n"), "pkg.inner", is_package=True)
    assert resolve(names, known) == {"pkg.inner.sibling"}


def test_a_lower_layer_importing_a_higher_one_is_reported() -> None:
    graph = {"stores.db": {"routing.queues"}, "routing.queues": {"mailflow.metrics"},
             "mailflow.metrics": {"stores.db", "routing.queues"}}
    assert layer_violations(graph) == [
        "routing.queues imports mailflow.metrics (a higher layer)",
        "stores.db imports routing.queues (a higher layer)",
    ]
