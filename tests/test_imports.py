"""The import graph of mlsvc/: no cycle among module-level imports, and the core never imports a face or the service."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mlsvc"
CORE = ("mlsvc.datasources", "mlsvc.training", "mlsvc.prediction", "mlsvc.recommendation", "mlsvc.jobs")
ABOVE_THE_CORE = ("mlsvc.server", "mlsvc.client", "mlsvc.cli", "mlsvc.service")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


_BLOCKS = (ast.With, ast.ClassDef, ast.For, ast.While)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _imports(body: list[ast.stmt], deferred: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports in ``body`` that can run, never those under ``if TYPE_CHECKING:``; with ``deferred``, those
    inside functions too (they run later, but a cycle through them is still a cycle)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _imports(node.body, deferred)
            yield from _imports(node.orelse, deferred)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _imports(block, deferred)
        elif isinstance(node, _BLOCKS) or (deferred and isinstance(node, _FUNCTIONS)):
            yield from _imports(node.body, deferred)


def _resolve(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The mlsvc modules an import statement loads: the most specific module each name it imports is."""
    if isinstance(node, ast.Import):
        bases = [alias.name for alias in node.names]
        names: list[str] = []
    else:
        if node.level:
            package = module.split(".")
            if MODULES[module].name != "__init__.py":
                package = package[:-1]
            package = package[: len(package) - (node.level - 1)]
            bases = [".".join([*package, *([node.module] if node.module else [])])]
        else:
            bases = [node.module or ""]
        names = [alias.name for alias in node.names]
    for base in bases:
        submodules = [f"{base}.{name}" for name in names if f"{base}.{name}" in MODULES]
        yield from submodules
        if not names or len(submodules) < len(names):
            # "import a.b" loads a.b; a name that is not a submodule comes from the module it is imported from.
            # (The packages above a module run first too, but a package importing its own parts is no cycle.)
            target = base
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target:
                yield target


@functools.cache
def import_graph(deferred: bool = False) -> dict[str, set[str]]:
    """Each mlsvc module → the mlsvc modules it imports at module level (and, with ``deferred``, in functions)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        imports = _imports(tree.body, deferred)
        graph[module] = {t for node in imports for t in _resolve(module, node) if t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph.get(step, ())))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return seen


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_graph_is_read_from_the_real_package() -> None:
    graph = import_graph()
    assert "mlsvc.datasources.scan" in graph["mlsvc.training.data"]
    assert "mlsvc.jobs.context" in graph["mlsvc.jobs.handlers"]
    assert not any(m.startswith("mlsvc.jobs") for m in graph["mlsvc.training.job"])  # only under TYPE_CHECKING
    assert "mlsvc.server.main" in import_graph(deferred=True)["mlsvc.cli"]  # imported inside a function


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_module_level_imports() -> None:
    assert cycles(import_graph()) == []


def test_no_import_cycle_even_through_imports_deferred_into_functions() -> None:
    assert cycles(import_graph(deferred=True)) == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _within(m, CORE)))
def test_the_core_never_imports_a_face_or_the_service(module: str) -> None:
    above = sorted(m for m in reachable(import_graph(deferred=True), module) if _within(m, ABOVE_THE_CORE))
    assert above == [], f"{module} imports {above}, directly or through the modules it imports"
