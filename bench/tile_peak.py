"""The register tile's peak on this machine: the blocked convolution's 10-pixel x 2-block tile (blocked/tile.py)
run over a reduction whose operands stay in L1, timed in CPU time of one thread (so a shared machine's load does
not enter): ``python bench/tile_peak.py [--k 4096] [--reps 2000] [--rounds 5]``. The number is the ceiling for
"% of peak" in docs/performance.md: per core, multiply by the cores the kernels use."""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from numba import njit

from backends.numba.blocked.tile import make_blocked_tile
from backends.numba.gemm import VL

MR, NV = 10, 2
_tile = make_blocked_tile(MR, NV)


@njit(cache=True)
def _run(k, a, rows, taps, b, c, bias, reps):
    lo, hi = np.float32(-np.inf), np.float32(np.inf)
    for _ in range(reps):  # bks = 0: every reduction step reads the same weight row (L1)
        _tile(k, a.ctypes.data, rows.ctypes.data, taps.ctypes.data, b.ctypes.data, 0, c.ctypes.data, MR * VL,
              c.ctypes.data, bias.ctypes.data, True, True, False, lo, hi)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=4096, help="reduction steps per tile call")
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    a, b = np.ones(4 * VL, np.float32), np.ones(NV * VL, np.float32)
    rows, taps = np.arange(MR, dtype=np.int64), np.zeros(args.k, np.int64)
    c, bias = np.zeros(MR * NV * VL, np.float32), np.zeros(NV * VL, np.float32)
    _run(args.k, a, rows, taps, b, c, bias, 1)
    rates = []
    for _ in range(args.rounds):
        t0 = time.thread_time()
        _run(args.k, a, rows, taps, b, c, bias, args.reps)
        rates.append(2 * args.k * MR * NV * VL * args.reps / (time.thread_time() - t0) / 1e9)
    print(f"register tile {MR}x{NV}x{VL}: {statistics.median(rates):.1f} GFLOP/s per core (median of "
          f"{args.rounds} rounds, CPU time of one thread; FLOPs = 2 x multiply-adds)")


if __name__ == "__main__":
    main()
