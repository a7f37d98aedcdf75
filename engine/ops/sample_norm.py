"""Normalizations over per-sample statistics: layer_norm, group_norm, instance_norm.

Each normalizes the rows of a 2-D ``(R, M)`` view of its input by the row's own mean and biased variance, then
views the result back and applies the layer's own affine map:

- layer_norm: rows = the leading axes, M = the product of ``normalized_shape`` (the trailing axes).
- group_norm: rows = (N, group), M = (C / groups) * spatial.
- instance_norm: rows = (N, C), M = spatial; running statistics (optional) are updated with the batch average of
  the per-instance mean and unbiased variance, as torch does.

Primitives (batch norm's math with rows in the role of channels; their own names, because graph passes read
``batch_norm_train`` as "a BatchNorm in training mode"):

- ``row_norm(x (R, M); eps) -> (y, mean (R,), var (R,))``: ``y = (x - mean) / sqrt(var + eps)``, biased ``var``.
- ``row_norm_grad(gy, x, mean, var; eps) -> gx``: ``invstd / M * (M gy - sum(gy) - xhat sum(gy xhat))`` per row.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..autograd import bind, no_grad
from ..primitive import NORM, Cost, Spec, fail, primitive, same_float_dtype
from ..tensor import Tensor
from ._util import lift
from .norm import batch_norm, update_running
from .reduce import mean as _mean
from .shape import broadcast_to, reshape

__all__ = ["layer_norm", "group_norm", "instance_norm"]

row_norm_p = primitive("row_norm", NORM, multiple_results=True)
row_norm_grad_p = primitive("row_norm_grad", NORM)


@row_norm_p.def_shape
def _row_norm_shape(x: Spec, eps: float) -> tuple[Spec, Spec, Spec]:
    if x.ndim != 2 or x.dtype.kind != "f":
        fail("row_norm", "input must be a 2-D (rows, values) floating-point array", input=repr(x))
    if x.shape[1] < 2:
        fail("row_norm", "each row needs at least 2 values", input=list(x.shape))
    stat = Spec((x.shape[0],), x.dtype)
    return x, stat, stat


@row_norm_grad_p.def_shape
def _row_norm_grad_shape(gy: Spec, x: Spec, mean: Spec, var: Spec, eps: float) -> Spec:
    same_float_dtype("row_norm_grad", gy, x, mean, var)
    if gy.shape != x.shape or x.ndim != 2 or mean.shape != (x.shape[0],) or var.shape != mean.shape:
        fail("row_norm_grad", "gy and x must be (R, M) and mean, var (R,)", gy=list(gy.shape), x=list(x.shape),
             mean=list(mean.shape), var=list(var.shape))
    return x


def _row_cost(flops_per_element: int):
    return lambda ins, outs, eps: Cost(0, ins[0].size * flops_per_element, sum(s.nbytes for s in ins),
                                       sum(s.nbytes for s in outs))


row_norm_p.def_cost(_row_cost(7))  # mean, var (two passes) and the normalize
row_norm_grad_p.def_cost(_row_cost(9))  # two row sums and the combine


@row_norm_p.def_vjp
def _row_norm_vjp(g: tuple, out: tuple, x: Tensor, eps: float) -> tuple[Tensor | None]:
    gy, gmean, gvar = g
    _, mean, var = out
    m = x.shape[1]
    gx = bind(row_norm_grad_p, gy, x, mean, var, eps=eps) if gy is not None else None
    if gmean is not None:  # d mean / dx = 1 / M
        term = broadcast_to(reshape(gmean * (1.0 / m), (-1, 1)), x.shape)
        gx = term if gx is None else gx + term
    if gvar is not None:  # d var / dx = 2 (x - mean) / M
        term = reshape(gvar, (-1, 1)) * (x - reshape(mean, (-1, 1))) * (2.0 / m)
        gx = term if gx is None else gx + term
    return (gx,)


def _normalize_rows(x: Tensor, rows: int, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """``x`` normalized per row of its ``(rows, M)`` view; returns (y shaped like x, row means, row variances)."""
    m = x.numel() // rows if rows else 0
    if m <= 1:  # a row of one value normalizes to 0
        zeros = x.new_tensor(np.zeros((rows,), x.dtype))
        return x * 0.0, reshape(x, (rows,)) if m == 1 else zeros, zeros
    y, mean, var = bind(row_norm_p, reshape(x, (rows, m)), eps=float(eps))
    return reshape(y, x.shape), mean, var


def _affine(y: Tensor, weight: Any, bias: Any, shape: tuple[int, ...]) -> Tensor:
    if weight is not None:
        y = y * reshape(lift(weight, y), shape)
    if bias is not None:
        y = y + reshape(lift(bias, y), shape)
    return y


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _check_param(op: str, name: str, t: Any, shape: tuple[int, ...]) -> None:
    got = None if t is None else tuple(t.shape if isinstance(t, Tensor) else np.shape(t))
    if got is not None and got != tuple(shape):
        fail(op, f"{name} must have shape {list(shape)}", **{name: list(got)})


def layer_norm(input: Tensor, normalized_shape: int | tuple[int, ...] | list[int], weight: Any = None,  # noqa: A002
               bias: Any = None, eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.layer_norm: normalize over the trailing ``normalized_shape`` axes."""
    x = input
    ns = (int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    if not ns or x.shape[x.ndim - len(ns):] != ns or len(ns) > x.ndim:
        fail("layer_norm", f"input's trailing dims must equal normalized_shape={list(ns)}", input=list(x.shape))
    for name, t in (("weight", weight), ("bias", bias)):
        _check_param("layer_norm", name, t, ns)
    rows = math.prod(x.shape[:x.ndim - len(ns)])
    y, _, _ = _normalize_rows(x, rows, eps)
    return _affine(y, weight, bias, ns)


def group_norm(input: Tensor, num_groups: int, weight: Any = None, bias: Any = None,  # noqa: A002
               eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.group_norm: normalize (N, C, *) over each group of C / num_groups channels."""
    x = input
    if x.ndim < 2:
        fail("group_norm", "input must have at least 2 dims (N, C, *)", input=list(x.shape))
    c = x.shape[1]
    if num_groups < 1 or c % num_groups:
        fail("group_norm", "num_groups must divide the number of channels", C=c, num_groups=num_groups)
    for name, t in (("weight", weight), ("bias", bias)):
        _check_param("group_norm", name, t, (c,))
    y, _, _ = _normalize_rows(x, x.shape[0] * num_groups, eps)
    return _affine(y, weight, bias, _channel_shape(x))


def instance_norm(input: Tensor, running_mean: Tensor | None = None, running_var: Tensor | None = None,  # noqa: A002
                  weight: Any = None, bias: Any = None, use_input_stats: bool = True, momentum: float = 0.1,
                  eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.instance_norm: normalize (N, C, *) per sample and channel over the spatial axes.

    With ``use_input_stats=False`` the running statistics normalize instead (batch norm's inference map).
    """
    x = input
    if x.ndim < 3:
        fail("instance_norm", "input must have at least 3 dims (N, C, *spatial)", input=list(x.shape))
    n, c = x.shape[:2]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        _check_param("instance_norm", name, t, (c,))
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm: running_mean and running_var must be given when use_input_stats=False")
        return batch_norm(x, running_mean, running_var, weight, bias, False, momentum, eps)
    m = x.numel() // max(n * c, 1)
    if m <= 1:
        raise ValueError(f"instance_norm: expected more than 1 spatial element when training, got input size "
                         f"{list(x.shape)}")
    y, mean, var = _normalize_rows(x, n * c, eps)
    # running statistics: the batch average of the instance statistics, as primitives, so a compiled training
    # graph updates them too (state outputs, see engine.autograd.assign_state)
    with no_grad():
        if running_mean is not None:
            update_running(running_mean, _mean(reshape(mean, (n, c)), 0), float(momentum))
        if running_var is not None:
            update_running(running_var, _mean(reshape(var, (n, c)), 0), float(momentum), m / (m - 1))
    return _affine(y, weight, bias, _channel_shape(x))
