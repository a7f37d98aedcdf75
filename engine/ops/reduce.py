"""Reductions over axes: sum, max (with gradient), argmax; mean is sum scaled."""

from __future__ import annotations

import builtins
import math

import numpy as np

from ..autograd import bind
from ..primitive import REDUCE, Spec, fail, normalize_axes, primitive
from ..tensor import Tensor
from .elementwise import astype, equal
from .shape import broadcast_to, reshape

__all__ = ["sum", "mean", "max", "amax", "argmax", "var"]


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
        if name == "max" and any(x.shape[a] == 0 for a in axes):
            fail(name, "cannot reduce over an empty axis", shape=list(x.shape), axes=axes)
        return Spec(_reduced_shape(x.shape, axes, keepdims), x.dtype)

    return p


sum_p = _reduction("sum")
max_p = _reduction("max")


def _expand_back(g: Tensor, x_shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> Tensor:
    if not keepdims:
        g = reshape(g, _reduced_shape(x_shape, axes, True))
    return broadcast_to(g, x_shape)


sum_p.def_vjp(lambda g, y, x, axes, keepdims: (_expand_back(g, x.shape, axes, keepdims),))


@max_p.def_vjp
def _max_vjp(g: Tensor, y: Tensor, x: Tensor, axes: tuple[int, ...], keepdims: bool) -> tuple[Tensor]:
    # ties share the gradient evenly (torch's amax convention)
    mask = astype(equal(x, _expand_back(y, x.shape, axes, keepdims)), x.dtype.name)
    count = _expand_back(sum(mask, axes, keepdims=True), x.shape, axes, True)
    return (_expand_back(g, x.shape, axes, keepdims) * mask / count,)


def _axes(x: Tensor, dim: int | tuple[int, ...] | list[int] | None, op: str) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(x.ndim))
    if isinstance(dim, (int, np.integer)):
        dim = (int(dim),)
    return normalize_axes(op, tuple(dim), x.ndim)


def sum(x: Tensor, dim: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return bind(sum_p, x, axes=_axes(x, dim, "sum"), keepdims=bool(keepdims))


def mean(x: Tensor, dim: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    axes = _axes(x, dim, "mean")
    n = math.prod(x.shape[a] for a in axes)
    if n == 0:
        fail("mean", "cannot average over an empty axis", shape=list(x.shape), axes=axes)
    return bind(sum_p, x, axes=axes, keepdims=bool(keepdims)) * (1.0 / n)


def var(x: Tensor, dim: int | tuple[int, ...] | None = None, keepdims: bool = False, unbiased: bool = True) -> Tensor:
    axes = _axes(x, dim, "var")
    n = math.prod(x.shape[a] for a in axes)
    d = x - mean(x, axes, keepdims=True)
    return sum(d * d, axes, keepdims) * (1.0 / builtins.max(n - (1 if unbiased else 0), 1))  # module max shadows


def amax(x: Tensor, dim: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    return bind(max_p, x, axes=_axes(x, dim, "max"), keepdims=bool(keepdims))


def max(x: Tensor, dim: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Maximum value over ``dim`` (values only; use :func:`argmax` for indices)."""
    return amax(x, dim, keepdims)


argmax_p = primitive("argmax", REDUCE)


@argmax_p.def_shape
def _argmax_shape(x: Spec, axis: int, keepdims: bool) -> Spec:
    if not 0 <= axis < x.ndim:
        fail("argmax", f"axis must be in [0, {x.ndim})", axis=axis)
    if x.shape[axis] == 0:
        fail("argmax", "cannot take argmax over an empty axis", shape=list(x.shape), axis=axis)
    return Spec(_reduced_shape(x.shape, (axis,), keepdims), np.int64)


def argmax(x: Tensor, dim: int | None = None, keepdims: bool = False) -> Tensor:
    if dim is None:
        return bind(argmax_p, reshape(x, (-1,)), axis=0, keepdims=False)
    return bind(argmax_p, x, axis=_axes(x, dim, "argmax")[0], keepdims=bool(keepdims))
