"""Per-node cost of compiled execution outside the kernels' own loops (issue 16): MobileNetV2 and LeNet-5 batch 1
inference, the LeNet-5 batch 64 and ResNet-18 CIFAR batch 32 training steps (``graph.compile_step``, SGD with
momentum).

    PYTHONPATH=$PWD .venv/bin/python bench/executor_overhead.py [--repeats R] [--workloads mobilenet_v2,lenet5]

Three numbers per workload, all per node (kernel call) of the compiled graph:
- ``executor``: the run loop alone: the same executor with every kernel a no-op (slots, outputs, the loop);
- ``outside kernels (profiler)``: :meth:`engine.profiler.Profile.graph_overhead` of real numba runs, the
  executor's time between kernel calls as the profiler reports it;
- ``floor at a tiny input``: a whole numba run of the same model at batch 1 and its smallest input size (little
  arithmetic) divided by its kernel calls: executor + kernel wrappers + numba dispatch + thread launches, an upper
  bound on what a node costs beyond its arithmetic.
Medians of ``repeats`` rounds; the machine is shared, so compare numbers from one run only. On a loaded machine
``NUMBA_NUM_THREADS=1 ... --clock thread`` times the CPU work itself: waiting for a core (which a parallel launch
does, up to milliseconds when other processes hold the cores) is not counted. The profiler's number is always
wall time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import engine
import engine.functional as F
import engine.optim as optim
import graph
import zoo.models as zm
from engine import Tensor
from engine.backend import Backend
from graph.executor import ArenaExecutor

# label -> (zoo model, "infer" or "train", batch)
WORKLOADS = {"mobilenet_v2": ("mobilenet_v2", "infer", 1), "lenet5_infer": ("lenet5", "infer", 1),
             "lenet5": ("lenet5", "train", 64), "resnet18_cifar": ("resnet18_cifar", "train", 32)}


def _noop(*args: Any, **kwargs: Any) -> None:
    pass


class NullBackend(Backend):
    """Every primitive's kernel does nothing: what is left of a run is the executor."""

    def __init__(self) -> None:
        super().__init__("null")

    def has_kernel(self, prim_name: str) -> bool:
        return True

    def kernel(self, prim_name: str) -> Any:
        return _noop


CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}
_clock = [time.perf_counter]


def _median_s(fn: Callable[[], Any], calls: int, repeats: int) -> float:
    clock = _clock[0]
    fn()
    rounds = []
    for _ in range(repeats):
        t0 = clock()
        for _ in range(calls):
            fn()
        rounds.append((clock() - t0) / calls)
    return statistics.median(rounds)


def _model(name: str, mode: str) -> Any:
    engine.manual_seed(0)
    m = zm.get(name, **({"num_classes": 10} if zm.spec(name).default_num_classes != 10 else {}))
    m.train() if mode == "train" else m.eval()
    return m


def _compiled(name: str, tiny: bool = False) -> tuple[Callable[[], Any], Any]:
    """(one call, the object with .graph/.plan/.executor) of the workload on numba; ``tiny``: batch 1 at the
    model's smallest input size."""
    model, mode, batch = WORKLOADS[name]
    m = _model(model, mode)
    batch = 1 if tiny else batch
    shape = (batch, *(zm.small_input_size(model) if tiny else zm.input_size(model)))
    x = Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    if mode == "infer":
        cm = graph.compile(m, x, backend="numba")
        return (lambda: cm(x)), cm.compiled
    y = Tensor(np.random.default_rng(1).integers(0, 10, batch))
    step = graph.compile_step(m, F.cross_entropy, optim.SGD(m.parameters(), lr=0.01, momentum=0.9), x, y,
                              backend="numba")
    return (lambda: step(x, y)), step


def measure(name: str, repeats: int) -> dict[str, Any]:
    engine.set_backend("numba")
    run, c = _compiled(name)
    ex = c.executor
    nodes = _kernel_calls(c)
    real = _median_s(run, 3, repeats)
    with engine.profile() as prof:
        for _ in range(3 * repeats):
            run()
    # the same graph, plan and outputs on the null backend
    null = ArenaExecutor(c.graph, c.plan, NullBackend(), writes=_writes(c))
    c.executor = null
    try:
        noop = _median_s(run, 20, repeats)
    finally:
        c.executor = ex
    tiny_run, tiny = _compiled(name, tiny=True)
    floor = _median_s(tiny_run, 10, repeats)
    overhead = prof.graph_overhead()["outside_us_per_node"] if hasattr(prof, "graph_overhead") else float("nan")
    return {"workload": name, "nodes": nodes, "run_ms": real * 1e3, "executor_us_per_node": noop / nodes * 1e6,
            "outside_us_per_node": overhead, "tiny_floor_us_per_node": floor / _kernel_calls(tiny) * 1e6}


def _kernel_calls(c: Any) -> int:
    """Kernel calls per run: the nodes less the reshapes the memory plan makes free aliases."""
    return sum(1 for n in c.graph.nodes if not (n in c.plan.inplace and n.op.name == "reshape"))


def _writes(c: Any) -> dict[int, Any] | None:
    g = c.graph
    if "state_outputs" not in g.meta or not g.meta.get("step"):
        return None
    by_name = {v.name: v for v in g.inputs}
    return {g.meta["n_outputs"] + i: by_name[n] for i, n in enumerate(g.meta["state_outputs"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="thread: the main thread's CPU time, which a loaded machine does not inflate (with "
                         "NUMBA_NUM_THREADS=1 every kernel runs on that thread)")
    a = ap.parse_args()
    _clock[0] = CLOCKS[a.clock]
    for name in a.workloads.split(","):
        r = measure(name, a.repeats)
        print(f"{name}: {r['nodes']} kernel calls, run {r['run_ms']:.2f} ms; per node: executor "
              f"{r['executor_us_per_node']:.2f} us, outside kernels (profiler) {r['outside_us_per_node']:.2f} us, "
              f"floor at a tiny input {r['tiny_floor_us_per_node']:.1f} us", flush=True)


if __name__ == "__main__":
    main()
