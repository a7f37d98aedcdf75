"""Making tensors (``zeros``, ``full``, ``arange``, ``rand``, ``*_like``) and changing their dtype or copying them
(``to``, ``clone``, ``copy_to``), with PyTorch's default dtypes: float32 for floats, int64 for integers."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import backend_for_device, is_device_name
from ..random import generator
from ..tensor import Tensor
from .elementwise import astype, mul
from .shape import broadcast_to

__all__ = ["zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "rand", "randn", "arange", "clone",
           "copy_to", "to", "type_name"]

_FLOAT = np.dtype(np.float32)
_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor", "int64": "LongTensor",
               "int32": "IntTensor", "int16": "ShortTensor", "int8": "CharTensor", "uint8": "ByteTensor",
               "bool": "BoolTensor"}


def _shape(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """``f(2, 3)`` and ``f((2, 3))`` both mean shape (2, 3), as in PyTorch."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(d) for d in shape)


def _default_dtype(value: Any) -> np.dtype:
    kind = np.asarray(value).dtype.kind
    return np.dtype(np.bool_) if kind == "b" else np.dtype(np.int64) if kind in "iu" else _FLOAT


def _made(data: np.ndarray, requires_grad: bool, device: str | None) -> Tensor:
    """A new leaf of host-made ``data``, on ``device`` when one is given (as torch's ``device=`` argument)."""
    if device is not None and device != "cpu":
        data = backend_for_device(device).from_host(data)
    return Tensor(data, requires_grad=requires_grad)


def zeros(*shape: Any, dtype: Any = "float32", requires_grad: bool = False, device: str | None = None) -> Tensor:
    return _made(np.zeros(_shape(shape), dtype), requires_grad, device)


def ones(*shape: Any, dtype: Any = "float32", requires_grad: bool = False, device: str | None = None) -> Tensor:
    return _made(np.ones(_shape(shape), dtype), requires_grad, device)


def full(size: Any, fill_value: Any, dtype: Any = None, requires_grad: bool = False,
         device: str | None = None) -> Tensor:
    """torch.full: the dtype follows ``fill_value`` (bool, int64 or float32) unless given."""
    dtype = _default_dtype(fill_value) if dtype is None else np.dtype(dtype)
    return _made(np.full(_shape((size,)), fill_value, dtype), requires_grad, device)


def full_like(x: Tensor, fill_value: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """On ``x``'s device, in ``x``'s dtype unless given."""
    dtype = x.dtype if dtype is None else np.dtype(dtype)
    return x.new_tensor(np.full(x.shape, fill_value, dtype), dtype).requires_grad_(requires_grad)


def zeros_like(x: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return full_like(x, 0, dtype, requires_grad)


def ones_like(x: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return full_like(x, 1, dtype, requires_grad)


def rand(*shape: Any, dtype: Any = "float32", requires_grad: bool = False, device: str | None = None) -> Tensor:
    """Uniform on [0, 1), from the engine's seedable generator (drawn on the host: the same numbers anywhere)."""
    return _made(generator().random(_shape(shape)).astype(dtype), requires_grad, device)


def randn(*shape: Any, dtype: Any = "float32", requires_grad: bool = False, device: str | None = None) -> Tensor:
    """Standard normal, from the engine's seedable generator (drawn on the host: the same numbers anywhere)."""
    return _made(generator().standard_normal(_shape(shape)).astype(dtype), requires_grad, device)


def arange(start: Any, end: Any = None, step: Any = 1, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """torch.arange: int64 when start, end and step are integers, else float32 (unless ``dtype`` is given)."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, end, step))
        dtype = np.int64 if ints else _FLOAT
    return Tensor(np.arange(start, end, step).astype(dtype), requires_grad=requires_grad)


def clone(x: Tensor) -> Tensor:
    """A copy with its own data; gradients flow back to ``x`` (multiplying by one is exact, signed zeros and NaN
    included)."""
    if x.requires_grad and x._data is not None:
        return mul(x, Tensor(np.ones((), x.dtype)))
    if x._data is not None and not isinstance(x._data, np.ndarray):  # a device array: copied by its backend
        return Tensor._make(mul(x, Tensor(np.ones((), x.dtype)))._data, x.spec)
    return Tensor._make(None if x._data is None else x._data.copy(), x.spec)


def copy_to(x: Tensor, src: Any) -> Tensor:
    """``src`` broadcast to ``x``'s shape in ``x``'s dtype: the value ``x.copy_(src)`` writes."""
    s = src if isinstance(src, Tensor) else x.new_tensor(src, np.asarray(src).dtype)
    return astype(broadcast_to(s, x.shape), x.dtype)


def move(x: Tensor, device: str) -> Tensor:
    """``x`` with its data on ``device`` (itself when it is there already). The copy is a new tensor that keeps
    ``requires_grad`` but is not recorded on the tape: gradients do not flow back across devices."""
    device = device.split(":")[0]
    if device in ("mps", "meta"):
        raise ValueError(f"to: device {device!r} is not supported (devices: 'cpu', 'cuda')")
    if x.device == device or x._data is None:
        return x
    data = x.host()
    if device != "cpu":
        data = backend_for_device(device).from_host(data)
    elif data is x._data:
        data = data.copy()
    return Tensor(data, requires_grad=x.requires_grad)


def to(x: Tensor, *args: Any, dtype: Any = None, device: Any = None, copy: bool = False, **_: Any) -> Tensor:
    """torch.Tensor.to with dtypes and devices (``non_blocking`` and the like are accepted, ignored)."""
    want = None if dtype is None else np.dtype(dtype)
    where = None
    for a in (device, *args):
        if a is None:
            continue
        if isinstance(a, Tensor):
            want, where = a.dtype, a.device
        elif is_device_name(a):
            where = a
        else:
            want = np.dtype(a)
    out = x if want is None else astype(x, want)
    if where is not None:
        out = move(out, where)
    return clone(out) if copy and out is x else out


def type_name(x: Tensor) -> str:
    """``x.type()``: the PyTorch-style type name, e.g. ``engine.FloatTensor``."""
    return "engine." + _TYPE_NAMES.get(x.dtype.name, f"{x.dtype.name}Tensor")
