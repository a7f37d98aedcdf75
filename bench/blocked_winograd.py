"""Per-layer timing of the blocked 3x3 stride-1 convolutions: the direct register-tiled kernel against Winograd
F(2x2, 3x3) and F(4x4, 3x3) (backends/numba/blocked/winograd.py) on the same blocked arrays, bias + ReLU epilogue,
in one process, rounds interleaved with the order rotated, inside an executor context (weights packed / transformed
once): ``python bench/blocked_winograd.py [--rounds 5] [--only R18]``. GFLOP/s count the direct convolution's
2 x MACs for all (Winograd's "effective" rate); ``cpu`` is the calling thread's CPU time, meaningful with
NUMBA_NUM_THREADS=1."""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _timing import best

import backends.numba  # noqa: F401 - registers the kernels
from backends.numba.blocked import conv as bconv
from engine.backend import get_backend

ALGOS = ("blocked-direct", "blocked-winograd-f2", "blocked-winograd-f4")
# name, (N, C, H, W), O: the 3x3 stride-1 layers of ResNet-18 / -34 at batch 8, ResNet-50 and DenseNet-121 at batch 1
LAYERS = [
    ("R18 b8 64->64 56", (8, 64, 56, 56), 64),
    ("R18 b8 128->128 28", (8, 128, 28, 28), 128),
    ("R18 b8 256->256 14", (8, 256, 14, 14), 256),
    ("R18 b8 512->512 7", (8, 512, 7, 7), 512),
    ("R50 b1 64->64 56", (1, 64, 56, 56), 64),
    ("R50 b1 128->128 28", (1, 128, 28, 28), 128),
    ("R50 b1 256->256 14", (1, 256, 14, 14), 256),
    ("R50 b1 512->512 7", (1, 512, 7, 7), 512),
    ("DN121 b1 128->32 56", (1, 128, 56, 56), 32),
    ("DN121 b1 128->32 28", (1, 128, 28, 28), 32),
    ("DN121 b1 128->32 14", (1, 128, 14, 14), 32),
    ("small b1 32->32 28", (1, 32, 28, 28), 32),
    ("small b1 16->16 56", (1, 16, 56, 56), 16),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    nb = get_backend("numba")
    rng = np.random.default_rng(0)
    for name, (n, c, h, w), o in LAYERS:
        if args.only not in name:
            continue
        wt = rng.standard_normal((o, c, 3, 3), dtype=np.float32)
        b = rng.standard_normal(o, dtype=np.float32)
        wt.setflags(write=False)  # a compiled graph's folded constant: packed once
        xb = rng.standard_normal((n, -(-c // 16), h, w, 16), dtype=np.float32)
        yb = np.empty((n, -(-o // 16), h, w, 16), np.float32)
        pad = ((1, 1), (1, 1))
        with nb.prepare([wt]) as _:
            calls = {a: bconv._conv_call((xb, wt, b), yb, (1, 1), pad, (1, 1), 1, True, False, "relu", (), a)
                     for a in ALGOS}
            wall = {a: [] for a in ALGOS}
            cpu = {a: [] for a in ALGOS}
            for a in ALGOS:
                calls[a]()
            for r in range(args.rounds):
                for a in ALGOS[r % len(ALGOS):] + ALGOS[:r % len(ALGOS)]:
                    wall[a].append(best(calls[a], time.perf_counter))
                    cpu[a].append(best(calls[a], time.thread_time))
        flops = 2 * n * h * w * o * c * 9
        med = {a: statistics.median(v) for a, v in wall.items()}
        cmed = {a: statistics.median(v) for a, v in cpu.items()}
        d = ALGOS[0]
        cols = "  ".join(f"{a.removeprefix('blocked-')} {med[a] * 1e3:7.2f} ms ({flops / med[a] / 1e9:4.0f} GFLOP/s, "
                         f"cpu {cmed[a] * 1e3:6.2f}, x{med[a] / med[d]:.2f})" for a in ALGOS)
        print(f"{name:20s} {cols}", flush=True)

if __name__ == "__main__":
    main()
