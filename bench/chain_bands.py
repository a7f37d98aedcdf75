"""MobileNetV2 with its depthwise -> 1x1 pairs' thread bands cut at whole 1x1 tiles where whole rows waste tiles
(backends/numba/blocked/chain.py ``band_schedule(..., align=MR)``: the 7x7 pairs on two threads run as one call)
against the same model with whole-row bands only (those pairs then run as two calls), in one process, calls
interleaved round by round (the order alternating): ``python bench/chain_bands.py [--rounds 15] [--reps 10]``.
Prints the runs of nodes each variant calls as one, each variant's median of per-round medians (ms, wall time)
and the median of the per-round ratios, with the load average."""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import graph
import zoo
from backends.numba.blocked import chain


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    m = zoo.get(args.model)
    m.eval()
    x = np.random.default_rng(0).standard_normal((1,) + zoo.models.input_size(args.model)).astype(np.float32)
    tiled = chain.band_schedule

    def rows(nn, oh, ow, seg_rows, threads, align):  # noqa: ANN001, ANN202 - band_schedule's signature
        return tiled(nn, oh, ow, seg_rows, threads, ow)

    models = {}
    for name, schedule in (("rows", rows), ("tiles", tiled)):
        chain.band_schedule = schedule  # read when a pair is specialized: the first calls below
        models[name] = graph.compile(m, x, backend="numba")
        for _ in range(3):
            models[name](x)
        print(name, "runs as one call:", [len(r) for r in models[name].compiled.executor.chained])
    chain.band_schedule = tiled
    res: dict[str, list[float]] = {k: [] for k in models}
    for r in range(args.rounds):
        for k in (list(models) if r % 2 == 0 else list(models)[::-1]):
            ts = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                models[k](x)
                ts.append(time.perf_counter() - t0)
            res[k].append(statistics.median(ts) * 1e3)
    ratio = statistics.median(t / w for t, w in zip(res["tiles"], res["rows"]))
    print(f"{args.model} b1: " + ", ".join(f"{k} {statistics.median(v):.3f} ms" for k, v in res.items()) +
          f"; tiles / rows {ratio:.3f} (median of {args.rounds} rounds); load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
