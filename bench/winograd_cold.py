"""The blocked Winograd layers of ResNet-50 batch 1 as a network runs them: each call after a parallel pass over
64 MiB of other memory (every cache flushed, as the layers before leave it), optionally with the worker threads
put to sleep first (``--gap`` ms: OpenMP workers stop spinning, as between a network's regions), against the same
call with everything hot, and (``--pf 0,1,2``) each Winograd layer with those values of the U prefetch
(``winograd.PREFETCH``), the calls interleaved. ``python bench/winograd_cold.py [--rounds 15] [--gap 0.5]
[--only 128] [--pf 0,1,2]``, with ``NUMBA_NUM_THREADS`` 1 or 2; medians of per-call wall times in µs (the calling
thread's CPU time on one thread)."""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np
from numba import njit, prange

import backends.numba  # noqa: F401 - registers the kernels
from backends.numba.blocked import conv as bconv
from backends.numba.blocked import winograd as bwino
from engine.backend import get_backend

# name, (N, C, H, W), O, algorithm: ResNet-50 batch 1's 3x3 stride-1 layers, by the heuristic's algorithm and others
LAYERS = [
    ("64@56 f4", (1, 64, 56, 56), 64, "blocked-winograd-f4"),
    ("128@28 f4", (1, 128, 28, 28), 128, "blocked-winograd-f4"),
    ("128@28 f2", (1, 128, 28, 28), 128, "blocked-winograd-f2"),
    ("256@14 f2", (1, 256, 14, 14), 256, "blocked-winograd-f2"),
    ("256@14 f4", (1, 256, 14, 14), 256, "blocked-winograd-f4"),
    ("512@7 f2", (1, 512, 7, 7), 512, "blocked-winograd-f2"),
    ("256@14 direct", (1, 256, 14, 14), 256, "blocked-direct"),
]


@njit(parallel=True, cache=True)
def _flush(buf):
    """Read and write every line of ``buf`` from all threads: the caches then hold none of the layer's data."""
    n = buf.shape[0]
    for i in prange(n // 4096):
        for j in range(i * 4096, (i + 1) * 4096, 16):
            buf[j] += 1.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--gap", type=float, default=0.0, help="ms of sleep between the flush and the call")
    ap.add_argument("--only", default="")
    ap.add_argument("--pf", type=lambda v: [int(p) for p in v.split(",")], default=None,
                    help="winograd.PREFETCH values to compare, e.g. 0,1,2")
    args = ap.parse_args()
    nb = get_backend("numba")
    rng = np.random.default_rng(0)
    junk = np.zeros(16 << 20, np.float32)
    _flush(junk)
    print(f"threads {numba.get_num_threads()}, gap {args.gap} ms: µs per call, median of {args.rounds}")
    for name, (n, c, h, w), o, algo in LAYERS:
        if args.only not in name:
            continue
        wt = rng.standard_normal((o, c, 3, 3), dtype=np.float32)
        b = rng.standard_normal(o, dtype=np.float32)
        wt.setflags(write=False)
        xb = rng.standard_normal((n, -(-c // 16), h, w, 16), dtype=np.float32)
        yb = np.empty((n, -(-o // 16), h, w, 16), np.float32)
        with nb.prepare([wt]) as _:
            calls = {}
            keep = getattr(bwino, "PREFETCH", None)  # None: a tree without the prefetch (main before it)
            for pf in (args.pf if args.pf and "direct" not in algo else (None,)):
                if pf is not None:
                    bwino.PREFETCH = pf
                key = f"pf{pf} " if pf is not None else ""
                calls[key] = bconv._conv_call((xb, wt, b), yb, (1, 1), ((1, 1), (1, 1)), (1, 1), 1, True, False,
                                              "relu", (), algo)
            if keep is not None:
                bwino.PREFETCH = keep
            clock = time.thread_time if numba.get_num_threads() == 1 else time.perf_counter
            times: dict[str, list[float]] = {}
            for r in range(args.rounds):
                for key in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
                    call = calls[key]
                    for mode in ("hot", "cold"):
                        if mode == "cold":
                            _flush(junk)
                            if args.gap:
                                time.sleep(args.gap * 1e-3)
                        else:
                            call()
                        t0 = clock()
                        call()
                        times.setdefault(key + mode, []).append(clock() - t0)
        print(f"{name:14s} " + "  ".join(f"{k} {statistics.median(v) * 1e6:7.0f}" for k, v in times.items()),
              flush=True)


if __name__ == "__main__":
    main()
