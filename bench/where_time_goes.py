"""Where a compiled model's time goes, per kind of layer: ``python bench/where_time_goes.py --workloads
resnet50:1,mobilenet_v2:1 [--rounds 5] [--layout blocked]``. For each kind (convolutions by kernel size, stride and
depthwise; every other op by name) it prints the kernel time (the sum over the kind's nodes of each node's best time
over the rounds, ms), the share of the summed kernel time, multiply-adds (MACs, from the nodes' cost rules),
GFLOP/s (FLOPs = 2 x MACs) and % of the register tile's peak (``bench/tile_peak.py``, per core, times the numba
threads), then the executor's time outside kernels (per call and per node). Profiles time each kernel call
separately (``engine.profile``), so the kernel sum can exceed a plain call's wall time by the profiler's cost."""

from __future__ import annotations

import argparse
import os
import statistics
from collections import defaultdict

import numpy as np

import engine
import graph
import zoo


def _kind(node) -> str:
    op = node.op.name
    if "conv" not in op or len(node.inputs) < 2 or node.inputs[1].spec.ndim != 4:
        return op
    w = node.inputs[1].spec.shape
    stride = node.attrs.get("stride", (1, 1))
    s = stride[0] if isinstance(stride, (tuple, list)) else stride
    dw = " depthwise" if node.attrs.get("groups", 1) > 1 else ""
    return f"conv {w[2]}x{w[3]}/{s}{dw}"


def breakdown(name: str, batch: int, rounds: int, layout: str | None, peak_gflops: float) -> list[str]:
    model = zoo.get(name)
    model.eval()
    x = np.random.default_rng(0).standard_normal((batch,) + zoo.models.input_size(name)).astype(np.float32)
    cm = graph.compile(model, x, backend="numba", **({"layout": layout} if layout else {}))
    for _ in range(3):
        cm(x)
    macs: dict[tuple, int] = defaultdict(int)
    kinds: dict[tuple, str] = {}
    counts: dict[str, int] = defaultdict(int)
    # a run of nodes the executor calls as one (a depthwise layer and its 1x1; an expand 1x1, depthwise and 1x1) is
    # timed on its first node: one kind
    paired = {id(n): " + ".join(_kind(m) for m in run) + " (one call)"
              for run in getattr(cm.compiled.executor, "chained", []) for n in run}
    for n in cm.graph.nodes:
        key = (n.module, n.meta.get("module_type") or "", n.op.name)
        macs[key] += n.op.cost(*n.specs(), **n.attrs).macs
        kind = paired.get(id(n), _kind(n))
        kinds.setdefault(key, kind)
        counts[kind] += 1
    best: dict[tuple, float] = {}
    outside, walls = [], []
    for _ in range(rounds):
        with engine.profile() as prof:
            cm(x)
        for (_, layer, ltype, op), (_calls, sec) in prof.stats.items():
            k = (layer, ltype, op)
            best[k] = min(best.get(k, float("inf")), sec)
        ov = prof.graph_overhead()
        outside.append(ov["outside_ms"])
        walls.append(ov["wall_ms"])
    by_kind: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for k, sec in best.items():
        kind = kinds.get(k, k[2])
        by_kind[kind][0] += sec
        by_kind[kind][1] += macs.get(k, 0)
    total = sum(s for s, _ in by_kind.values())
    nodes = len(cm.graph.nodes)
    out = [f"### {name} batch {batch} ({nodes} nodes, layout {layout or 'default'}): kernels {total * 1e3:.2f} ms "
           f"(sum of per-node bests), profiled call {statistics.median(walls):.2f} ms, outside kernels "
           f"{statistics.median(outside):.3f} ms = {statistics.median(outside) / nodes * 1e3:.1f} us per node",
           "", "| kind | nodes | ms | % of kernels | GMACs | GFLOP/s | % of peak |", "|---|---|---|---|---|---|---|"]
    for kind, (sec, m) in sorted(by_kind.items(), key=lambda kv: -kv[1][0]):
        rate = 2 * m / sec / 1e9 if m and sec else 0.0
        pct = f"{100 * rate / peak_gflops:.0f}%" if m else "—"
        out.append(f"| {kind} | {counts.get(kind, 0)} | {sec * 1e3:.2f} | {100 * sec / total:.1f}% | "
                   f"{m / 1e9:.3f} | {rate:.0f} | {pct} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", default="resnet18:8,resnet50:1,mobilenet_v2:1,densenet121:1",
                    help="comma-separated model:batch at the model's default input size")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--layout", default=None, help="compile(layout=...); default: compile's default")
    ap.add_argument("--peak", type=float, default=116.0, help="register tile GFLOP/s per core (bench/tile_peak.py)")
    args = ap.parse_args()
    threads = int(os.environ.get("NUMBA_NUM_THREADS", os.cpu_count() or 1))
    peak = args.peak * threads
    print(f"peak: {args.peak} GFLOP/s per core x {threads} threads = {peak:.0f} GFLOP/s; load average "
          f"{os.getloadavg()[0]:.1f}")
    for item in args.workloads.split(","):
        name, batch = item.split(":")
        print("\n".join(breakdown(name, int(batch), args.rounds, args.layout, peak)), "\n", flush=True)


if __name__ == "__main__":
    main()
