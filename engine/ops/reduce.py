"""Reductions over axes: sum, max and min (with gradient), argmax and argmin; mean and var are sums scaled.

As in PyTorch: ``dim`` is an int, a tuple or None (all axes), ``keepdim`` keeps reduced axes as size 1 (numpy's
``keepdims`` spelling is accepted too); integer and bool sums give int64 (a uint8 sum does not wrap); integer
means promote to float32 (PyTorch asks for a float input there); ``max(x, dim)`` / ``min(x, dim)`` give a
``(values, indices)`` named tuple whose gradient goes to the selected element, while ``max(x)`` and ``amax``
give values only, splitting the gradient evenly between ties.
"""

from __future__ import annotations

import builtins
import math
from typing import NamedTuple

import numpy as np

from ..autograd import bind
from ..primitive import REDUCE, Spec, fail, normalize_axes, primitive
from ..tensor import Tensor
from .elementwise import astype, equal
from .index import take_along_dim
from .shape import broadcast_to, reshape

__all__ = ["sum", "mean", "max", "min", "amax", "amin", "argmax", "argmin", "var"]

Dim = int | tuple[int, ...] | list[int] | None


def _reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduction(name: str):
    p = primitive(name, REDUCE)

    @p.def_shape
    def _shape(x: Spec, axes: tuple[int, ...], keepdims: bool) -> Spec:
        if axes != normalize_axes(name, axes, x.ndim):
            fail(name, "axes must be normalized, sorted and distinct", axes=axes, ndim=x.ndim)
        if name != "sum" and any(x.shape[a] == 0 for a in axes):
            fail(name, "cannot reduce over an empty axis", shape=list(x.shape), axes=axes)
        return Spec(_reduced_shape(x.shape, axes, keepdims), x.dtype)

    return p


sum_p = _reduction("sum")
max_p = _reduction("max")
min_p = _reduction("min")


def _expand_back(g: Tensor, x_shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Tensor:
    if not keepdims:
        g = reshape(g, _reduced_shape(x_shape, axes, True))
    return broadcast_to(g, x_shape)


sum_p.def_vjp(lambda g, y, x, axes, keepdims: (_expand_back(g, x.shape, axes, keepdims),))


def _extremum_vjp(g: Tensor, y: Tensor, x: Tensor, axes: tuple[int, ...], keepdims: bool) -> tuple[Tensor]:
    # ties share the gradient evenly (torch's amax / amin convention)
    mask = astype(equal(x, _expand_back(y, x.shape, axes, keepdims)), x.dtype.name)
    count = _expand_back(sum(mask, axes, keepdim=True), x.shape, axes, True)
    return (_expand_back(g, x.shape, axes, keepdims) * mask / count,)


max_p.def_vjp(_extremum_vjp)
min_p.def_vjp(_extremum_vjp)


def _axes(x: Tensor, dim: Dim, op: str) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(x.ndim))
    if isinstance(dim, (int, np.integer)):
        dim = (int(dim),)
    return normalize_axes(op, tuple(dim), x.ndim)


def _keep(keepdim: bool, keepdims: bool | None) -> bool:
    return bool(keepdim if keepdims is None else keepdims)


def sum(x: Tensor, dim: Dim = None, keepdim: bool = False, *, keepdims: bool | None = None) -> Tensor:  # noqa: A001
    if x.dtype.kind in "biu":
        x = astype(x, np.int64)
    return bind(sum_p, x, axes=_axes(x, dim, "sum"), keepdims=_keep(keepdim, keepdims))


def mean(x: Tensor, dim: Dim = None, keepdim: bool = False, *, keepdims: bool | None = None) -> Tensor:
    axes = _axes(x, dim, "mean")
    n = math.prod(x.shape[a] for a in axes)
    if n == 0:
        fail("mean", "cannot average over an empty axis", shape=list(x.shape), axes=axes)
    if x.dtype.kind not in "fc":
        x = astype(x, np.float32)
    return bind(sum_p, x, axes=axes, keepdims=_keep(keepdim, keepdims)) * (1.0 / n)


