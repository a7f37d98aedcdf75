"""A compiled model whose input readers run specialized (graph/input_alias.py: the caller passes one input buffer
again and again) against the same model with them plain (as for a new input array every call), in one process,
calls interleaved round by round (the order alternating): ``python bench/input_readers.py [--rounds 15] [--reps 10]
[--model mobilenet_v2] [--fresh]``. ``--fresh`` passes a new copy of the input every call to both (the readers
then run plain in both: what that costs over the plain variant is the per-call check). Prints each variant's
median of per-round medians (ms; CPU time of the calling thread with ``NUMBA_NUM_THREADS=1``, wall time
otherwise), the median of the per-round ratios, the input readers' kernel time (profiled, best of the rounds) and
the load average."""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import engine
import graph
import zoo


def _plain_readers(ex) -> None:
    """Make ``ex`` run its input readers plain on every call (the executor before input aliases)."""
    def load_inputs() -> None:
        for users in ex._input_users.values():
            for i in users:
                ex._calls[i] = ex._plain[i]

    ex._load_inputs = load_inputs


def _reader_ms(cm, x: np.ndarray) -> float:
    ex = cm.compiled.executor
    readers = {id(ex._nodes[i]) for users in ex._input_users.values() for i in users}
    keys = {(n.module, n.meta.get("module_type") or "", n.op.name) for n in ex._nodes if id(n) in readers}
    with engine.profile() as prof:
        cm(x)
    return sum(sec for (_, *k), (_, sec) in prof.stats.items() if tuple(k) in keys) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--fresh", action="store_true", help="a new input array every call")
    args = ap.parse_args()
    m = zoo.get(args.model)
    m.eval()
    x = np.random.default_rng(0).standard_normal((1,) + zoo.models.input_size(args.model)).astype(np.float32)
    models = {name: graph.compile(m, x, backend="numba") for name in ("plain", "specialized")}
    _plain_readers(models["plain"].compiled.executor)
    for cm in models.values():
        for _ in range(3):
            cm(x)
    clock = time.thread_time if os.environ.get("NUMBA_NUM_THREADS") == "1" else time.perf_counter
    res: dict[str, list[float]] = {k: [] for k in models}
    stem: dict[str, list[float]] = {k: [] for k in models}
    for r in range(args.rounds):
        for k in (list(models) if r % 2 == 0 else list(models)[::-1]):
            ts = []
            for _ in range(args.reps):
                xi = x.copy() if args.fresh else x
                t0 = clock()
                models[k](xi)
                ts.append(clock() - t0)
            res[k].append(statistics.median(ts) * 1e3)
            stem[k].append(_reader_ms(models[k], x))
    ratio = statistics.median(s / p for s, p in zip(res["specialized"], res["plain"]))
    print(f"{args.model} b1{' fresh inputs' if args.fresh else ''}: " +
          ", ".join(f"{k} {statistics.median(v):.3f} ms (input readers {min(stem[k]):.3f})" for k, v in res.items())
          + f"; specialized / plain {ratio:.3f} (median of {args.rounds} rounds); load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
