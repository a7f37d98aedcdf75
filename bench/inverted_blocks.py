"""MobileNetV2's inverted residual blocks as one call (backends/numba/blocked/inverted.py) against the same model
with the three layers run apart, in one process, calls interleaved round by round (the order alternating):
``python bench/inverted_blocks.py [--rounds 15] [--reps 10] [--apart-below BYTES] [--model mobilenet_v2]``. A
model compiled with ``MIN_EXPANDED_BYTES`` at infinity runs every block apart; the other with the threshold given
(default: the module's). Prints each variant's median of per-round medians (ms; CPU time of the calling thread
with ``NUMBA_NUM_THREADS=1``, wall time otherwise), the median of the per-round ratios and the load average."""

from __future__ import annotations

import argparse
import functools
import os
import statistics

import numpy as np
from _timing import interleaved_medians  # bench/ is the script's directory

import graph
import zoo
from backends.numba.blocked import inverted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--apart-below", type=int, default=inverted.MIN_EXPANDED_BYTES,
                    help="MIN_EXPANDED_BYTES of the fused variant")
    args = ap.parse_args()
    m = zoo.get(args.model)
    m.eval()
    x = np.random.default_rng(0).standard_normal((1,) + zoo.models.input_size(args.model)).astype(np.float32)
    models = {}
    for name, below in (("apart", 1 << 62), ("fused", args.apart_below)):
        inverted.MIN_EXPANDED_BYTES = below
        models[name] = graph.compile(m, x, backend="numba")
        for _ in range(3):
            models[name](x)
    runs = [len(r) for r in models["fused"].compiled.executor.chained]
    res = interleaved_medians({k: functools.partial(cm, x) for k, cm in models.items()}, args.rounds, args.reps)
    ratio = statistics.median(f / a for f, a in zip(res["fused"], res["apart"]))
    print(f"{args.model} b1, {runs.count(3)} blocks as one call; " +
          ", ".join(f"{k} {statistics.median(v):.3f} ms" for k, v in res.items()) +
          f"; fused / apart {ratio:.3f} (median of {args.rounds} rounds); load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
