"""Say when numba compiles kernels, and how long it took.

The numba backend's kernels are ``@njit(cache=True)``: the first run on a machine (a cold cache) JIT-compiles every
kernel a model needs, which takes far longer than tracing and planning the graph; later runs load them from the
cache. Compile reports time the graph work only, so the commands that run kernels wrap that work in
:class:`KernelWatch`, which counts the cache entries numba writes (one ``.nbc`` file per compiled signature).
"""

from __future__ import annotations

import sys
import time
from typing import Any


def cached_kernels() -> int:
    """How many compiled kernel signatures numba's cache holds for the numba backend (``.nbc`` files in every
    package directory's cache, wherever numba keeps them: backends/numba/_cache.py)."""
    try:
        from backends.numba import _cache
    except ImportError:  # numba not installed
        return 0
    return max(sum(1 for d in family if d.is_dir() for _ in d.glob("*.nbc")) for family in _cache.cache_dirs())


class KernelWatch:
    """``with KernelWatch("numba", what) as w: ...``: on a cold cache, says up front that kernels are being compiled;
    afterwards ``w.compiled`` (new cache entries) and ``w.seconds``, and ``str(w)`` one line about them."""

    def __init__(self, backend: str | None, what: str = "", stream: Any = None):
        self.active = backend == "numba"
        self.what = what
        self.stream = stream or sys.stderr
        self.compiled = 0
        self.seconds = 0.0

    def __enter__(self) -> KernelWatch:
        self._before = cached_kernels() if self.active else 0
        if self.active and self._before == 0:
            print(f"compiling numba kernels{' for ' + self.what if self.what else ''} (a cold kernel cache: the "
                  "first run takes minutes, later runs load them from the cache)...", file=self.stream, flush=True)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._t0
        if self.active:
            self.compiled = max(cached_kernels() - self._before, 0)

    def __str__(self) -> str:
        if not self.compiled:
            return f"wall time {self.seconds:.2f} s (kernels from the cache)" if self.active else \
                f"wall time {self.seconds:.2f} s"
        return (f"wall time {self.seconds:.1f} s, including JIT-compiling {self.compiled} numba kernel "
                f"signature{'s' if self.compiled != 1 else ''} (cached for later runs) and measuring conv algorithms")


