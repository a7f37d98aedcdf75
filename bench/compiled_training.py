"""Compiled training vs eager on the numba backend: step time (median ms) and compile time of the training graph.

    .venv/bin/python bench/compiled_training.py [--steps N] [--models lenet5,resnet18_cifar]

Each row: eager numba step (zero_grad, forward, loss, backward, SGD-momentum step), compile() + eager optimizer,
and compile_step, on the same model and batch in one process. Also the time to build a ResNet-50 training graph
(trace + autodiff + passes + plan, kernels excluded).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import engine
import engine.functional as F
import engine.optim as optim
import graph
import zoo.models as zm
from engine import Spec, Tensor

BATCH = {"lenet5": 64, "resnet18_cifar": 32}


def _time(fn, steps: int) -> float:
    fn()  # JIT, compile, first touch
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def row(name: str, steps: int) -> dict:
    engine.set_backend("numba")
    engine.manual_seed(0)
    m = zm.get(name, **({"num_classes": 10} if zm.spec(name).default_num_classes != 10 else {}))
    m.train()
    x = Tensor(np.random.default_rng(0).standard_normal((BATCH[name], *zm.input_size(name))).astype(np.float32))
    y = Tensor(np.random.default_rng(1).integers(0, 10, BATCH[name]))
    opt = optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

    def eager(fwd=m):
        opt.zero_grad()
        F.cross_entropy(fwd(x), y).backward()
        opt.step()

    cm = graph.compile(m, x, backend="numba")
    step = graph.compile_step(m, F.cross_entropy, opt, x, y, backend="numba")
    out = {"model": name, "batch": BATCH[name]}
    out["eager_ms"] = _time(eager, steps)
    out["compile_fwd_ms"] = _time(lambda: eager(cm), steps)
    out["compile_step_ms"] = _time(lambda: step(x, y), steps)
    out["step_over_eager"] = out["compile_step_ms"] / out["eager_ms"]
    return out


def resnet50_graph_time(repeats: int = 3) -> float:
    m = zm.get("resnet50")
    m.train()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        graph.compile_step(m, F.cross_entropy, opt, Spec((16, 3, 224, 224), np.float32), Spec((16,), np.int64),
                           backend="numpy")
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--models", default="lenet5,resnet18_cifar")
    ap.add_argument("--no-compile-time", action="store_true")
    a = ap.parse_args()
    for name in a.models.split(","):
        r = row(name, a.steps)
        print(f"{r['model']} b{r['batch']}: eager {r['eager_ms']:.1f} ms, compile()+eager opt "
              f"{r['compile_fwd_ms']:.1f} ms, compile_step {r['compile_step_ms']:.1f} ms "
              f"({r['step_over_eager']:.2f}x eager)", flush=True)
    if not a.no_compile_time:
        print(f"ResNet-50 b16 224^2 training graph (trace+autodiff+passes+plan): {resnet50_graph_time():.2f} s")


if __name__ == "__main__":
    main()
