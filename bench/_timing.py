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


def clock_for_threads() -> Callable[[], float]:
    """CPU time of the calling thread where numba runs one thread (a kernel's cost, whatever the machine's load),
    else wall time."""
    import os

    return time.thread_time if os.environ.get("NUMBA_NUM_THREADS") == "1" else time.perf_counter


def interleaved_medians(fns: dict[str, Callable[[], object]], rounds: int, reps: int) -> dict[str, list[float]]:
    """Per variant, one median per round of ``reps`` calls (ms, :func:`clock_for_threads`); the variants take turns
    within a round, in an order that reverses from round to round."""
    import statistics

    clock = clock_for_threads()
    res: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            ts = []
            for _ in range(reps):
                t0 = clock()
                fns[k]()
                ts.append(clock() - t0)
            res[k].append(statistics.median(ts) * 1e3)
    return res


def zoo_eval(model: str, batch: int) -> tuple:
    """The zoo model in eval mode and a seeded float32 input of ``batch`` images at its default size."""
    import numpy as np

    import zoo

    m = zoo.get(model)
    m.eval()
    x = np.random.default_rng(0).standard_normal((batch,) + zoo.models.input_size(model)).astype(np.float32)
    return m, x
