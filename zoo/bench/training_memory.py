"""Memory of one training step: the compiled step's memory plan (no budget, ``memory_budget=0.5``, the smallest
feasible budget) against PyTorch eager's peak RSS growth over the same step, each measured in its own process.

    .venv/bin/python -m zoo.bench.training_memory [--workloads resnet50,resnet18_cifar,densenet121] [--steps 3]
    .venv/bin/python -m zoo.bench.training_memory --interleave ROUNDS [--workloads ...] [--budgets none,0.5,smallest]
        # step-time ratios only

For each workload and budget a child process builds the model on the numba backend, compiles the step
(``graph.compile_step``, SGD with momentum), runs one warm-up step (JIT, first touch), resets the kernel's peak-RSS
counter (``/proc/self/clear_refs``) after returning freed heap memory to the system (``malloc_trim``: importing
the engine tunes malloc to keep freed memory for reuse, which would hide a step's allocations), then times
``--steps`` steps and reads ``VmHWM``. Reported per row: the
planner's numbers (bytes), the process's peak RSS growth over the timed steps beyond what it held before them
(the arena, weights and optimizer state are already resident then), and the median step time. The PyTorch row
runs the same architecture (zoo/bench/models.py definitions) the same way; its growth is the activations, gradients
and workspace a step allocates and frees.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

WORKLOADS = {  # model, batch, input, classes
    "resnet50": ("resnet50", 16, (3, 224, 224), 1000),
    "resnet18_cifar": ("resnet18_cifar", 32, (3, 32, 32), 10),
    "densenet121": ("densenet121", 16, (3, 224, 224), 1000),
}

_CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, {root!r})
import numpy as np
impl, name, budget, steps = {impl!r}, {name!r}, {budget!r}, {steps!r}
model_name, batch, inp, classes = {wl!r}

def rss(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field)) * 1024

rng = np.random.default_rng(0)
xa = rng.standard_normal((batch, *inp), dtype=np.float32)
ya = rng.integers(0, classes, batch).astype(np.int64)
out = {{}}
if impl == "torch":
    import torch
    from zoo.bench.models import _torch_models
    torch.set_num_threads(2)
    torch.manual_seed(0)
    m = _torch_models()[model_name](classes)
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.from_numpy(xa), torch.from_numpy(ya)
    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
else:
    import engine, graph, zoo
    import engine.functional as F
    engine.set_backend("numba")
    engine.manual_seed(0)
    m = zoo.get(model_name, num_classes=classes)
    m.train()
    opt = engine.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x, y = engine.tensor(xa), engine.tensor(ya)
    if impl == "eager":
        def step():
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
    else:
        s = graph.compile_step(m, F.cross_entropy, opt, x, y, backend="numba", memory_budget=budget)
        mem = s.report["memory"]
        out.update(planned_bytes=mem["arena_bytes"], lower_bound_bytes=mem["lower_bound_bytes"],
                   naive_bytes=mem["naive_bytes"], remat=s.report.get("remat"),
                   saved_for_backward=s.report["saved_for_backward"])
        def step():
            s(x, y)
step()
import ctypes
ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand back what the warm-up step freed (the engine's malloc tuning keeps it)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = rss("VmRSS:")
ts = []
for _ in range(steps):
    t0 = time.perf_counter()
    step()
    ts.append(time.perf_counter() - t0)
out.update(rss_before_bytes=before, peak_growth_bytes=rss("VmHWM:") - before, step_ms=statistics.median(ts) * 1e3)
if out.get("remat"):
    out["remat"].pop("recomputed_values", None)
print(json.dumps(out))
"""


def measure(impl: str, workload: str, budget: float | None = None, steps: int = 3) -> dict:
    """One row, in a child process (``impl``: "torch", "eager" or "compiled")."""
    import zoo

    root = os.path.dirname(os.path.dirname(os.path.abspath(zoo.__file__)))
    code = _CHILD.format(root=root, impl=impl, name=workload, budget=budget, steps=steps, wl=WORKLOADS[workload])
    env = dict(os.environ)
    if impl == "torch":  # PyTorch with its own OpenMP defaults (see zoo/bench/models.py: torch_row_isolated)
        env.pop("OMP_WAIT_POLICY", None)
        env.pop("GOMP_SPINCOUNT", None)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"training_memory: {impl} {workload} budget={budget} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def smallest_budget(workload: str) -> int:
    """The smallest planned peak the rematerializer reaches for ``workload`` (a shape-only compile, no kernels)."""
    import numpy as np

    import engine
    import engine.functional as F
    import graph
    import zoo
    from engine import Spec

    model_name, batch, inp, classes = WORKLOADS[workload]
    m = zoo.get(model_name, num_classes=classes)
    m.train()
    opt = engine.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    specs = (Spec((batch, *inp), np.float32), Spec((batch,), np.int64))
    try:
        graph.compile_step(m, F.cross_entropy, opt, *specs, backend="numpy", memory_budget=1)
    except graph.BudgetError as e:
        return e.smallest
    raise AssertionError("a 1-byte budget cannot be feasible")


