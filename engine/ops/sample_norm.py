"""Normalizations over per-sample statistics: layer_norm, group_norm, instance_norm.

Each normalizes rows of a 2-D view of its input by the row's own mean and biased variance, which is exactly what
the ``batch_norm_train`` primitive computes per channel: the input is viewed as ``(1, R, M)`` (R rows of M values;
statistics of axis 1 over the others), normalized with unit weight and zero bias, then viewed back and given the
layer's own affine map. So these layers reuse batch norm's fused forward and backward kernels on every backend
instead of a dozen tape ops each, and need no kernels of their own.

- layer_norm: rows = the leading axes, M = the product of ``normalized_shape`` (the trailing axes).
- group_norm: rows = (N, group), M = (C / groups) * spatial.
- instance_norm: rows = (N, C), M = spatial; running statistics (optional) are updated with the batch average of
  the per-instance mean and unbiased variance, as torch does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..autograd import bind
from ..primitive import fail
from ..tensor import Tensor
from ._util import lift
from .norm import _update_running, batch_norm, batch_norm_train_p
from .shape import reshape

__all__ = ["layer_norm", "group_norm", "instance_norm"]


def _normalize_rows(x: Tensor, rows: int, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """``x`` normalized per row of its ``(rows, M)`` view; returns (y shaped like x, row means, row variances)."""
    m = x.size // rows if rows else 0
    if m <= 1:  # a row of one value normalizes to 0 (batch_norm_train rejects it as a training batch)
        zeros = Tensor(np.zeros((rows,), x.dtype))
        return x * 0.0, reshape(x, (rows,)) if m == 1 else zeros, zeros
    ones = Tensor(np.ones((rows,), x.dtype))
    y, mean, var = bind(batch_norm_train_p, reshape(x, (1, rows, m)), ones, Tensor(np.zeros((rows,), x.dtype)),
                        eps=float(eps))
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
    if t is not None and tuple(np.shape(t)) != tuple(shape):
        fail(op, f"{name} must have shape {list(shape)}", **{name: list(np.shape(t))})


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
    m = x.size // max(n * c, 1)
    if m <= 1:
        raise ValueError(f"instance_norm: expected more than 1 spatial element when training, got input size "
                         f"{list(x.shape)}")
    y, mean, var = _normalize_rows(x, n * c, eps)
    if mean._data is not None:  # running statistics: batch average of the instance statistics
        if running_mean is not None:
            _update_running(running_mean, Tensor(mean._data.reshape(n, c).mean(0)), float(momentum))
        if running_var is not None:
            _update_running(running_var, Tensor(var._data.reshape(n, c).mean(0)), float(momentum), m / (m - 1))
    return _affine(y, weight, bias, _channel_shape(x))
