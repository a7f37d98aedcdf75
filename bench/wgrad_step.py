"""The ResNet-18 CIFAR (batch 32) compile_step with its 3x3 stride-1 weight gradients on the channel-blocked Winograd
(``nchwc-winograd-f*``, the heuristic's pick) against the same step with them on the NCHW Winograd (``winograd-f*``,
the pick before), in one process, rounds interleaved with the order rotated::

    PYTHONPATH=$PWD .venv/bin/python bench/wgrad_step.py [--rounds 5] [--steps 5] [--clock wall|thread]

``--clock thread`` with NUMBA_NUM_THREADS=1 times the one thread's CPU time (robust to other load)."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import engine.functional as F
import graph
from backends.numba.conv import select
from bench.compiled_training import _setup

CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


@contextlib.contextmanager
def nchw_weight_grads():
    """The heuristic with the weight gradient's pick on the NCHW Winograd (bound when a step first runs)."""
    orig = select._winograd_pick

    def pick(x_shape, w_shape, attrs, role, simd=False):
        p = orig(x_shape, w_shape, attrs, role, simd)
        return p.removeprefix("nchwc-") if p and role == "weight_grad" else p

    select._winograd_pick = pick
    try:
        yield
    finally:
        select._winograd_pick = orig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    a = ap.parse_args()
    clock = CLOCKS[a.clock]
    m, x, y, opt = _setup("resnet18_cifar")
    with nchw_weight_grads():
        old = graph.compile_step(m, F.cross_entropy, opt, x, y, backend="numba")
        old(x, y)  # binds every node's algorithm
    new = graph.compile_step(m, F.cross_entropy, opt, x, y, backend="numba")
    new(x, y)
    fns = {"nchw_wgrad": lambda: old(x, y), "nchwc_wgrad": lambda: new(x, y)}
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(a.rounds):
        for k in names[r % 2:] + names[:r % 2]:
            ts = []
            for _ in range(a.steps):
                t0 = clock()
                fns[k]()
                ts.append(clock() - t0)
            times[k].append(statistics.median(ts) * 1e3)
    ratios = [b / c for b, c in zip(times["nchwc_wgrad"], times["nchw_wgrad"])]
    print(f"resnet18_cifar b32 compile_step, {a.rounds} rounds x {a.steps} steps ({a.clock} clock): "
          + ", ".join(f"{k} {statistics.median(v):.1f} ms" for k, v in times.items())
          + f", ratio {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
