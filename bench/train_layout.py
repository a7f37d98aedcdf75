"""The training layout pass (graph/passes/train_layout.py) on ResNet-18 CIFAR batch 32: its convolution kernels
against the NCHW ones, and whole steps.

    NUMBA_NUM_THREADS=1 .venv/bin/python bench/train_layout.py [--kernels] [--steps-rounds R] [--steps S]

``--kernels``: per 3x3 stride-1 layer shape, the NCHW kernel (with the reorders its blocked Winograd path pays
inside) vs the blocked kernel on blocked arrays, forward / input gradient / weight gradient, best of 7, CPU time of
this thread (run with one numba thread so every kernel runs here). ``--steps-rounds R``: R interleaved rounds (in
rotating order) of the eager step and ``compile_step`` with ``layout="nchw"`` and ``"blocked"``, S steps each;
medians and per-round ratios (CPU time of this thread, so one numba thread again).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import numpy as np
from _timing import best

import engine
import engine.functional as F
import engine.optim as optim
import graph
import zoo.models as zm
from backends.numpy.blocked import to_blocked
from engine import Tensor
from engine.ops.blocked import blocks

ATTRS = {"stride": (1, 1), "padding": ((1, 1), (1, 1)), "dilation": (1, 1), "groups": 1}


def _blocked(x: np.ndarray, block: int = 16) -> np.ndarray:
    out = np.empty((x.shape[0], blocks(x.shape[1], block), *x.shape[2:], block), x.dtype)
    to_blocked(x, out, block)  # the numpy reference reorder
    return out


def _best(fn, n: int = 7) -> float:
    return best(fn, time.thread_time, n, warm=True) * 1e3


def kernels() -> None:
    k = engine.get_backend("numba").kernel
    rng = np.random.default_rng(0)
    for c, hw in ((64, 32), (128, 16), (256, 8), (512, 4)):
        x = rng.standard_normal((32, c, hw, hw)).astype(np.float32)
        w = (rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32)
        gy = rng.standard_normal(x.shape).astype(np.float32)
        xb, gyb = _blocked(x), _blocked(gy)
        y, yb, gw = np.empty_like(x), np.empty_like(xb), np.empty_like(w)
        ig, wg = {"input_shape": x.shape, **ATTRS}, {"weight_shape": w.shape, **ATTRS}
        runs = [("conv2d", (x, w), y, ATTRS), ("blocked_conv2d_train", (xb, w), yb, ATTRS),
                ("conv2d_input_grad", (gy, w), y, ig), ("blocked_conv2d_input_grad", (gyb, w), yb, ig),
                ("conv2d_weight_grad", (x, gy), gw, wg), ("blocked_conv2d_weight_grad", (xb, gyb), gw, wg)]
        r = [_best(functools.partial(k(name), *args, out=out, **attrs)) for name, args, out, attrs in runs]
        print(f"{c} @ {hw}x{hw}: forward NCHW {r[0]:.1f} / blocked {r[1]:.1f} ms, input grad {r[2]:.1f} / "
              f"{r[3]:.1f}, weight grad {r[4]:.1f} / {r[5]:.1f}", flush=True)


def steps(rounds: int, per_round: int) -> None:
    engine.set_backend("numba")
    engine.manual_seed(0)
    m = zm.get("resnet18_cifar")
    m.train()
    x = Tensor(np.random.default_rng(0).standard_normal((32, 3, 32, 32)).astype(np.float32))
    y = Tensor(np.random.default_rng(1).integers(0, 10, 32))
    opt = optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

    def eager() -> None:
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()

    fns = {"eager": eager}
    for layout in ("nchw", "blocked"):
        step = graph.compile_step(m, F.cross_entropy, opt, x, y, backend="numba", layout=layout)
        fns[f"compile_step {layout}"] = lambda step=step: step(x, y)
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for f in fns.values():
        f()
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            ts = []
            for _ in range(per_round):
                t0 = time.thread_time()
                fns[k]()
                ts.append(time.thread_time() - t0)
            times[k].append(statistics.median(ts) * 1e3)
    for k in names:
        ratios = [a / b for a, b in zip(times[k], times["eager"])]
        print(f"{k}: {statistics.median(times[k]):.1f} ms, x eager {statistics.median(ratios):.3f} "
              f"({min(ratios):.3f}-{max(ratios):.3f})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", action="store_true")
    ap.add_argument("--steps-rounds", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    if a.kernels:
        kernels()
    if a.steps_rounds:
        steps(a.steps_rounds, a.steps)


if __name__ == "__main__":
    main()
