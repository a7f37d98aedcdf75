"""numba kernels: matmul and linear. 2-D float32 products run on :mod:`.gemm` (LeNet-5's fc1 at batch 64: forward
0.27 -> 0.24 ms, input gradient 0.24 -> 0.17, weight gradient 0.23 -> 0.22 vs BLAS), everything else on BLAS
(``np.matmul``); a few rows (batch 1) are dot products over W's rows with the bias added on the way, else the
bias epilogue of linear is a row kernel over the GEMM output."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, prange

from ._layout import bind, by_size, for_reuse, serial_twin
from .conv.epilogue import HAS_RES, Epilogue
from .conv.workspace import scratch
from .gemm import batched_gemm
from .gemm import matmul as gemm_matmul
from .gemm import supported as gemm_supported
from .table import backend


@njit(parallel=True, cache=True)
def add_row_bias(y, b):
    """y[r, :] += b for every row r of a 2-D array."""
    rows, cols = y.shape
    for r in prange(rows):
        for c in range(cols):
            y[r, c] += b[c]


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def rows_dot(x, w, b, out):
    """out[m, j] = sum_k x[m, k] * w[j, k] (+ b[j] where b holds one value per row of w) for a few rows m: one dot
    product per (m, j) over contiguous rows, each row of w read once, in parallel over j ("reassoc" lets LLVM
    vectorize the sum)."""
    mm, kk = x.shape
    has_b = b.shape[0] == w.shape[0]
    for j in prange(w.shape[0]):
        wr = w[j]
        for m in range(mm):
            xr = x[m]
            s = 0.0
            for k in range(kk):
                s += xr[k] * wr[k]
            out[m, j] = s + b[j] if has_b else s


_add_row_bias_serial, _rows_dot_serial = serial_twin(add_row_bias), serial_twin(rows_dot)
FEW_ROWS = 4  # up to this many rows a linear layer is dot products: the GEMM would pack all of W for each call
# Below this many multiply-adds the dot products run on the calling thread. A classifier at batch 1 (MobileNetV2's
# 1280 x 1000, ResNet-50's 2048 x 1000) is above: at the end of a network its 5-8 MB of weights come from memory,
# not cache, and two cores stream them in about half the time of one (MobileNetV2's in the network: 0.14 vs 0.23 ms),
# the workers still awake from the layer before
SERIAL_DOT_MACS = 1 << 20
# A layer with this few outputs and little work is dot products too: the GEMM's register tile would be mostly padding
# (LeNet-5's fc2, 64 x 500 -> 10: one thread 0.07 -> 0.035 ms)
FEW_OUTPUTS = 16


def product(a: np.ndarray, b: np.ndarray, out: np.ndarray, bias: np.ndarray | None = None) -> None:
    """out = a @ b (+ bias along the last axis): dot products over W's rows for a few rows of ``a`` (or a few
    outputs and little work) times a transposed C-contiguous W (a linear layer at batch 1: MobileNetV2's
    classifier, 1280 x 1000) with the bias added on the way, the numba GEMM for 2-D float32 operands it supports,
    else BLAS."""
    dot = dot_call(a, b, out, bias)
    if dot is not None:
        dot()
        return
    if a.ndim == b.ndim == out.ndim == 2 and gemm_supported(a, b, out):
        gemm_matmul(a, b, out)
    else:
        np.matmul(a, b, out=out)
    if bias is not None and out.size:
        rows = out.reshape(-1, out.shape[-1])
        by_size(add_row_bias, _add_row_bias_serial, rows.size)(rows, bias)


def dot_call(a: np.ndarray, b: np.ndarray, out: np.ndarray, bias: np.ndarray | None) -> Callable[[], None] | None:
    """``out = a @ b (+ bias)`` as the dot products over W's rows (``b`` a transposed C-contiguous W) where
    :func:`product` takes that path (a few rows, or a few outputs and little work), as one call straight into the
    compiled loop; else None."""
    few = a.ndim == 2 and (a.shape[0] <= FEW_ROWS or
                           b.shape[-1] <= FEW_OUTPUTS and a.shape[0] * b.size < SERIAL_DOT_MACS)
    if few and a.ndim == b.ndim == out.ndim == 2 and b.T.flags.c_contiguous and \
            a.flags.c_contiguous and a.dtype == b.dtype == out.dtype and a.dtype.kind == "f" and \
            (bias is None or bias.dtype == a.dtype and bias.shape == (b.shape[1],)):
        dot = _rows_dot_serial if a.shape[0] * b.size < SERIAL_DOT_MACS else rows_dot
        return bind(dot, a, b.T, np.zeros(0, a.dtype) if bias is None else bias, out)
    return None


def weights_first(x: np.ndarray, w: np.ndarray, out: np.ndarray) -> bool:
    """Whether ``out = x @ w.T`` runs as ``out.T = w @ x.T``: the GEMM reads a row-major W in place as its A
    operand and packs only x (rows x K) instead of all of W (O x K, packed column by column from its transpose),
    so it pays where a layer has more outputs than rows (LeNet-5's fc1 at batch 64: one thread 0.81 -> 0.63 ms
    with the bias + ReLU epilogue and the transposing copy)."""
    return (x.ndim == w.ndim == out.ndim == 2 and FEW_ROWS < x.shape[0] < w.shape[0] and w.strides[1] == w.itemsize
            and gemm_supported(x, w, out))


def linear_product(x: np.ndarray, w: np.ndarray, out: np.ndarray, ep: Epilogue | None = None) -> None:
    """out = epilogue(x @ w.T) for a linear layer (W: outputs x inputs). Without a residual and with more outputs
    than rows, the GEMM computes out.T with the epilogue per row of W (bias, scale, activation) into scratch and
    one transposing copy writes out; else :func:`product` and the row epilogue (``ep.bias`` only, see
    :mod:`.fused` for the others)."""
    if ep is not None and ep.empty:
        ep = None
    if weights_first(x, w, out) and (ep is None or not ep.flags & HAS_RES):
        rows, k = x.shape
        o = w.shape[0]
        ct = scratch("linear_t", (o, rows), out.dtype)
        if ep is None:
            batched_gemm(w[None, None], k, x.T[None, None], rows, ct[None, None], rows, o, rows, k)
        else:
            batched_gemm(w[None, None], k, x.T[None, None], rows, ct[None, None], rows, o, rows, k, flags=ep.flags,
                         bias=ep.bias, scale=ep.scale, act=ep.act, alpha=ep.alpha)
        out[...] = ct.T
        return
    product(x, w.T, out, None if ep is None else ep.bias)


@backend.register("matmul")
def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    product(a, b, out)


@backend.register("linear")
def linear(x: np.ndarray, w: np.ndarray, *b: np.ndarray, out: np.ndarray) -> None:
    linear_product(x, w, out, Epilogue(out.dtype, bias=b[0]) if b else None)


# in a compiled graph a classifier at batch 1 calls its compiled loop directly, not through linear_product's Python
linear.specialize = for_reuse(lambda x, w, *b, out: dot_call(x, w.T, out, b[0] if b else None))


@backend.register("matmul_tn")
def matmul_tn(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    product(a.T, b, out)  # the numba GEMM packs its panels from any strides; BLAS takes the transposed view
