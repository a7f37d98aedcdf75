"""Each blocked convolution of a compiled zoo model on its serial twin and on its parallel kernel, same arrays,
calls interleaved: which layers gain from the second thread (the data behind ``SERIAL_MACS`` in
backends/numba/blocked/conv.py). ``python bench/serial_parallel.py [--model mobilenet_v2] [--batch 1]
[--calls 15]``. Prints per layer the multiply-adds and the median (min) ms of both, marks the layers where the
parallel kernel wins, and the sums; the load average goes with the numbers (run it on a quiet machine)."""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import graph
import zoo
from backends.numba.blocked import conv as bconv


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--calls", type=int, default=15)
    args = ap.parse_args()
    model = zoo.get(args.model)
    model.eval()
    x = np.random.default_rng(0).standard_normal((args.batch,) + zoo.models.input_size(args.model)).astype(
        np.float32)
    cm = graph.compile(model, x, backend="numba", layout="blocked")
    rng = np.random.default_rng(0)
    below = bconv.SERIAL_MACS
    sums = {"serial": 0.0, "parallel": 0.0, "best": 0.0}
    print(f"{args.model} b{args.batch}, load {os.getloadavg()[0]:.1f} at the start")
    for node in cm.graph.find("blocked_conv2d"):
        ins = [v.data if v.data is not None else rng.standard_normal(v.shape).astype(np.float32)
               for v in node.inputs]
        out = np.empty(node.outputs[0].shape, np.float32)
        calls = {}
        try:
            for row, limit in (("serial", 1 << 62), ("parallel", 0)):
                bconv.SERIAL_MACS = limit
                calls[row] = bconv.blocked_conv2d.specialize(*ins, out=out, **node.attrs)
        finally:
            bconv.SERIAL_MACS = below
        times: dict[str, list[float]] = {k: [] for k in calls}
        for f in calls.values():
            f()
        for r in range(args.calls):
            for k in (("serial", "parallel") if r % 2 else ("parallel", "serial")):
                t0 = time.perf_counter()
                calls[k]()
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        low = {k: min(v) * 1e3 for k, v in times.items()}
        for k in med:
            sums[k] += med[k]
        sums["best"] += min(med.values())
        kind = "dw" if node.attrs["groups"] > 1 else "  "
        print(f"  {node.name:24s} {kind} {node.cost().macs / 1e6:7.1f}M  serial {med['serial']:.3f} "
              f"({low['serial']:.3f})  parallel {med['parallel']:.3f} ({low['parallel']:.3f})"
              + ("  parallel wins" if med["parallel"] < med["serial"] else ""), flush=True)
    print(f"sums of medians: all serial {sums['serial']:.2f} ms, all parallel {sums['parallel']:.2f} ms, each layer's "
          f"better {sums['best']:.2f} ms; load {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
