"""The op-level benchmark workloads and their runners, shared by bench/test_ops_bench.py and zoo/bench/report.py.

A runner times one *kernel call sequence* on preallocated arrays, so engine/autograd overhead and JIT compile
are excluded (every runner is called once before timing). "fwd" is conv2d; "fwd+bwd" is conv2d followed by
conv2d_input_grad and conv2d_weight_grad (PyTorch: forward then ``backward`` through autograd).
FLOPs count multiplies and adds separately: ``2 * MACs``; fwd+bwd is three times the forward.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConvWorkload:
    name: str
    x: tuple[int, int, int, int]  # N, C, H, W
    w: tuple[int, int, int, int]  # O, C/g, kh, kw
    stride: int = 1
    padding: int = 0

    @property
    def attrs(self) -> dict:
        p = self.padding
        return {"stride": (self.stride, self.stride), "padding": ((p, p), (p, p)), "dilation": (1, 1), "groups": 1}

    @property
    def out(self) -> tuple[int, int, int, int]:
        n, _, h, w = self.x
        o, _, kh, kw = self.w
        return (n, o, (h + 2 * self.padding - kh) // self.stride + 1, (w + 2 * self.padding - kw) // self.stride + 1)

    @property
    def flops(self) -> int:
        _, cg, kh, kw = self.w
        return 2 * math.prod(self.out) * cg * kh * kw


CONV_WORKLOADS = [
    ConvWorkload("resnet18 3x3 56x56x64 b8", (8, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    ConvWorkload("resnet18 3x3 28x28x128 b8", (8, 128, 28, 28), (128, 128, 3, 3), 1, 1),
    ConvWorkload("resnet18 3x3 14x14x256 b8", (8, 256, 14, 14), (256, 256, 3, 3), 1, 1),
    ConvWorkload("resnet18 3x3 7x7x512 b8", (8, 512, 7, 7), (512, 512, 3, 3), 1, 1),
    ConvWorkload("1x1 56x56 64->256 b8", (8, 64, 56, 56), (256, 64, 1, 1), 1, 0),
    ConvWorkload("lenet conv1 1x28x28 5x5 pad2 b64", (64, 1, 28, 28), (6, 1, 5, 5), 1, 2),
]
MODES = ("fwd", "fwd+bwd")


def tiny(wl: ConvWorkload) -> ConvWorkload:
    """``wl``'s kernel, stride and padding on at most 4 channels of an 8x8 image, batch 1 (smoke runs, tests)."""
    n, c, h, w = wl.x
    o, cg, kh, kw = wl.w
    c, o = min(c, 4), min(o, 4)
    return ConvWorkload(wl.name, (1, c, min(h, 8), min(w, 8)), (o, c, kh, kw), wl.stride, wl.padding)


def without_missing_torch(impls: list[str]) -> list[str]:
    """``impls`` less ``torch`` and ``torch-compile`` when PyTorch (an optional reference, not a dependency) is not
    installed."""
    if any(i.startswith("torch") for i in impls):
        try:
            import torch  # noqa: F401
        except ImportError:
            print("# torch: not installed, skipped", file=sys.stderr)
            return [i for i in impls if not i.startswith("torch")]
    return impls


def _arrays(wl: ConvWorkload, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(wl.x, dtype=np.float32)
    w = (rng.standard_normal(wl.w, dtype=np.float32) / math.sqrt(math.prod(wl.w[1:]))).astype(np.float32)
    gy = rng.standard_normal(wl.out, dtype=np.float32)
    return x, w, gy


def engine_runner(backend_name: str, wl: ConvWorkload, mode: str) -> Callable[[], None]:
    """Calls of the backend's conv kernels on preallocated outputs."""
    import engine

    be = engine.get_backend(backend_name)
    fwd, gin, gwt = be.kernel("conv2d"), be.kernel("conv2d_input_grad"), be.kernel("conv2d_weight_grad")
    x, w, gy = _arrays(wl)
    y, gx, gw = np.empty(wl.out, np.float32), np.empty_like(x), np.empty_like(w)
    a = wl.attrs

    def run_fwd() -> None:
        fwd(x, w, out=y, **a)

    def run_fwd_bwd() -> None:
        fwd(x, w, out=y, **a)
        gwt(x, gy, out=gw, weight_shape=wl.w, **a)  # the engine's order (engine/ops/conv.py vjp)
        gin(gy, w, out=gx, input_shape=wl.x, **a)

    return run_fwd if mode == "fwd" else run_fwd_bwd


def torch_runner(wl: ConvWorkload, mode: str) -> Callable[[], None]:
    import numba
    import torch

    torch.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # same thread budget as the numba kernels
    x, w, gy = (torch.from_numpy(a) for a in _arrays(wl))
    if mode == "fwd":
        def run_fwd() -> None:
            with torch.no_grad():
                torch.nn.functional.conv2d(x, w, stride=wl.stride, padding=wl.padding)

        return run_fwd
    xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)

    def run_fwd_bwd() -> None:
        xg.grad = wg.grad = None
        torch.nn.functional.conv2d(xg, wg, stride=wl.stride, padding=wl.padding).backward(gy)

    return run_fwd_bwd


def sgemm_runner(n: int = 2048, product: Callable | None = None) -> tuple[Callable[[], None], int]:
    """A single-precision GEMM n x n x n and its FLOPs: numpy's BLAS (``np.matmul``, the roofline the conv
    kernels are judged against) or ``product(a, b, out)``."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    if product is None:
        return (lambda: np.matmul(a, b, out=c)), 2 * n ** 3
    return (lambda: product(a, b, c)), 2 * n ** 3


def numba_gemm_runner(n: int = 2048) -> tuple[Callable[[], None], int]:
    """The numba SIMD GEMM (backends/numba/gemm.py) on the same product as :func:`sgemm_runner`."""
    from backends.numba.gemm import matmul

    return sgemm_runner(n, matmul)


def time_median(fn: Callable[[], None], min_time: float = 0.5, max_reps: int = 50, warmup: int = 2) -> float:
    """Median seconds per call after ``warmup`` untimed calls (which also absorb any JIT compile)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
