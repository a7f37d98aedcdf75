"""backends/numba/_cache.py: numba keys a cached kernel by its own source file, so a kernel compiled against another
module's old code would keep running it; the backend drops its cached kernels wherever the stamped digest of its
sources differs (a fake source tree here: the real cache is left alone)."""

from __future__ import annotations

import pytest

numba = pytest.importorskip("numba")
from numba.core import caching  # noqa: E402

from backends.numba import _cache  # noqa: E402


def _tree(tmp_path):
    root = tmp_path / "kernels"
    (root / "blocked").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "blocked" / "conv.py").write_text("def group_tiles(): return 1\n")
    (root / "blocked" / "chain.py").write_text("from .conv import group_tiles\n")
    return root


def _fill(dirs):
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        for name in ("k.f-1.py311.nbi", "k.f-1.py311.1.nbc"):
            (d / name).write_text("x")


def _left(dirs):
    return sorted(p.name for d in dirs if d.is_dir() for p in (*d.glob("*.nbi"), *d.glob("*.nbc")))


@pytest.mark.parametrize("where", ["next-to-sources", "NUMBA_CACHE_DIR"])
def test_cached_kernels_are_dropped_when_any_source_changes(where, tmp_path, monkeypatch):
    root = _tree(tmp_path)
    monkeypatch.setattr(numba.core.config, "CACHE_DIR", str(tmp_path / "cache") if where != "next-to-sources" else "")
    family = _cache.cache_dirs(root)[0]
    assert len(family) == 2  # the package and its subpackage
    if where == "next-to-sources":
        assert family == [root / "__pycache__", root / "blocked" / "__pycache__"]
    else:  # numba's own path for a source file of each directory
        assert [d.name for d in family] == [caching.UserProvidedCacheLocator.get_suitable_cache_subpath(str(d / "x.py"))
                                            for d in (root, root / "blocked")]
    _fill(family)
    assert _cache.drop_stale(root) == 4  # no stamp yet: nothing is known about what they were compiled against
    _fill(family)
    assert _cache.drop_stale(root) == 0 and len(_left(family)) == 4  # the same sources: kept
    (root / "blocked" / "conv.py").write_text("def group_tiles(): return 2\n")  # a callee's module only
    assert _cache.drop_stale(root) == 4 and _left(family) == []
    (root / "blocked" / "conv.py").write_text("def group_tiles(): return 1\n")
    _fill(family)
    assert _cache.drop_stale(root) == 4  # changed back: the stamp is the last digest seen, not any earlier one
