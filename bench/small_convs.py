"""MobileNetV2 batch 1 (or another zoo model) compiled blocked, with and without the serial small convolutions and
specialized conv calls, against onnxruntime, in one process with rounds interleaved:
``python bench/small_convs.py [--model mobilenet_v2] [--batch 1] [--rounds 7] [--profile]``.

Rows: ``before`` (every blocked conv on its parallel kernel, set up on every call: ``SERIAL_MACS = 0`` and no
``specialize``, as before the serial twins), ``after`` (the defaults), ``onnxruntime`` (2 intra-op threads or
NUMBA_NUM_THREADS). Prints medians of the rounds (each the best of ``--reps`` calls; the rows' order rotates from
round to round) and ratios to onnxruntime;
``--profile`` adds the ``after`` model's slowest nodes."""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile

import numpy as np
from blocked_layout import _time  # bench/ is the script's directory

import engine
import graph
import zoo
from backends.numba.blocked import conv as bconv


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--thresholds", default="", help="extra rows: log2 of SERIAL_MACS per row, e.g. 19,23,inf")
    args = ap.parse_args()
    threads = int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1))
    model = zoo.get(args.model)
    model.eval()
    x = np.random.default_rng(0).standard_normal((args.batch,) + zoo.models.input_size(args.model)).astype(
        np.float32)
    fns: dict = {}
    # the "before" row specializes (on its first call) with the old behaviour, and keeps it
    spec, below = bconv.blocked_conv2d.specialize, bconv.SERIAL_MACS
    bconv.blocked_conv2d.specialize, bconv.SERIAL_MACS = lambda *a, **k: None, 0
    try:
        before = graph.compile(model, x, backend="numba", layout="blocked")
        before(x)
    finally:
        bconv.blocked_conv2d.specialize, bconv.SERIAL_MACS = spec, below
    for t in filter(None, args.thresholds.split(",")):
        bconv.SERIAL_MACS = 1 << 62 if t == "inf" else 1 << int(t)
        try:
            cm = graph.compile(model, x, backend="numba", layout="blocked")
            cm(x)  # specialized with this threshold
        finally:
            bconv.SERIAL_MACS = below
        fns[f"serial<2^{t}"] = functools.partial(cm, x)
    after = graph.compile(model, x, backend="numba", layout="blocked")
    fns.update(before=functools.partial(before, x), after=functools.partial(after, x))
    diff = float(np.abs(after(x).data - before(x).data).max())
    import onnxruntime as ort

    from graph.onnx import export

    path = os.path.join(tempfile.mkdtemp(), f"{args.model}.onnx")
    export(model, x, path)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    fns["onnxruntime"] = functools.partial(sess.run, None, {sess.get_inputs()[0].name: x})
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    ort_diff = float(np.abs(after(x).data - ref).max() / np.abs(ref).max())
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    for r in range(args.rounds):  # the order rotates: the row after onnxruntime meets its still-spinning threads
        for k in order[r % len(order):] + order[:r % len(order)]:
            times[k].append(_time(fns[k], args.reps))
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"{args.model} b{args.batch}, {threads} threads, load {os.getloadavg()[0]:.1f}: "
          + ", ".join(f"{k} {v:.2f} ms" for k, v in med.items())
          + f"; before/ort {med['before'] / med['onnxruntime']:.2f}, after/ort {med['after'] / med['onnxruntime']:.2f}"
          + f", after/before {med['after'] / med['before']:.2f}; |after - before| {diff:.1e}, "
          f"after vs ort rel {ort_diff:.1e}", flush=True)
    if args.profile:
        with engine.profile() as prof:
            for _ in range(5):
                after(x)
        rows = sorted(((sec, layer, op) for (_, layer, _, op), (_, sec) in prof.stats.items()), reverse=True)
        total = sum(r[0] for r in rows)
        print(f"  after: {prof.wall_s / 5 * 1e3:.2f} ms per call, kernels {total / 5 * 1e3:.2f} ms; slowest: "
              + ", ".join(f"{layer or op} {sec / 5 * 1e3:.2f}" for sec, layer, op in rows[:12]), flush=True)


if __name__ == "__main__":
    main()
