"""Dependencies run one way: zoo -> graph -> backends -> engine (and graph -> engine). A module may import its own
package and the packages below it, never one above (the CLI lives in zoo/cli, at the top)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ABOVE = {"engine": {"backends", "graph", "zoo"}, "backends": {"graph", "zoo"}, "graph": {"zoo"}, "zoo": set()}


def _imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ABOVE))
def test_no_imports_from_a_layer_above(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    bad = {str(f.relative_to(ROOT)): sorted(_imported_packages(f) & ABOVE[package]) for f in files}
    assert not {f: p for f, p in bad.items() if p}
