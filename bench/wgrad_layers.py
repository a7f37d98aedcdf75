"""Per-layer timing of the 3x3 stride-1 weight gradient: the NCHW Winograd (``winograd-f2`` / ``-f4``) against the
channel-blocked one (``nchwc-winograd-f2`` / ``-f4``: two reorders + backends/numba/conv/nchwc_wgrad.py) and the
blocked kernel alone on already-blocked x and gy (``blocked-f2`` / ``-f4``, what a blocked training layout calls),
float32, in one process, rounds interleaved with the order rotated::

    PYTHONPATH=$PWD .venv/bin/python bench/wgrad_layers.py [--rounds 5] [--only R18C] [--algos a,b]

Per variant: the median over rounds of the best of 3 wall times, and of the calling thread's CPU time (``cpu``,
meaningful with NUMBA_NUM_THREADS=1). ``--phases``: also the blocked kernel's phases (transforms, GEMMs + dW)."""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import numpy as np
from _timing import best

import backends.numba  # noqa: F401 - registers the kernels
from backends.numba.blocked.reorder import to_blocked
from backends.numba.conv import drivers
from backends.numba.conv.nchwc_wgrad import weight_grad3x3
from backends.numba.gemm import VL

ALGOS = ("winograd-f2", "winograd-f4", "nchwc-winograd-f2", "nchwc-winograd-f4", "blocked-f2", "blocked-f4")
# name, (N, C, H, W), O: ResNet-18's 3x3 stride-1 layers on CIFAR at batch 32 and on ImageNet at batch 8
LAYERS = [
    ("R18C b32 64->64 32", (32, 64, 32, 32), 64),
    ("R18C b32 128->128 16", (32, 128, 16, 16), 128),
    ("R18C b32 256->256 8", (32, 256, 8, 8), 256),
    ("R18C b32 512->512 4", (32, 512, 4, 4), 512),
    ("R18I b8 64->64 56", (8, 64, 56, 56), 64),
    ("R18I b8 128->128 28", (8, 128, 28, 28), 128),
    ("R18I b8 256->256 14", (8, 256, 14, 14), 256),
    ("R18I b8 512->512 7", (8, 512, 7, 7), 512),
]


def _blocked(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    xb = np.empty((n, -(-c // VL), h, w, VL), np.float32)
    to_blocked(x, xb, VL)
    return xb


def _call(a: str, x, gy, xb, gyb, out, attrs):
    if a.startswith("blocked-"):
        return functools.partial(weight_grad3x3, xb, gyb, out, attrs["padding"], int(a[-1]))
    return functools.partial(drivers.run_weight_grad, a, x, gy, out, attrs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="")
    ap.add_argument("--algos", default=",".join(ALGOS))
    args = ap.parse_args()
    algos = tuple(args.algos.split(","))
    rng = np.random.default_rng(0)
    attrs = {"stride": (1, 1), "padding": ((1, 1), (1, 1)), "dilation": (1, 1), "groups": 1}
    for name, (n, c, h, w), o in LAYERS:
        if args.only not in name:
            continue
        x = np.maximum(rng.standard_normal((n, c, h, w), dtype=np.float32), 0)
        gy = rng.standard_normal((n, o, h, w), dtype=np.float32)
        xb, gyb = _blocked(x), _blocked(gy)
        out = np.empty((o, c, 3, 3), np.float32)

        calls = {a: _call(a, x, gy, xb, gyb, out, attrs) for a in algos}
        wall = {a: [] for a in algos}
        cpu = {a: [] for a in algos}
        for a in algos:
            calls[a]()
        for r in range(args.rounds):
            for a in algos[r % len(algos):] + algos[:r % len(algos)]:
                wall[a].append(best(calls[a], time.perf_counter))
                cpu[a].append(best(calls[a], time.thread_time))
        flops = 2 * n * h * w * o * c * 9
        print(f"{name}:")
        for a in algos:
            mw, mc = statistics.median(wall[a]), statistics.median(cpu[a])
            print(f"  {a:18s} {mw * 1e3:7.2f} ms  cpu {mc * 1e3:7.2f} ms  ({flops / mw / 1e9:4.0f} GFLOP/s eff.)")


if __name__ == "__main__":
    main()
