"""cuda kernels: elementwise math, activations and their gradients, comparisons, where, astype, dropout, and the
strided copy every data-movement kernel is made of.

One kernel per arity serves every op of that arity (the op is an int, see :mod:`.scalar`). Operands are 4-D views
over the output's index space (:func:`.views.views4`: numpy broadcasting as stride-0 axes, any strides, any rank),
and each thread walks the flat index space with a grid-stride loop, so any grid size gives the same result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from . import scalar
from .launch import grid
from .table import backend
from .views import is_c_contiguous, reshaped, unravel4, views4


@cuda.jit
def copy4(x, out):
    """out[i, j, k, l] = x[i, j, k, l], cast to out's dtype (astype, and every data-movement kernel)."""
    for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        i, j, k, l = unravel4(t, out.shape)
        out[i, j, k, l] = x[i, j, k, l]


def _map_kernels(unary: Any, binary: Any) -> tuple[Any, Any]:
    """The unary and binary kernels computing with one floating type's scalar functions (:func:`.scalar.make`)."""

    @cuda.jit
    def map1(op, x, out, alpha, beta, flags):
        for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            i, j, k, l = unravel4(t, out.shape)
            out[i, j, k, l] = unary(op, x[i, j, k, l], alpha, beta, flags)

    @cuda.jit
    def map2(op, a, b, out, alpha, beta, flags):
        for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            i, j, k, l = unravel4(t, out.shape)
            out[i, j, k, l] = binary(op, a[i, j, k, l], b[i, j, k, l], alpha, beta, flags)

    return map1, map2


# float32 outputs compute in float32; float64, integer and bool outputs in float64
MAPS = {np.float32: _map_kernels(*scalar.F32), np.float64: _map_kernels(*scalar.F64)}


@cuda.jit
def compare2(op, a, b, out):
    for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        i, j, k, l = unravel4(t, out.shape)
        out[i, j, k, l] = scalar.compare(op, a[i, j, k, l], b[i, j, k, l])


@cuda.jit
def where3(c, a, b, out):
    for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        i, j, k, l = unravel4(t, out.shape)
        out[i, j, k, l] = a[i, j, k, l] if c[i, j, k, l] else b[i, j, k, l]


def launch(kernel: Any, out: Any, operands: tuple, *scalars: Any, op: int | None = None) -> None:
    """Run a 4-D elementwise ``kernel`` over ``out``'s index space (asynchronously): ``kernel(op?, *operands, out,
    *scalars)`` once per operand group of :func:`.views.views4`."""
    if out.size == 0:
        return
    head = () if op is None else (op,)
    for *ins, o in views4(tuple(out.shape), (*operands, out)):
        kernel[grid(o.size)](*head, *ins, o, *scalars)


def copy(src: Any, dst: Any) -> None:
    """dst[...] = src (src broadcast to dst's shape, any strides on both sides, cast to dst's dtype)."""
    launch(copy4, dst, (src,))


def contiguous(x: Any) -> Any:
    """``x`` itself when C-contiguous, else a C-contiguous device copy."""
    if is_c_contiguous(x):
        return x
    out = backend.empty(x.shape, x.dtype)
    copy(x, out)
    return out


@cuda.jit
def fill1(out, value):
    for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[t] = value


def fill(out: Any, value: Any) -> None:
    """out[...] = value (a C-contiguous ``out``)."""
    if out.size:
        fill1[grid(out.size)](reshaped(out, (out.size,)), value)


def elementwise(op: int, out: Any, operands: tuple, alpha: float = 0.0, beta: float = 0.0, flags: int = 0) -> None:
    """out = op(*operands) with the unary or binary kernel of out's floating type; alpha and beta are rounded to
    that type first, as the reference casts its scalar attributes to the arrays' dtype."""
    ft = np.float32 if np.dtype(out.dtype) == np.float32 else np.float64
    launch(MAPS[ft][len(operands) - 1], out, operands, ft(alpha), ft(beta), flags, op=op)


def _registered(op: int, arity: int):
    def kernel(*arrays: Any, out: Any) -> None:
        elementwise(op, out, arrays[:arity])

    return kernel


def _compare(op: int):
    def kernel(a: Any, b: Any, out: Any) -> None:
        launch(compare2, out, (a, b), op=op)

    return kernel


for _name, _op in scalar.UNARY.items():
    backend.register(_name)(_registered(_op, 1))
for _name, _op in {**scalar.BINARY, **scalar.GRADS}.items():
    backend.register(_name)(_registered(_op, 2))
for _name, _op in scalar.COMPARE.items():
    backend.register(_name)(_compare(_op))


@backend.register("leaky_relu")
def leaky_relu(x: Any, out: Any, negative_slope: float) -> None:
    elementwise(scalar.LEAKY_RELU, out, (x,), negative_slope)


@backend.register("elu")
def elu(x: Any, out: Any, alpha: float) -> None:
    elementwise(scalar.ELU, out, (x,), alpha)


def _bounds(min_: float | None, max_: float | None) -> tuple[float, float, int]:
    flags = (0 if min_ is None else scalar.HAS_MIN) | (0 if max_ is None else scalar.HAS_MAX)
    return float(0.0 if min_ is None else min_), float(0.0 if max_ is None else max_), flags


@backend.register("clamp")
def clamp(x: Any, out: Any, min: float | None, max: float | None) -> None:  # noqa: A002
    elementwise(scalar.CLAMP, out, (x,), *_bounds(min, max))


@backend.register("leaky_relu_grad")
def leaky_relu_grad(gy: Any, x: Any, out: Any, negative_slope: float) -> None:
    elementwise(scalar.LEAKY_RELU_GRAD, out, (gy, x), negative_slope)


@backend.register("elu_grad")
def elu_grad(gy: Any, x: Any, out: Any, alpha: float) -> None:
    elementwise(scalar.ELU_GRAD, out, (gy, x), alpha)


@backend.register("clamp_grad")
def clamp_grad(gy: Any, x: Any, out: Any, min: float | None, max: float | None) -> None:  # noqa: A002
    elementwise(scalar.CLAMP_GRAD, out, (gy, x), *_bounds(min, max))


@backend.register("dropout")
def dropout(x: Any, mask: Any, out: Any, p: float) -> None:
    elementwise(scalar.DROPOUT, out, (x, mask), 1.0 / (1.0 - p))


@backend.register("where")
def where(c: Any, a: Any, b: Any, out: Any) -> None:
    launch(where3, out, (c, a, b))


@backend.register("astype")
def astype(x: Any, out: Any, dtype: str) -> None:
    copy(x, out)
