"""Matrix products: matmul (batched, numpy broadcasting over leading axes) and linear (x @ W^T + b)."""

from __future__ import annotations

import math

from ..autograd import bind
from ..primitive import MATMUL, Cost, Spec, broadcast_shapes, fail, primitive, same_float_dtype
from ..tensor import Tensor
from .reduce import sum as _sum
from .shape import reshape, transpose, unbroadcast

__all__ = ["matmul", "linear"]

matmul_p = primitive("matmul", MATMUL)


@matmul_p.def_shape
def _matmul_shape(a: Spec, b: Spec) -> Spec:
    dtype = same_float_dtype("matmul", a, b)
    if a.ndim < 2 or b.ndim < 2:
        fail("matmul", "both operands need at least 2 dims", a=list(a.shape), b=list(b.shape))
    if a.shape[-1] != b.shape[-2]:
        fail("matmul", "inner dimensions must agree (a.shape[-1] == b.shape[-2])", a=list(a.shape), b=list(b.shape))
    batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    return Spec(batch + (a.shape[-2], b.shape[-1]), dtype)


@matmul_p.def_cost
def _matmul_cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...]) -> Cost:
    a, _ = ins
    macs = outs[0].size * a.shape[-1]
    return Cost(macs, 2 * macs, sum(s.nbytes for s in ins), outs[0].nbytes)


@matmul_p.def_vjp
def _matmul_vjp(g: Tensor, y: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    ga = matmul(g, transpose(b, -1, -2))
    gb = matmul(transpose(a, -1, -2), g)
    return unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    return bind(matmul_p, a, b)


linear_p = primitive("linear", MATMUL)


@linear_p.def_shape
def _linear_shape(x: Spec, w: Spec, b: Spec | None = None) -> Spec:
    dtype = same_float_dtype("linear", x, w, *([b] if b else []))
    if w.ndim != 2:
        fail("linear", "weight must be 2-D (out_features, in_features)", weight=list(w.shape))
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        fail("linear", "input's last dim must equal in_features", input=list(x.shape), in_features=w.shape[1])
    if b is not None and b.shape != (w.shape[0],):
        fail("linear", "bias must have shape (out_features,)", bias=list(b.shape), out_features=w.shape[0])
    return Spec(x.shape[:-1] + (w.shape[0],), dtype)


@linear_p.def_cost
def _linear_cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...]) -> Cost:
    macs = outs[0].size * ins[1].shape[1]
    return Cost(macs, 2 * macs + (outs[0].size if len(ins) == 3 else 0), sum(s.nbytes for s in ins), outs[0].nbytes)


@linear_p.def_vjp
def _linear_vjp(g: Tensor, y: Tensor, x: Tensor, w: Tensor, b: Tensor | None = None) -> tuple:
    gx = matmul(g, w) if g.ndim >= 2 else reshape(matmul(reshape(g, (1, -1)), w), x.shape)
    g2 = reshape(g, (math.prod(g.shape[:-1]), g.shape[-1]))
    x2 = reshape(x, (math.prod(x.shape[:-1]), x.shape[-1]))
    gw = matmul(transpose(g2, 0, 1), x2)
    if b is None:
        return gx, gw
    return gx, gw, _sum(g2, 0)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    return bind(linear_p, x, weight) if bias is None else bind(linear_p, x, weight, bias)
