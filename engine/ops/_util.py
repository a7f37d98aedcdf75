"""Helpers shared by the op families: lifting Python values to Tensors and un-broadcasting gradients."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tensor import Tensor


def lift(x: Any, like: Tensor | None = None) -> Tensor:
    """Python scalars and arrays become constant Tensors in ``like``'s dtype (as torch does for scalars)."""
    if isinstance(x, Tensor):
        return x
    if like is not None and (isinstance(x, (int, float, bool)) or np.ndim(x) == 0 or like.dtype.kind == "f"):
        return Tensor(np.asarray(x, dtype=like.dtype))
    return Tensor(x)


def lift_pair(a: Any, b: Any) -> tuple[Tensor, Tensor]:
    if isinstance(a, Tensor):
        return a, lift(b, a)
    if isinstance(b, Tensor):
        return lift(a, b), b
    return Tensor(a), Tensor(b)


def as_tuple(v: int | tuple[int, ...] | list[int], n: int, name: str, op: str) -> tuple[int, ...]:
    if isinstance(v, (int, np.integer)):
        return (int(v),) * n
    t = tuple(int(e) for e in v)
    if len(t) != n:
        raise ValueError(f"{op}: {name} must be an int or a {n}-tuple (got {v!r})")
    return t
