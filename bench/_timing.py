"""The timing helper the per-layer bench scripts share (they run as ``python bench/<script>.py``, so this
directory is first on their import path)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best(fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter, reps: int = 3,
         warm: bool = False) -> float:
    """The fastest of ``reps`` calls of ``fn`` by ``clock``, in the clock's unit (seconds); ``warm``: one untimed
    call first (JIT, first touch)."""
    if warm:
        fn()
    ts = []
    for _ in range(reps):
        t0 = clock()
        fn()
        ts.append(clock() - t0)
    return min(ts)
