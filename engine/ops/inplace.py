"""In-place updates (``x.add_(y)``, ``x += y``, ``x.zero_()``) with PyTorch's rules.

- A leaf that requires grad cannot be written in place while grad is enabled (write it under ``no_grad``, as
  optimizers do).
- A tensor outside autograd is written in its own array: every reference to it (``u = t; t += 1``) and its
  ``.numpy()`` array see the new values, and its version is bumped (compiled modules notice changed weights;
  a backward through a node that used the old values refuses, as PyTorch's does).
- A tensor inside the autograd graph takes the out-of-place result as its new value and history, so gradients
  stay right; nodes that read its old value keep it (see :func:`_adopt`).
- While a trace watches (``graph.compile``) the methods raise: the tracer follows tensors by identity and cannot see
  a write. The operators (``x += y``) give the out-of-place result there instead, which Python binds to the name.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from ..autograd import _observers, is_grad_enabled
from ..backend import copy_into
from ..tensor import Tensor
from .elementwise import astype

__all__ = ["inplace", "inplace_operator"]


def _check_leaf(x: Tensor, op: str) -> None:
    if x.requires_grad and x._node is None and is_grad_enabled():
        raise RuntimeError(f"{op}: a leaf tensor that requires grad ({x.spec}) cannot be modified in place; do it "
                           f"under engine.no_grad(), or compute out of place (y = x + 1)")


def _tracked(x: Tensor, args: tuple[Any, ...]) -> bool:
    """Whether the write must go through autograd (the value has a history) rather than into ``x``'s array."""
    return is_grad_enabled() and (x.requires_grad or any(isinstance(a, Tensor) and a.requires_grad for a in args))


def _keep_dtype(x: Tensor, result: Tensor, op: str) -> Tensor:
    """An in-place op keeps the written tensor's dtype, as in PyTorch (float results never go into integers)."""
    if result.dtype == x.dtype:
        return result
    if result.dtype.kind in "fc" and x.dtype.kind not in "fc":
        raise RuntimeError(f"{op}: result type {result.dtype.name} can't be cast to the tensor's dtype "
                           f"{x.dtype.name} in place")
    return astype(result, x.dtype)


def _write(x: Tensor, result: Tensor, op: str) -> Tensor:
    value = result._data
    if x._data is None or value is None:
        raise RuntimeError(f"{op}: abstract tensor {x.spec} has no data to write in place")
    if value.shape != x.shape:
        raise RuntimeError(f"{op}: the result shape {list(value.shape)} does not match the tensor's "
                           f"{list(x.shape)} (an in-place op cannot broadcast the tensor it writes)")
    if not isinstance(x._data, np.ndarray):  # a device array: its backend copies
        copy_into(x._data, value)
    else:
        if not x._data.flags.writeable:
            x._data = x._data.copy()
        x._data[...] = value
    x.bump_version()
    return x


def _stand_in(x: Tensor) -> Tensor:
    """A new Tensor object for ``x``'s current value and history. The node that made ``x`` now refers to it, and
    the in-place op computes from it, so every recorded node keeps reading the value it saw."""
    old = Tensor._make(x._data, x._spec)
    old.requires_grad, old._node, old._index = x.requires_grad, x._node, x._index
    if x._node is not None:
        refs = list(x._node._out_refs)
        refs[x._index] = weakref.ref(old)
        x._node._out_refs = tuple(refs)
    return old


def _adopt(x: Tensor, result: Tensor, op: str) -> Tensor:
    """``x`` takes ``result``'s value and history (``result`` was computed from :func:`_stand_in`)."""
    if result.shape != x.shape:
        raise RuntimeError(f"{op}: the result shape {list(result.shape)} does not match the tensor's "
                           f"{list(x.shape)} (an in-place op cannot broadcast the tensor it writes)")
    x._data, x._spec = result._data, result._spec
    x.requires_grad, x._node, x._index = result.requires_grad, result._node, result._index
    if x._node is not None:
        refs = list(x._node._out_refs)
        refs[x._index] = weakref.ref(x)
        x._node._out_refs = tuple(refs)
    x.bump_version()
    return x


def inplace(x: Tensor, op: str, fn: Callable[..., Tensor], *args: Any) -> Tensor:
    """``x.op(*args)``: compute ``fn(x, *args)`` and make it ``x``'s value (the rules in the module docstring)."""
    _check_leaf(x, op)
    if _observers:
        raise RuntimeError(f"{op}: in-place ops are not supported while tracing (graph.compile follows tensors by "
                           f"identity); write it out of place (y = x + 1)")
    if _tracked(x, args):
        return _adopt(x, _keep_dtype(x, fn(_stand_in(x), *args), op), op)
    return _write(x, _keep_dtype(x, fn(x, *args), op), op)


def inplace_operator(x: Tensor, op: str, fn: Callable[..., Tensor], other: Any) -> Tensor:
    """``x += other`` and friends: in place where PyTorch writes in place, else (tensors in the autograd graph, or
    while tracing) the out-of-place result, which Python binds to the name."""
    _check_leaf(x, op)
    result = fn(x, other)
    if _observers or _tracked(x, (other,)):
        return result
    return _write(x, _keep_dtype(x, result, op), op)