def var(x: Tensor, dim: Dim = None, keepdim: bool = False, unbiased: bool = True, *,
        keepdims: bool | None = None) -> Tensor:
    axes = _axes(x, dim, "var")
    n = math.prod(x.shape[a] for a in axes)
    d = x - mean(x, axes, keepdim=True)
    scale = 1.0 / builtins.max(n - (1 if unbiased else 0), 1)  # the module's max shadows the builtin
    return sum(d * d, axes, _keep(keepdim, keepdims)) * scale


def amax(x: Tensor, dim: Dim = None, keepdim: bool = False, *, keepdims: bool | None = None) -> Tensor:
    return bind(max_p, x, axes=_axes(x, dim, "max"), keepdims=_keep(keepdim, keepdims))


def amin(x: Tensor, dim: Dim = None, keepdim: bool = False, *, keepdims: bool | None = None) -> Tensor:
    return bind(min_p, x, axes=_axes(x, dim, "min"), keepdims=_keep(keepdim, keepdims))


class MaxMin(NamedTuple):
    """What ``max(x, dim)`` and ``min(x, dim)`` return, as torch.return_types.max: values and their indices."""

    values: Tensor
    indices: Tensor


def _select(x: Tensor, dim: int, keepdim: bool, arg) -> MaxMin:
    d = _axes(x, dim, "max")[0]
    idx = arg(x, d, keepdim=True)
    values = take_along_dim(x, idx, d)  # the gradient goes to the selected element only, as in PyTorch
    if not keepdim:
        shape = _reduced_shape(x.shape, (d,), False)
        values, idx = reshape(values, shape), reshape(idx, shape)
    return MaxMin(values, idx)


def max(x: Tensor, dim: int | None = None, keepdim: bool = False, *,  # noqa: A001
        keepdims: bool | None = None) -> Tensor | MaxMin:
    """torch.max: the largest value (``dim=None``), or ``(values, indices)`` along ``dim``."""
    if dim is None:
        return amax(x)
    return _select(x, dim, _keep(keepdim, keepdims), argmax)


def min(x: Tensor, dim: int | None = None, keepdim: bool = False, *,  # noqa: A001
        keepdims: bool | None = None) -> Tensor | MaxMin:
    """torch.min: the smallest value (``dim=None``), or ``(values, indices)`` along ``dim``."""
    if dim is None:
        return amin(x)
    return _select(x, dim, _keep(keepdim, keepdims), argmin)


def _arg_reduction(name: str):
    p = primitive(name, REDUCE)

    @p.def_shape
    def _shape(x: Spec, axis: int, keepdims: bool) -> Spec:
        if not 0 <= axis < x.ndim:
            fail(name, f"axis must be in [0, {x.ndim})", axis=axis)
        if x.shape[axis] == 0:
            fail(name, f"cannot take {name} over an empty axis", shape=list(x.shape), axis=axis)
        return Spec(_reduced_shape(x.shape, (axis,), keepdims), np.int64)

    return p


argmax_p = _arg_reduction("argmax")
argmin_p = _arg_reduction("argmin")


def _arg(p, x: Tensor, dim: int | None, keepdim: bool) -> Tensor:
    if dim is None:
        out = bind(p, reshape(x, (-1,)), axis=0, keepdims=False)
        return reshape(out, (1,) * x.ndim) if keepdim else out
    return bind(p, x, axis=_axes(x, dim, p.name)[0], keepdims=bool(keepdim))


def argmax(x: Tensor, dim: int | None = None, keepdim: bool = False, *, keepdims: bool | None = None) -> Tensor:
    """Index of the first maximum (the first NaN if any) along ``dim``; of the flattened tensor for None."""
    return _arg(argmax_p, x, dim, _keep(keepdim, keepdims))


def argmin(x: Tensor, dim: int | None = None, keepdim: bool = False, *, keepdims: bool | None = None) -> Tensor:
    """Index of the first minimum (the first NaN if any) along ``dim``; of the flattened tensor for None."""
    return _arg(argmin_p, x, dim, _keep(keepdim, keepdims))

