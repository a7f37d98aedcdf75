"""Every cached numba kernel of the backend owns its on-disk cache index: two dispatchers compiled from one Python
function (a parallel kernel and its serial copy) under one name would load each other's machine code, so the
"serial" twin could run threads or the parallel kernel run on one."""

from __future__ import annotations

import importlib
import pkgutil
from collections import defaultdict

import pytest

numba = pytest.importorskip("numba")
from numba.core.registry import CPUDispatcher  # noqa: E402

import backends.numba  # noqa: E402


def _dispatchers():
    seen = {}
    for info in pkgutil.walk_packages(backends.numba.__path__, "backends.numba."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value._cache.__class__.__name__ != "NullCache":
                seen[id(value)] = (f"{info.name}.{name}", value)
    return seen.values()


def test_no_two_cached_kernels_share_an_index_file():
    owners = defaultdict(set)
    for where, kernel in _dispatchers():
        cache = kernel._cache
        owners[(cache._cache_path, cache._cache_file._index_name)].add((where, id(kernel)))
    shared = {key: sorted(w for w, _ in v) for key, v in owners.items() if len({i for _, i in v}) > 1}
    assert not shared, f"cached kernels sharing one index file: {shared}"
