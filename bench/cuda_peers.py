"""The cuda backend against cuBLAS / cuDNN / PyTorch eager on one GPU (issue 12 section 4), printed as one table.

    PYTHONPATH=. python3 bench/cuda_peers.py [--only sgemm,conv,resnet50] [--repeats N] [--json FILE]
    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=. python3 bench/cuda_peers.py --tiny   # our side only, tiny sizes (smoke)

Rows (FP32 everywhere; PyTorch with TF32 off for matmul and cuDNN, cudnn.benchmark off):
- SGEMM 4096^3: GFLOP/s of our matmul kernel vs torch.matmul (cuBLAS);
- ResNet-50's 3x3 convolutions at 224x224, batch 32: forward, and backward (input and weight gradients) vs cuDNN;
- ResNet-50 224x224 batch 32: graph.compile inference and a graph.compile_step SGD-momentum step vs PyTorch eager;
- peak device memory of that training step: ours (the device memory the step's process holds, from
  cudaMemGetInfo, since numba keeps no allocation counter; plus the compile report's planned arena) vs
  torch.cuda.max_memory_allocated.

Times are medians of ``--repeats`` calls, each between device synchronizations, after one untimed call (JIT
compilation, first touch). ``--tiny`` runs only our side at sizes the simulator finishes in seconds, so the script's
logic can be checked without a GPU; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ROWS = ("sgemm", "conv", "resnet50")


@dataclass(frozen=True)
class Sizes:
    gemm: int
    batch: int
    image: int
    # ResNet-50's 3x3 convolutions: (channels, input size, stride) at a 224x224 input
    convs: tuple[tuple[int, int, int], ...]
    model_width: int  # ResNet width (64: the real network)


FULL = Sizes(4096, 32, 224, ((64, 56, 1), (128, 56, 2), (128, 28, 1), (256, 28, 2), (256, 14, 1), (512, 14, 2),
                             (512, 7, 1)), 64)
TINY = Sizes(16, 2, 16, ((4, 6, 1), (4, 6, 2)), 4)  # batch 2: training BatchNorm needs 2 values at 1x1


@dataclass
class Row:
    what: str
    ours: float | None = None
    theirs: float | None = None
    unit: str = "ms"
    peer: str = "PyTorch"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """ours / theirs for times and bytes (lower is better), theirs / ours for rates, so > 1 always means
        ours is behind."""
        if self.ours is None or self.theirs is None or not self.ours or not self.theirs:
            return None
        return self.theirs / self.ours if self.unit.endswith("/s") else self.ours / self.theirs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cuda_peers", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(ROWS),
                   help=f"comma list of {','.join(ROWS)} (default all)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (default 5)")
    p.add_argument("--tiny", action="store_true", help="our side only, tiny sizes (the simulator; no peers)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the rows to FILE")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in args.only if s not in ROWS]
    if bad:
        p.error(f"--only: unknown rows {bad}; choose from {', '.join(ROWS)}")
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1 (got {args.repeats})")
    return args


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "B":
        return f"{v / 2**20:.0f} MiB"
    return f"{v:.1f}" if v >= 10 else f"{v:.3f}"


def table(rows: list[Row], device: str) -> str:
    head = ("measurement", "ours", "peer", "unit", "ours vs peer", "note")
    body = [(r.what, fmt(r.ours, r.unit), fmt(r.theirs, r.unit), r.unit if r.unit != "B" else "",
             "-" if r.ratio is None else (f"{1 / r.ratio:.0%} of {r.peer}" if r.unit.endswith("/s")
                                          else f"{r.ratio:.2f}x {r.peer}"), r.note) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([f"device: {device}", line(head), line(["-" * w for w in widths]), *map(line, body)])


def median_ms(fn: Callable[[], Any], sync: Callable[[], None], repeats: int) -> float:
    fn()
    sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


# ---- our side ---------------------------------------------------------------------------------------------------
def _ours():
    import engine

    engine.set_backend("cuda")
    return engine, engine.get_backend("cuda")


def ours_sgemm(n: int, repeats: int) -> float:
    engine, be = _ours()
    import engine.functional as F

    rng = np.random.default_rng(0)
    a, b = (engine.Tensor(rng.standard_normal((n, n)).astype(np.float32)).to("cuda") for _ in range(2))
    with engine.no_grad():
        ms = median_ms(lambda: F.matmul(a, b), be.synchronize, repeats)
    return 2 * n ** 3 / (ms * 1e-3) / 1e9


def _conv_inputs(c: int, hw: int, batch: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c, hw, hw)).astype(np.float32)
    w = (rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32)
    return x, w


def ours_conv(c: int, hw: int, stride: int, batch: int, repeats: int) -> tuple[float, float]:
    """(forward ms, backward ms: input and weight gradients)."""
    engine, be = _ours()
    import engine.functional as F

    x, w = _conv_inputs(c, hw, batch)
    xd, wd = engine.Tensor(x).to("cuda"), engine.Tensor(w).to("cuda")
    with engine.no_grad():
        fwd = median_ms(lambda: F.conv2d(xd, wd, stride=stride, padding=1), be.synchronize, repeats)
    xg, wg = xd.detach().requires_grad_(), wd.detach().requires_grad_()
    y = F.conv2d(xg, wg, stride=stride, padding=1)
    gy = engine.Tensor(np.ones(y.shape, np.float32)).to("cuda")

    def backward():
        xg.grad = wg.grad = None
        y.backward(gy, retain_graph=True)

    return fwd, median_ms(backward, be.synchronize, repeats)


def _model(width: int):
    import zoo.models as zm

    return zm.get("resnet50", num_classes=1000, width=width)


def _free_bytes() -> float:
    """Free device memory (cudaMemGetInfo) after numba's pending frees are released (it frees lazily); the
    simulator reports infinity."""
    from numba import cuda

    ctx = cuda.current_context()
    if hasattr(ctx, "deallocations"):
        ctx.deallocations.clear()
    return float(ctx.get_memory_info()[0])


def ours_resnet50(s: Sizes, repeats: int) -> dict[str, float]:
    engine, be = _ours()
    import engine.functional as F
    import graph
    from engine import optim

    rng = np.random.default_rng(0)
    x = rng.standard_normal((s.batch, 3, s.image, s.image)).astype(np.float32)
    y = rng.integers(0, 1000, s.batch)
    engine.manual_seed(0)
    model = _model(s.model_width).eval().to("cuda")
    xd, yd = engine.Tensor(x).to("cuda"), engine.Tensor(y).to("cuda")
    t0 = time.perf_counter()
    cm = graph.compile(model, x, backend="cuda")
    compile_s = time.perf_counter() - t0
    infer = median_ms(lambda: cm(xd), be.synchronize, repeats)
    cm = None  # drop the inference arena before measuring the training step
    model.train()
    free0 = _free_bytes()
    step = graph.compile_step(model, F.cross_entropy, optim.SGD(model.parameters(), lr=0.01, momentum=0.9), x, y,
                              backend="cuda")
    train = median_ms(lambda: step(xd, yd), be.synchronize, repeats)
    free1 = _free_bytes()
    return {"infer_ms": infer, "train_ms": train, "compile_s": compile_s,
            "device_bytes": float(free0 - free1), "arena_bytes": float(step.report["memory"]["arena_bytes"])}


# ---- PyTorch's side -----------------------------------------------------------------------------------------------
def _torch():
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    return torch


def torch_sgemm(n: int, repeats: int) -> float:
    torch = _torch()
    a, b = (torch.randn(n, n, device="cuda") for _ in range(2))
    ms = median_ms(lambda: a @ b, torch.cuda.synchronize, repeats)
    return 2 * n ** 3 / (ms * 1e-3) / 1e9


def torch_conv(c: int, hw: int, stride: int, batch: int, repeats: int) -> tuple[float, float]:
    torch = _torch()
    x, w = _conv_inputs(c, hw, batch)
    xd, wd = torch.tensor(x, device="cuda"), torch.tensor(w, device="cuda")
    with torch.no_grad():
        fwd = median_ms(lambda: torch.nn.functional.conv2d(xd, wd, stride=stride, padding=1),
                        torch.cuda.synchronize, repeats)
    xg, wg = xd.clone().requires_grad_(), wd.clone().requires_grad_()
    y = torch.nn.functional.conv2d(xg, wg, stride=stride, padding=1)
    gy = torch.ones_like(y)

    def backward():
        xg.grad = wg.grad = None
        y.backward(gy, retain_graph=True)

    return fwd, median_ms(backward, torch.cuda.synchronize, repeats)


def torch_resnet50(s: Sizes, repeats: int) -> dict[str, float]:
    torch = _torch()
    from zoo.bench.models import _torch_models

    torch.manual_seed(0)
    model = _torch_models()["resnet50"](1000).cuda()
    x = torch.randn(s.batch, 3, s.image, s.image, device="cuda")
    y = torch.randint(0, 1000, (s.batch,), device="cuda")
    model.eval()
    with torch.no_grad():
        infer = median_ms(lambda: model(x), torch.cuda.synchronize, repeats)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    train = median_ms(step, torch.cuda.synchronize, repeats)
    return {"infer_ms": infer, "train_ms": train, "peak_bytes": float(torch.cuda.max_memory_allocated())}


# ---- the table ----------------------------------------------------------------------------------------------------
def measure(args: argparse.Namespace) -> list[Row]:
    s, peers = (TINY, False) if args.tiny else (FULL, True)
    rows: list[Row] = []
    r = args.repeats
    if "sgemm" in args.only:
        rows.append(Row(f"SGEMM {s.gemm}^3", ours_sgemm(s.gemm, r), torch_sgemm(s.gemm, r) if peers else None,
                        "GFLOP/s", "cuBLAS", "goal >= 40%, stretch 60%"))
    if "conv" in args.only:
        for c, hw, st in s.convs:
            name = f"conv3x3 {c}ch {hw}x{hw}/{st} b{s.batch}"
            of, ob = ours_conv(c, hw, st, s.batch, r)
            tf, tb = torch_conv(c, hw, st, s.batch, r) if peers else (None, None)
            rows.append(Row(f"{name} fwd", of, tf, "ms", "cuDNN", "goal <= 3.3x, stretch 2x"))
            rows.append(Row(f"{name} bwd (dx+dw)", ob, tb, "ms", "cuDNN", "goal <= 3.3x, stretch 2x"))
    if "resnet50" in args.only:
        ours = ours_resnet50(s, r)
        theirs = torch_resnet50(s, r) if peers else {}
        tag = f"ResNet-50{'' if s.model_width == 64 else f' (width {s.model_width})'} {s.image}^2 b{s.batch}"
        rows.append(Row(f"{tag} inference (compiled)", ours["infer_ms"], theirs.get("infer_ms"), "ms",
                        "PyTorch eager", f"goal <= 3x, stretch 2x; compile {ours['compile_s']:.0f} s"))
        rows.append(Row(f"{tag} training step (compile_step)", ours["train_ms"], theirs.get("train_ms"), "ms",
                        "PyTorch eager", "goal <= 3x, stretch 2x"))
        rows.append(Row(f"{tag} training peak device memory", ours["device_bytes"], theirs.get("peak_bytes"), "B",
                        "max_memory_allocated",
                        f"goal <= 1.0x; ours: cudaMemGetInfo growth (planned arena "
                        f"{ours['arena_bytes'] / 2**20:.0f} MiB)"))
    return rows


def device_name(tiny: bool) -> str:
    if tiny:
        return "numba CUDA simulator (--tiny: numbers mean nothing)"
    from numba import cuda

    return cuda.get_current_device().name.decode() if isinstance(cuda.get_current_device().name, bytes) \
        else str(cuda.get_current_device().name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    rows = measure(args)
    print(table(rows, device_name(args.tiny)))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{**r.__dict__, "ratio": r.ratio} for r in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
