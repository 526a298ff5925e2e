"""sync/ has no import cycles: every module can be read (and imported) after the ones it uses.

The graph is read from the source with `ast`, not by importing. An edge A -> B is any import
of sync module B written in A, wherever it is: at module level, inside `try`/`if` blocks, and
inside functions and methods too, because an import moved into a function to dodge a cycle
still makes the two modules depend on each other (that is how the cycles this test exists for
were hidden). The one exclusion is `if TYPE_CHECKING:` blocks: they never run and only name
types for annotations.

A string that is exactly the name of a sync module (`"sync.cli.daemon"`) is an edge too: it is
a module loaded by name (`importlib.import_module`), a dependency all the same.

`from sync.pkg import name` is an edge to sync.pkg.name when that is a module, else to
sync.pkg. Importing a submodule also runs its package's __init__; that is not counted as an
edge, so a package that re-exports its own submodules is not a cycle of the design.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SYNC = Path(__file__).resolve().parents[1] / "sync"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SYNC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SYNC.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _counted_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement, nested ones included, except those under `if TYPE_CHECKING:`."""
    for node in body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _counted_statements(node.orelse)
            continue
        yield node
        for field in ("body", "orelse", "finalbody"):
            yield from _counted_statements(getattr(node, field, []) or [])
        for handler in getattr(node, "handlers", []) or []:
            yield from _counted_statements(handler.body)
        for case in getattr(node, "cases", []) or []:
            yield from _counted_statements(case.body)


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in _counted_statements(tree.body):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name, path)
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    found.add(sub)
                elif target in known:
                    found.add(target)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known:
            found.add(node.value)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def components(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan): the modules that
    all reach each other through imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per component, as a closed path starting at its smallest module name."""
    return sorted(_closed_path(graph, c) for c in components(graph))


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first, inside it)."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    return sorted(component)  # unreachable for a strongly connected component


def describe(graph: dict[str, set[str]], found: list[list[str]]) -> str:
    """Each cycle, and every module caught in the same knot."""
    knots = {min(c): c for c in components(graph)}
    return "\n".join(" -> ".join(c) + f"   (all of: {', '.join(sorted(knots[c[0]]))})" for c in found)


def test_the_cycle_finder_sees_a_cycle_and_ignores_a_chain() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_in_functions_and_by_name_are_edges_type_checking_ones_are_not(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import sync.b\n"
        "if TYPE_CHECKING:\n    from sync import c\n"
        "try:\n    from sync.d import thing\nexcept ImportError:\n    pass\n"
        "def f():\n    import sync.e\n"
        "PLUGINS = ('sync.f',)\n"
    )
    path = tmp_path / "a.py"
    path.write_text(source)
    known = {name: path for name in ("sync.a", "sync.b", "sync.c", "sync.d", "sync.e", "sync.f")}
    assert imports_of("sync.a", path, known) == {"sync.b", "sync.d", "sync.e", "sync.f"}


def test_sync_has_no_import_cycle() -> None:
    graph = import_graph()
    assert {"sync.engine", "sync.timbre", "sync.folios.caf", "sync.cli.daemon"} <= graph.keys()  # it sees sync/
    found = cycles(graph)
    assert not found, "import cycles in sync/:\n" + describe(graph, found)