def interleaved_times(workload: str, budgets: list[float | None], rounds: int = 5) -> dict:
    """Step times of the compiled step under each budget, measured in one process with the calls interleaved
    (one step of each budget per round, the order rotating), so a loaded machine slows all of them alike.
    Returns the median ms per budget and the median over rounds of each budget's time / the first budget's."""
    import statistics
    import time

    import numpy as np

    import engine
    import engine.functional as F
    import graph
    import zoo

    engine.set_backend("numba")
    engine.manual_seed(0)
    model_name, batch, inp, classes = WORKLOADS[workload]
    m = zoo.get(model_name, num_classes=classes)
    m.train()
    opt = engine.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = engine.tensor(rng.standard_normal((batch, *inp), dtype=np.float32))
    y = engine.tensor(rng.integers(0, classes, batch).astype(np.int64))
    steps = [graph.compile_step(m, F.cross_entropy, opt, x, y, backend="numba", memory_budget=b) for b in budgets]
    for s in steps:
        s(x, y)
    ts: list[list[float]] = [[] for _ in steps]
    cpu: list[list[float]] = [[] for _ in steps]  # process CPU time, all threads: less sensitive to other jobs
    for r in range(rounds):
        for i in [(r + j) % len(steps) for j in range(len(steps))]:
            t0, c0 = time.perf_counter(), time.process_time()
            steps[i](x, y)
            ts[i].append(time.perf_counter() - t0)
            cpu[i].append(time.process_time() - c0)
    return {"budgets": budgets, "ms": [statistics.median(t) * 1e3 for t in ts],
            "ratio": [statistics.median(a / b for a, b in zip(t, ts[0])) for t in ts],
            "cpu_ratio": [statistics.median(a / b for a, b in zip(t, cpu[0])) for t in cpu],
            "planned_bytes": [s.report["memory"]["arena_bytes"] for s in steps],
            "policy": [(s.report.get("remat") or {}).get("policy", "none") for s in steps],
            "flops": [s.graph.stats()["flops"] for s in steps]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--interleave", type=int, metavar="ROUNDS",
                    help="instead: step times of the --budgets, interleaved in one process for ROUNDS rounds (time "
                         "ratios on a busy machine)")
    ap.add_argument("--budgets", default="none,0.5,smallest",
                    help="with --interleave: fractions, 'none' (the first is the reference) and 'smallest' "
                         "(the smallest feasible budget)")
    a = ap.parse_args(argv)
    mib = 2**20
    rows = []
    if a.interleave:
        for w in a.workloads.split(","):
            budgets = [None if b == "none" else smallest_budget(w) + 1 if b == "smallest" else float(b)
                       for b in a.budgets.split(",")]
            r = interleaved_times(w, budgets, a.interleave)
            rows.append({"workload": w, **r})
            print(f"{w}: " + "; ".join(f"budget {b if b is None or b <= 1 else 'smallest'}: {p} "
                                        f"{n / mib:.0f} MiB = {n / r['planned_bytes'][0]:.3f}x, FLOPs "
                                        f"{fl / r['flops'][0] - 1:+.1%}, {ms:.0f} ms, {q:.3f}x (CPU time {c:.3f}x)"
                                        for b, p, n, fl, ms, q, c in zip(r["budgets"], r["policy"],
                                                                         r["planned_bytes"], r["flops"], r["ms"],
                                                                         r["ratio"], r["cpu_ratio"])),
                  flush=True)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(rows, f, indent=1)
        return
    for w in a.workloads.split(","):
        torch_row = measure("torch", w, steps=a.steps)
        eager = measure("eager", w, steps=a.steps)
        smallest = smallest_budget(w)
        tg = torch_row["peak_growth_bytes"]
        print(f"{w}: PyTorch eager growth {tg / mib:.0f} MiB, {torch_row['step_ms']:.0f} ms; "
              f"our eager growth {eager['peak_growth_bytes'] / mib:.0f} MiB, {eager['step_ms']:.0f} ms", flush=True)
        base: dict = {}
        for label, budget in (("none", None), ("0.5", 0.5), ("smallest", smallest + 1)):
            r = measure("compiled", w, budget, a.steps)
            base = base or r
            rows.append({"workload": w, "budget": label, **r, "torch_growth_bytes": tg,
                         "torch_step_ms": torch_row["step_ms"], "eager_step_ms": eager["step_ms"],
                         "eager_growth_bytes": eager["peak_growth_bytes"]})
            p = r["planned_bytes"]
            print(f"  budget {label:>8}: planned {p / mib:7.0f} MiB ({p / base['planned_bytes']:.2f}x no-budget, "
                  f"{p / tg:.2f}x PyTorch growth), RSS before {r['rss_before_bytes'] / mib:.0f} MiB + growth "
                  f"{r['peak_growth_bytes'] / mib:.0f} MiB, step {r['step_ms']:.0f} ms "
                  f"({r['step_ms'] / base['step_ms']:.2f}x no-budget)", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
