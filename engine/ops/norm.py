"""Normalization: batch_norm (training / inference primitives) and local_response_norm (a composite).

Batch statistics are taken over every axis except the channel axis 1, so one pair of primitives serves
(N, C), (N, C, L) and (N, C, H, W) inputs.

- ``batch_norm_train(x, w, b; eps) -> (y, mean, var)``: ``var`` is the *biased* batch variance (the one that
  normalizes ``y``); the functional turns it into PyTorch's unbiased running-variance update.
- ``batch_norm_train_grad(gy, x, w, mean, var; eps) -> (gx, gw, gb)``: the vjp of ``y``. It is a primitive of
  its own so backends run the classic two-reduction formula in one fused kernel instead of a dozen tape ops:
  ``gx = w / sqrt(var + eps) / M * (M * gy - sum(gy) - xhat * sum(gy * xhat))`` with ``M = N * spatial``.
  Cotangents reaching the ``mean``/``var`` outputs (rare: the functional reads them only to update running
  statistics) are added with a few elementwise primitives.
- ``batch_norm_infer(x, w, b, running_mean, running_var; eps) -> y``: an affine map per channel; its vjp is
  written with elementwise primitives and reductions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import assign_state, bind, no_grad
from ..primitive import NORM, Cost, Spec, fail, primitive, same_float_dtype
from ..tensor import Tensor
from .elementwise import astype, mul, sqrt
from .reduce import sum as _sum
from .shape import broadcast_to, pad, reshape
from .shape import slice as _slice

__all__ = ["batch_norm", "local_response_norm"]


def _check_channels(op: str, x: Spec, *per_channel: tuple[str, Spec]) -> int:
    if x.ndim < 2:
        fail(op, "input must have at least 2 dims (N, C, ...)", input=list(x.shape))
    if x.dtype.kind != "f":
        fail(op, "input must be floating point", dtype=x.dtype.name)
    same_float_dtype(op, x, *(s for _, s in per_channel))
    c = x.shape[1]
    for name, s in per_channel:
        if s.shape != (c,):
            fail(op, f"{name} must have shape (C,) where C = input.shape[1]", **{name: list(s.shape)}, C=c)
    return c


def _bcast_shape(x: Spec | Tensor) -> tuple[int, ...]:
    """(C,) -> (1, C, 1, ...) so per-channel values broadcast against x."""
    return (1, x.shape[1]) + (1,) * (len(x.shape) - 2)


def _reduce_axes(ndim: int) -> tuple[int, ...]:
    return (0,) + tuple(range(2, ndim))


def _per_channel_cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], flops_per_element: int) -> Cost:
    return Cost(0, ins[0].size * flops_per_element, sum(s.nbytes for s in ins), sum(s.nbytes for s in outs))


# --- batch_norm_train ------------------------------------------------------------------------------------
batch_norm_train_p = primitive("batch_norm_train", NORM, multiple_results=True)


@batch_norm_train_p.def_shape
def _bn_train_shape(x: Spec, w: Spec, b: Spec, eps: float) -> tuple[Spec, Spec, Spec]:
    c = _check_channels("batch_norm_train", x, ("weight", w), ("bias", b))
    if x.size // max(c, 1) <= 1:
        fail("batch_norm_train", "expected more than 1 value per channel when training", input=list(x.shape))
    stat = Spec((c,), x.dtype)
    return x, stat, stat


# mean + var (two passes) then normalize + affine: about 8 flops per element
batch_norm_train_p.def_cost(lambda ins, outs, eps: _per_channel_cost(ins, outs, 8))


@batch_norm_train_p.def_vjp
def _bn_train_vjp(g: tuple, out: tuple, x: Tensor, w: Tensor, b: Tensor, eps: float) -> tuple:
    gy, gmean, gvar = g
    _, mean, var = out
    gx = gw = gb = None
    if gy is not None:
        gx, gw, gb = bind(batch_norm_train_grad_p, gy, x, w, mean, var, eps=eps)
    m = x.numel() // x.shape[1]
    shape = _bcast_shape(x)
    if gmean is not None:  # d mean / dx = 1 / M
        term = broadcast_to(reshape(gmean * (1.0 / m), shape), x.shape)
        gx = term if gx is None else gx + term
    if gvar is not None:  # d var / dx = 2 (x - mean) / M
        term = reshape(gvar, shape) * (x - reshape(mean, shape)) * (2.0 / m)
        gx = term if gx is None else gx + term
    return gx, gw, gb


batch_norm_train_grad_p = primitive("batch_norm_train_grad", NORM, multiple_results=True)


@batch_norm_train_grad_p.def_shape
def _bn_train_grad_shape(gy: Spec, x: Spec, w: Spec, mean: Spec, var: Spec, eps: float) -> tuple[Spec, Spec, Spec]:
    _check_channels("batch_norm_train_grad", x, ("weight", w), ("mean", mean), ("var", var))
    same_float_dtype("batch_norm_train_grad", gy, x)
    if gy.shape != x.shape:
        fail("batch_norm_train_grad", "gy must have the input's shape", gy=list(gy.shape), input=list(x.shape))
    return x, w, w


# two reductions (sum gy, sum gy * xhat) and the combine: about 10 flops per element
batch_norm_train_grad_p.def_cost(lambda ins, outs, eps: _per_channel_cost(ins, outs, 10))


# --- batch_norm_apply: a training batch norm's y again, from its own statistics ----------------------------
# Made only by rematerialization (graph/remat.py), in backward graphs: ``batch_norm_apply(x, w, b, mean, var; eps,
# relu)`` is ``y`` of the ``batch_norm_train(x, w, b; eps)`` that produced ``mean, var`` (each backend's kernel
# normalizes with the arithmetic of its own training kernel, so the result is bit for bit that y), followed by
# ``relu`` when asked: one pass over x instead of the statistics' two and relu's own.
batch_norm_apply_p = primitive("batch_norm_apply", NORM)


@batch_norm_apply_p.def_shape
def _bn_apply_shape(x: Spec, w: Spec, b: Spec, mean: Spec, var: Spec, eps: float, relu: bool) -> Spec:
    _check_channels("batch_norm_apply", x, ("weight", w), ("bias", b), ("mean", mean), ("var", var))
    return x


batch_norm_apply_p.def_cost(lambda ins, outs, eps, relu: _per_channel_cost(ins, outs, 3 if relu else 2))


@batch_norm_apply_p.def_decompose
def _bn_apply_decompose(lookup: Any, x: Any, w: Any, b: Any, mean: Any, var: Any, *, out: Any, eps: float,
                        relu: bool) -> None:
    # the training kernel recomputes the statistics from the same x: it writes mean and var over themselves with
    # the very values they hold
    lookup("batch_norm_train")(x, w, b, out=(out, mean, var), eps=eps)
    if relu:
        lookup("relu")(out, out=out)


# --- batch_norm_infer ------------------------------------------------------------------------------------
batch_norm_infer_p = primitive("batch_norm_infer", NORM)


@batch_norm_infer_p.def_shape
def _bn_infer_shape(x: Spec, w: Spec, b: Spec, mean: Spec, var: Spec, eps: float) -> Spec:
    _check_channels("batch_norm_infer", x, ("weight", w), ("bias", b), ("running_mean", mean), ("running_var", var))
    return x


batch_norm_infer_p.def_cost(lambda ins, outs, eps: _per_channel_cost(ins, outs, 2))


@batch_norm_infer_p.def_vjp
def _bn_infer_vjp(g: Tensor, y: Tensor, x: Tensor, w: Tensor, b: Tensor, mean: Tensor, var: Tensor,
                  eps: float) -> tuple:
    # y = (x - mean) * invstd * w + b; running statistics are buffers, so their (rarely wanted) gradients are
    # only built when they require grad, like pow's exponent
    shape, axes = _bcast_shape(x), _reduce_axes(x.ndim)
    invstd = 1.0 / sqrt(var + eps)
    gx = g * reshape(invstd * w, shape)
    gb = _sum(g, axes)
    gxc = _sum(g * (x - reshape(mean, shape)), axes)
    gmean = -gb * invstd * w if mean.requires_grad else None
    gvar = gxc * w * (-0.5) * invstd * invstd * invstd if var.requires_grad else None
    return gx, gxc * invstd, gb, gmean, gvar


# --- functional ------------------------------------------------------------------------------------------
def _per_channel(t: Any, c: int, like: Tensor, fill: float) -> Tensor:
    if t is None:
        return like.new_tensor(np.full((c,), fill, like.dtype))
    if not isinstance(t, Tensor):
        t = like.new_tensor(t)
    return t


def update_running(stat: Any, batch_value: Tensor, momentum: float, scale: float = 1.0) -> None:
    """running <- (1 - momentum) * running + (momentum * scale) * batch, as primitives: eagerly the buffer's data
    is replaced; under a trace the update becomes a graph output (:func:`engine.autograd.assign_state`)."""
    if stat is None:
        return
    if not isinstance(stat, Tensor):  # a bare array given as the running statistic: update it in place
        if batch_value._data is not None:
            stat[...] = (1.0 - momentum) * stat + momentum * scale * batch_value.host().astype(stat.dtype)
        return
    with no_grad():
        b = batch_value if batch_value.dtype == stat.dtype else astype(batch_value, stat.dtype.name)
        new = mul(stat, 1.0 - momentum) + mul(b, momentum * scale)
    assign_state(stat, new)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,  # noqa: A002
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.batch_norm for (N, C), (N, C, L) and (N, C, H, W) inputs.

    In training, normalizes with the batch statistics and updates ``running_mean``/``running_var`` in place
    (their ``.data``) with ``momentum`` and the unbiased batch variance, exactly as PyTorch does.
    """
    x = input
    if x.ndim < 2:
        fail("batch_norm", "input must have at least 2 dims (N, C, ...)", input=list(x.shape))
    c = x.shape[1]
    w = _per_channel(weight, c, x, 1.0)
    b = _per_channel(bias, c, x, 0.0)
    eps = float(eps)
    if training:
        m = x.numel() // max(c, 1)
        if m <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                             f"got input size {list(x.shape)}")
        if momentum is None:
            raise ValueError("batch_norm: momentum=None (cumulative average) needs the module's batch counter; "
                             "pass a float momentum")
        for name, stat in (("running_mean", running_mean), ("running_var", running_var)):
            if stat is not None and tuple(np.shape(stat)) != (c,):
                fail("batch_norm", f"{name} must have shape (C,) where C = input.shape[1]",
                     **{name: list(np.shape(stat))}, C=c)
        y, mean, var = bind(batch_norm_train_p, x, w, b, eps=eps)
        update_running(running_mean, mean, float(momentum))
        update_running(running_var, var, float(momentum), m / (m - 1))
        return y
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm: running_mean and running_var must be given when training=False")
    rm = _per_channel(running_mean, c, x, 0.0)
    rv = _per_channel(running_var, c, x, 1.0)
    return bind(batch_norm_infer_p, x, w, b, rm, rv, eps=eps)


def local_response_norm(input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,  # noqa: A002
                        k: float = 1.0) -> Tensor:
    """torch.nn.functional.local_response_norm: ``x / (k + alpha * avg_{size channels}(x^2)) ** beta``.

    The channel window is zero padded by ``size // 2`` before and ``(size - 1) // 2`` after and always
    divided by ``size`` (PyTorch's avg_pool with count_include_pad). Composite: square, pad the channel axis,
    sum ``size`` shifted slices.
    """
    x = input
    if x.ndim < 3:
        fail("local_response_norm", "input must have at least 3 dims (N, C, L, ...)", input=list(x.shape))
    size = int(size)
    if size < 1:
        fail("local_response_norm", "size must be at least 1", size=size)
    if x.numel() == 0:
        return x
    c = x.shape[1]
    sq = x * x
    padded = pad(sq, (0, 0) * (x.ndim - 2) + (size // 2, (size - 1) // 2))
    window = _slice(padded, 1, 0, c)
    for i in range(1, size):
        window = window + _slice(padded, 1, i, i + c)
    div = (window * (float(alpha) / size) + float(k)) ** float(beta)
    return x / div
