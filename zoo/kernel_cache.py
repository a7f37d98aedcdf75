"""Say when numba compiles kernels, and how long it took.

The numba backend's kernels are ``@njit(cache=True)``: the first run on a machine (a cold cache) JIT-compiles every
kernel a model needs, which takes far longer than tracing and planning the graph; later runs load them from the
cache. Compile reports time the graph work only, so the commands that run kernels wrap that work in
:class:`KernelWatch`, which counts the cache entries numba writes (one ``.nbc`` file per compiled signature).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any


def _cache_dir() -> Path | None:
    """Where numba writes the backend's kernel cache (None when numba is not installed)."""
    try:
        import numba

        import backends.numba as nb
    except ImportError:
        return None
    src = Path(nb.__file__).parent
    if numba.config.CACHE_DIR:  # NUMBA_CACHE_DIR mirrors the source tree below it
        return Path(numba.config.CACHE_DIR) / src.relative_to(src.anchor)
    return src / "__pycache__"


def cached_kernels() -> int:
    """How many compiled kernel signatures numba's cache holds for the numba backend."""
    d = _cache_dir()
    return sum(1 for _ in d.glob("*.nbc")) if d is not None and d.is_dir() else 0


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


