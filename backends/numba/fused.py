"""numba kernels for the fused inference primitives: ``act(conv2d(x, w, b) + residual)`` and
``act(linear(x, w, b) + residual)``. The epilogue (bias, folded-BN scale/shift, residual, activation) runs in
the same pass that leaves the conv/GEMM output (see :class:`.conv.epilogue.Epilogue`), never as separate sweeps."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, prange

from .conv.drivers import conv2d_forward, forward_call
from .conv.epilogue import HAS_BIAS, HAS_RES, HAS_SCALE, NO_ACT, Epilogue, epilogue_keeps_references, epilogue_value
from .conv.geometry import shape_of
from .conv.notes import forward_note
from .elementwise import ELU, LEAKY_RELU, RELU, UNARY
from .linalg import linear_product, product, weights_first
from .table import backend

ACT_CODES = {"none": NO_ACT, "leaky_relu": LEAKY_RELU, "elu": ELU, **UNARY}
_ALPHA_ATTR = {"leaky_relu": "negative_slope", "elu": "alpha"}


def epilogue_from_attrs(dtype: np.dtype, b: np.ndarray | None, residual: np.ndarray | None, activation: str,
                        act_attrs: tuple) -> Epilogue:
    if activation not in ACT_CODES:
        raise NotImplementedError(f"backend 'numba' has no fused epilogue for activation {activation!r}")
    alpha = dict(act_attrs).get(_ALPHA_ATTR.get(activation, ""), 0.0)
    return Epilogue(dtype, bias=b, residual=residual, act=ACT_CODES[activation], alpha=alpha)


def _split(ins, has_bias: bool, has_residual: bool):
    x, w = ins[0], ins[1]
    b = ins[2] if has_bias else None
    r = ins[2 + int(has_bias)] if has_residual else None
    return x, w, b, r


@backend.register("fused_conv2d")
def fused_conv2d(*ins: np.ndarray, out: np.ndarray, stride, padding, dilation, groups: int, has_bias: bool,
                 has_residual: bool, activation: str, act_attrs: tuple = ()) -> None:
    x, w, b, r = _split(ins, has_bias, has_residual)
    conv2d_forward(x, w, out, epilogue_from_attrs(out.dtype, b, r, activation, act_attrs), stride, padding,
                   dilation, groups)


def _specialize_fused_conv2d(*ins: np.ndarray, out: np.ndarray, stride, padding, dilation, groups: int,
                             has_bias: bool, has_residual: bool, activation: str, act_attrs: tuple = ()
                             ) -> Callable[[], None] | None:
    x, w, b, r = _split(ins, has_bias, has_residual)
    if not epilogue_keeps_references(out.dtype, b):
        return None
    return forward_call(x, w, out, epilogue_from_attrs(out.dtype, b, r, activation, act_attrs), stride, padding,
                        dilation, groups)


fused_conv2d.specialize = _specialize_fused_conv2d


def _fused_note(specs, activation: str = "none", has_bias: bool = False, has_residual: bool = False,
                **attrs) -> str:
    parts = ["bias"] * has_bias + ["residual"] * has_residual + [activation] * (activation != "none")
    return forward_note(shape_of(specs[0]), shape_of(specs[1]), attrs, getattr(specs[0], "dtype", np.float32)) + (
        f" + epilogue({', '.join(parts) or 'none'})")


fused_conv2d.algorithm = _fused_note


@njit(parallel=True, cache=True, error_model="numpy")
def rows_epilogue(y, flags, bias, scale, res, act, alpha):
    """y[r, o] = act(y * scale[o] + bias[o] + res[r, o]) over a (rows, O) GEMM output, one row per item. Bias /
    residual with identity or ReLU (a linear layer's usual epilogue) run as branch-free loops LLVM vectorizes; the
    generic per-element dispatch took 10 ns per element (LeNet-5's fc1 at batch 64: 0.32 ms, a third of its GEMM)."""
    rows, no = y.shape
    simple = (act == NO_ACT or act == RELU) and not flags & HAS_SCALE
    lo = 0.0 if act == RELU else -np.inf
    for r in prange(rows):
        row = y[r]
        if simple and flags & HAS_RES:
            rr = res[r]
            if flags & HAS_BIAS:
                for o in range(no):
                    v = row[o] + bias[o] + rr[o]
                    row[o] = lo if v < lo else v  # NaN stays NaN, as in epilogue_row
            else:
                for o in range(no):
                    v = row[o] + rr[o]
                    row[o] = lo if v < lo else v
        elif simple and flags & HAS_BIAS:
            for o in range(no):
                v = row[o] + bias[o]
                row[o] = lo if v < lo else v
        elif simple:
            for o in range(no):
                v = row[o]
                row[o] = lo if v < lo else v
        else:
            for o in range(no):
                rv = res[r, o] if flags & HAS_RES else 0.0
                row[o] = epilogue_value(row[o], o, flags, bias, scale, rv, act, alpha)


@backend.register("fused_linear")
def fused_linear(*ins: np.ndarray, out: np.ndarray, has_bias: bool, has_residual: bool, activation: str,
                 act_attrs: tuple = ()) -> None:
    x, w, b, r = _split(ins, has_bias, has_residual)
    ep = epilogue_from_attrs(out.dtype, b, r, activation, act_attrs)
    if r is None and weights_first(x, w, out):
        linear_product(x, w, out, ep)  # the epilogue inside the GEMM, over out.T
        return
    product(x, w.T, out)  # the same GEMM as the unfused linear (BLAS next to numba's threads ran 5x slower)
    if out.size and not ep.empty:
        y2 = out.reshape(-1, out.shape[-1])
        res = np.zeros((1, 1), out.dtype) if r is None else np.ascontiguousarray(r).reshape(y2.shape)
        rows_epilogue(y2, ep.flags, ep.bias, ep.scale, res, ep.act, ep.alpha)
