"""Compiled training vs eager on the numba backend: step time (median ms) and compile time of the training graph.

    .venv/bin/python bench/compiled_training.py [--steps N] [--models lenet5,resnet18_cifar] [--torch]
        [--clock wall|thread] [--rounds R]

Each row: eager numba step (zero_grad, forward, loss, backward, SGD-momentum step), compile() + eager optimizer,
and compile_step, on the same model and batch in one process (``--torch``: and PyTorch's eager step of the same
workload, bench's definition, with numba's thread count). ``--rounds R`` repeats the rows R times, interleaved,
and reports medians and the median of the per-round ratios. ``--clock thread`` times the main thread's CPU time:
with ``NUMBA_NUM_THREADS=1`` every kernel (and PyTorch's one thread) runs there, so a loaded machine does not
inflate it. ``--interleave R``: instead, R rounds of eager, compile_step, compile_step without the backward fusion
passes (``--without``, default: all three of ``training_joint``'s) and, with ``--torch``, PyTorch, each
timed for ``--steps`` steps per round in a rotating order (so a burst of load on a shared machine hits every
variant alike); medians over the rounds and the median of the per-round ratios. Also the time to build a
ResNet-50 training graph (trace + autodiff + passes + plan, kernels excluded).
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


CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}
_clock = [time.perf_counter]


def _time(fn, steps: int) -> float:
    clock = _clock[0]
    fn()  # JIT, compile, first touch
    ts = []
    for _ in range(steps):
        t0 = clock()
        fn()
        ts.append(clock() - t0)
    return statistics.median(ts) * 1e3


def _torch_step(name: str):
    from zoo.bench.models import MODEL_WORKLOADS, torch_model_runner

    wl = next(w for w in MODEL_WORKLOADS if w.model == name and w.kind == "train")
    return torch_model_runner(wl.scaled(batch=BATCH[name]))


def _setup(name: str):
    engine.set_backend("numba")
    engine.manual_seed(0)
    m = zm.get(name, **({"num_classes": 10} if zm.spec(name).default_num_classes != 10 else {}))
    m.train()
    x = Tensor(np.random.default_rng(0).standard_normal((BATCH[name], *zm.input_size(name))).astype(np.float32))
    y = Tensor(np.random.default_rng(1).integers(0, 10, BATCH[name]))
    return m, x, y, optim.SGD(m.parameters(), lr=0.01, momentum=0.9)


def row(name: str, steps: int, torch: bool = False) -> dict:
    m, x, y, opt = _setup(name)

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
    if torch:
        out["torch_ms"] = _time(_torch_step(name), steps)
        out["step_over_torch"] = out["compile_step_ms"] / out["torch_ms"]
    return out


BACKWARD_FUSION = ("fuse_pool_relu_grad", "fuse_cross_entropy", "fold_transpose_matmul")


def interleaved(name: str, steps: int, rounds: int, torch: bool,
                without: tuple[str, ...] = BACKWARD_FUSION) -> dict:
    """Median step times (ms) and per-round ratios of the variants, timed in rotating order round by round."""
    m, x, y, opt = _setup(name)

    def eager():
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()

    unfused = [p for p in graph.passes.PIPELINES["training_joint"] if p not in without]
    step = graph.compile_step(m, F.cross_entropy, opt, x, y, backend="numba")
    plain = graph.compile_step(m, F.cross_entropy, opt, x, y, backend="numba", passes=unfused)
    fns = {"eager": eager, "compile_step": lambda: step(x, y), "compile_step_unfused": lambda: plain(x, y)}
    if torch:
        fns["torch"] = _torch_step(name)
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            times[k].append(_time(fns[k], steps))
    out = {f"{k}_ms": statistics.median(v) for k, v in times.items()}
    for base in [b for b in ("eager", "torch", "compile_step_unfused") if b in times]:
        ratios = [a / b for a, b in zip(times["compile_step"], times[base])]
        out[f"step_over_{base}"] = statistics.median(ratios)
        out[f"step_over_{base}_range"] = (min(ratios), max(ratios))
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
    ap.add_argument("--torch", action="store_true", help="also PyTorch's eager step (same threads)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--interleave", type=int, default=0, metavar="R", help="R interleaved rounds (see above)")
    ap.add_argument("--without", default=",".join(BACKWARD_FUSION),
                    help="passes the compile_step_unfused variant of --interleave leaves out (comma-separated)")
    a = ap.parse_args()
    _clock[0] = CLOCKS[a.clock]
    if a.interleave:
        for name in a.models.split(","):
            r = interleaved(name, a.steps, a.interleave, a.torch, tuple(a.without.split(",")))
            print(f"{name} b{BATCH[name]}, {a.interleave} interleaved rounds x {a.steps} steps ({a.clock} clock): "
                  + ", ".join(f"{k} {v[0]:.2f}-{v[1]:.2f}" if isinstance(v, tuple) else f"{k} {v:.2f}"
                              for k, v in r.items()), flush=True)
        return
    for name in a.models.split(","):
        rounds = []
        for _ in range(a.rounds):
            r = row(name, a.steps, a.torch)
            rounds.append(r)
            print(f"{r['model']} b{r['batch']}: eager {r['eager_ms']:.2f} ms, compile()+eager opt "
                  f"{r['compile_fwd_ms']:.2f} ms, compile_step {r['compile_step_ms']:.2f} ms "
                  f"({r['step_over_eager']:.2f}x eager" + (f", torch {r['torch_ms']:.2f} ms, "
                  f"{r['step_over_torch']:.2f}x torch)" if a.torch else ")"), flush=True)
        if a.rounds > 1:
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0] if k.endswith(("_ms", "_over_eager",
                                                                                                   "_over_torch"))}
            print(f"{name} medians of {a.rounds} rounds ({a.clock} clock): " +
                  ", ".join(f"{k} {v:.2f}" for k, v in med.items()), flush=True)
    if not a.no_compile_time:
        print(f"ResNet-50 b16 224^2 training graph (trace+autodiff+passes+plan): {resnet50_graph_time():.2f} s")


if __name__ == "__main__":
    main()
