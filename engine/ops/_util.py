"""Helpers shared by the op families: lifting Python values to Tensors with PyTorch's type promotion."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tensor import Tensor

_DEFAULT_FLOAT = np.dtype(np.float32)
_DEFAULT_INT = np.dtype(np.int64)


def category(dtype: np.dtype) -> int:
    """PyTorch's promotion categories: 0 bool < 1 integer < 2 floating point."""
    return 0 if dtype.kind == "b" else 2 if dtype.kind in "fc" else 1


def promote_types(a: np.dtype, b: np.dtype) -> np.dtype:
    """torch.promote_types: the higher category wins outright (int64 + float32 -> float32, where numpy says
    float64); within a category the wider type (uint8 + int8 -> int16)."""
    if a == b:
        return a
    ca, cb = category(a), category(b)
    if ca != cb:
        return a if ca > cb else b
    return np.promote_types(a, b)


def _weak_dtype(v: Any) -> np.dtype:
    """The dtype a Python scalar or array has before promotion (arrays are typed like scalars: see result_type)."""
    kind = np.asarray(v).dtype.kind
    return np.dtype(np.bool_) if kind == "b" else _DEFAULT_INT if kind in "iu" else _DEFAULT_FLOAT


def result_type(*operands: Any) -> np.dtype:
    """torch.result_type over Tensors and non-Tensor values.

    Tensors with dims decide first; a 0-dim tensor only when its category is higher than theirs; a non-Tensor
    value (Python number or numpy array) only when its category is higher than every tensor's, and then as the
    default dtype of that category (float32, int64, bool). Treating numpy arrays like Python numbers keeps
    ``x * mask_array`` in ``x``'s dtype, as the engine always did."""
    dims: np.dtype | None = None
    zero: np.dtype | None = None
    weak: np.dtype | None = None
    for v in operands:
        if isinstance(v, Tensor):
            if v.ndim:
                dims = v.dtype if dims is None else promote_types(dims, v.dtype)
            else:
                zero = v.dtype if zero is None else promote_types(zero, v.dtype)
        else:
            d = _weak_dtype(v)
            weak = d if weak is None else promote_types(weak, d)
    out = dims
    for lower in (zero, weak):
        if lower is not None and (out is None or category(lower) > category(out)):
            out = lower
    assert out is not None, "result_type needs at least one operand"
    return out


def lift(x: Any, like: Tensor | None = None) -> Tensor:
    """Python scalars and arrays become constant Tensors in ``like``'s dtype (as torch does for scalars), on its
    device."""
    if isinstance(x, Tensor):
        return x
    if like is not None and (isinstance(x, (int, float, bool)) or np.ndim(x) == 0 or like.dtype.kind == "f"):
        return like.new_tensor(x)
    if like is not None:
        return like.new_tensor(x, np.asarray(x).dtype)
    return Tensor(x)


def as_tuple(v: int | tuple[int, ...] | list[int], n: int, name: str, op: str) -> tuple[int, ...]:
    if isinstance(v, (int, np.integer)):
        return (int(v),) * n
    t = tuple(int(e) for e in v)
    if len(t) != n:
        raise ValueError(f"{op}: {name} must be an int or a {n}-tuple (got {v!r})")
    return t
