"""Compiled inference with the NCHW and the channel-blocked layout against onnxruntime, same process, same
threads: ``python bench/blocked_layout.py [--workloads r18b8,r50b1,mnv2b1,dn121b1] [--rounds 5] [--ort]
[--direct-row] [--cpu-time] [--before]``.
Prints per workload the median ms of each row (rounds interleaved, the rows' order rotating) and the ratios to
onnxruntime. ``--before`` adds the row ``blocked-before``: the blocked model without the conv_prologue pass and
without concat in place (DenseNet's BN + ReLU as separate passes, every concat a copy), to measure those two."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator

import numpy as np
from _timing import best

import graph
import zoo

WORKLOADS = {"r18b8": ("resnet18", 8), "r50b1": ("resnet50", 1), "mnv2b1": ("mobilenet_v2", 1),
             "dn121b1": ("densenet121", 1), "r18b1": ("resnet18", 1)}


def _time(fn, reps: int, clock=time.perf_counter) -> float:
    return best(fn, clock, reps)


@contextlib.contextmanager
def _copying_concats() -> Iterator[None]:
    """graph.compile planning memory with ``concat_in_place=False`` (the plan before concat views)."""
    mod = sys.modules["graph.compile"]
    plan = mod.plan_memory
    mod.plan_memory = functools.partial(plan, concat_in_place=False)
    try:
        yield
    finally:
        mod.plan_memory = plan


def _before(model, x: np.ndarray):
    with _copying_concats():
        return graph.compile(model, x, backend="numba", layout="blocked",
                             passes=[p for p in graph.PIPELINES["inference"] if p != "conv_prologue"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", default="r18b8,r50b1,mnv2b1,dn121b1")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3, help="calls per round (the round keeps the fastest)")
    ap.add_argument("--ort", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--profile", action="store_true", help="also profile the blocked model by op")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time the calling thread's CPU time (time.thread_time) instead of the wall clock: with "
                         "NUMBA_NUM_THREADS=1 every row runs on that thread, and other processes' load no longer "
                         "shows in the numbers")
    ap.add_argument("--direct-row", action="store_true",
                    help="also the blocked model with every dense conv on the direct kernel (no Winograd)")
    ap.add_argument("--before", action="store_true", help="add the blocked model without prologues / concat views")
    args = ap.parse_args()
    threads = int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1))
    if args.cpu_time and threads != 1:
        raise SystemExit("blocked_layout.py: --cpu-time needs NUMBA_NUM_THREADS=1 (a worker thread's time would not "
                         f"count), got {threads}")
    clock = time.thread_time if args.cpu_time else time.perf_counter
    for key in args.workloads.split(","):
        name, batch = WORKLOADS[key]
        model = zoo.get(name)
        model.eval()
        x = np.random.default_rng(0).standard_normal((batch,) + zoo.models.input_size(name)).astype(np.float32)
        rows = {"nchw": graph.compile(model, x, backend="numba", layout="nchw"),
                "blocked": graph.compile(model, x, backend="numba", layout="blocked")}
        if args.direct_row:
            with _policy("blocked-direct"):
                rows["blocked-direct"] = graph.compile(model, x, backend="numba", layout="blocked")
        if args.before:
            rows["blocked-before"] = _before(model, x)
        fns = {k: functools.partial(cm, x) for k, cm in rows.items()}
        if args.direct_row:
            fns["blocked-direct"] = functools.partial(_call_with_policy, "blocked-direct", rows["blocked-direct"], x)
        ref = rows["nchw"](x).data
        diff = float(np.abs(rows["blocked"](x).data - ref).max() / np.abs(ref).max())
        if args.ort:
            import onnxruntime as ort

            from graph.onnx import export

            path = os.path.join(tempfile.mkdtemp(), f"{name}.onnx")
            export(model, x, path)
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            iname = sess.get_inputs()[0].name
            fns["onnxruntime"] = functools.partial(sess.run, None, {iname: x})
        for f in fns.values():
            f()
        times = {k: [] for k in fns}
        order = list(fns)
        for r in range(args.rounds):  # rotated: the row after onnxruntime meets its still-spinning threads
            for k in order[r % len(order):] + order[:r % len(order)]:
                times[k].append(_time(fns[k], args.reps, clock))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        line = ", ".join(f"{k} {v:.1f} ms" for k, v in med.items())
        if "onnxruntime" in med:
            line += ", " + ", ".join(f"{k}/ort {med[k] / med['onnxruntime']:.2f}" for k in rows)
        what = "CPU time of 1 thread" if args.cpu_time else f"{threads} threads"
        print(f"{key} ({name} b{batch}, {what}, load {os.getloadavg()[0]:.1f}): {line}; blocked vs nchw max rel diff "
              f"{diff:.1e}", flush=True)
        if args.profile:
            for k in [k for k in rows if k.startswith("blocked")]:
                _profile(rows[k], x, k)


@contextlib.contextmanager
def _policy(name: str) -> Iterator[None]:
    from backends.numba.conv.select import set_conv_policy

    prev = set_conv_policy(name)
    try:
        yield
    finally:
        set_conv_policy(prev)


def _call_with_policy(name: str, cm, x: np.ndarray):
    with _policy(name):  # a call that specializes again chooses under the same policy
        return cm(x)


def _profile(cm, x: np.ndarray, row: str = "blocked", calls: int = 3) -> None:
    import engine

    with engine.profile() as prof:
        for _ in range(calls):
            cm(x)
    by_op: dict[str, float] = {}
    for (_, _, _, op), (_, sec) in prof.stats.items():
        by_op[op] = by_op.get(op, 0.0) + sec
    wall = prof.wall_s
    shares = ", ".join(f"{op} {t / wall:.1%}" for op, t in sorted(by_op.items(), key=lambda kv: -kv[1]))
    print(f"  {row} profile: {wall / calls * 1e3:.1f} ms per call, {len(cm.graph.nodes)} nodes; {shares}, "
          f"outside kernels {(wall - sum(by_op.values())) / wall:.1%}", flush=True)


if __name__ == "__main__":
    main()
