"""Dependencies run one way: the module-level import graph of engine/, graph/, backends/ (read from the AST, so
nothing is imported) has no cycles, engine and backends never import graph or zoo, and graph never imports zoo."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "graph", "backends")


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not inside a function, nor under ``if TYPE_CHECKING``."""
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The modules an import statement loads. ``from pkg import sub`` depends on ``pkg.sub``; it depends on the
    package ``pkg`` (its ``__init__``) only when it takes a name that is not a submodule."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    subs = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known}
    return subs if len(subs) == len(node.names) else subs | {target}


def import_graph(root: Path = ROOT) -> nx.DiGraph:
    files = [f for pkg in PACKAGES for f in sorted((root / pkg).rglob("*.py"))]
    known = {_module_name(f, root) for f in files}
    g = nx.DiGraph()
    for f in files:
        module = _module_name(f, root)
        g.add_node(module)
        for node in _top_level_imports(ast.parse(f.read_text(), str(f))):
            for target in _targets(module, f.name == "__init__.py", node, known):
                top = target.split(".")[0]
                if target != module and (target in known or top == "zoo"):
                    g.add_edge(module, target)
    return g


GRAPH = import_graph()


def _cycles(package: str) -> list[list[str]]:
    sub = GRAPH.subgraph(m for m in GRAPH if m == package or m.startswith(package + "."))
    return [c for c in nx.simple_cycles(sub)]


@pytest.mark.parametrize("package", ["engine", "graph", "backends.numpy", "backends.numba"])
def test_no_import_cycles(package):
    cycles = _cycles(package)
    assert not cycles, f"{package} has import cycles: {sorted(cycles, key=len)[:5]}"


def test_whole_graph_has_no_cross_package_cycles():
    sccs = [c for c in nx.strongly_connected_components(GRAPH) if len({m.split(".")[0] for m in c}) > 1]
    assert not sccs


@pytest.mark.parametrize("lower, upper", [("engine", "graph"), ("engine", "zoo"), ("backends", "graph"),
                                          ("backends", "zoo"), ("graph", "zoo")])
def test_layers_import_only_downwards(lower, upper):
    bad = [(a, b) for a, b in GRAPH.edges if a.split(".")[0] == lower and b.split(".")[0] == upper]
    assert not bad, f"{lower} must not import {upper}: {bad}"


def test_engine_defers_only_the_tensor_methods_lookup():
    """A deferred import hides a cycle from the graph above; in engine/ only the Tensor mixin may defer (its
    methods call the functional ops, which construct Tensors)."""
    deferred = []
    for f in sorted((ROOT / "engine").rglob("*.py")):
        functions = [n for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, (ast.FunctionDef, ast.Lambda))]
        if any(isinstance(n, ast.ImportFrom) and n.level for fn in functions for n in ast.walk(fn)):
            deferred.append(_module_name(f))
    assert set(deferred) <= {"engine.tensor_methods"}, deferred


def test_scanner_sees_a_cycle(tmp_path):
    """The checks above can fail: two modules importing each other make a cycle."""
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "__init__.py").write_text("")
    (tmp_path / "engine" / "a.py").write_text("from .b import f\n")
    (tmp_path / "engine" / "b.py").write_text("def f():\n    pass\nfrom . import a\n")
    for pkg in ("graph", "backends"):
        (tmp_path / pkg).mkdir()
    g = import_graph(tmp_path)
    assert list(nx.simple_cycles(g)) in ([["engine.a", "engine.b"]], [["engine.b", "engine.a"]])
