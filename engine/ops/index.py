"""Indexing as in PyTorch (numpy's rules): ``x[...]`` with ints, slices (any step), None, Ellipsis, integer arrays or
tensors and boolean masks, with gradients; and ``x[...] = v`` on tensors outside autograd.

Basic indexing with positive steps is ``slice`` + ``reshape`` (engine/ops/shape.py). Everything else binds one
primitive:

- ``index(x, *arrays)``, attr ``items``: ``x[items]``, where ``items`` spells the index tuple as data, one entry
  per position: ``("slice", start, stop, step)``, ``("int", i)``, ``("none",)`` or ``("array", k)`` (the k-th
  int64 input). Integers select first (PyTorch's order); then the index arrays' broadcast shape takes the place of
  the first array when they are adjacent, else goes first (numpy's rule).
- ``index_add(g, *arrays)``, attrs ``shape``, ``items``: zeros of ``shape`` with ``g`` added at ``[items]``, repeated
  indices accumulating: the transpose of ``index`` (its vjp), and ``index``'s vjp is ``index`` again.

A boolean mask becomes integer arrays (its nonzero positions), so its output shape depends on its values: masks
need concrete data (a shape-only trace cannot index with one). The kernels are numpy's own fancy indexing and
``np.add.at``, shared by every backend (:func:`index_kernel`, :func:`index_add_kernel`).
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from ..autograd import bind, is_grad_enabled
from ..backend import copy_into
from ..primitive import SHAPE, Spec, broadcast_shapes, fail, primitive
from ..tensor import Tensor
from .shape import basic_getitem

__all__ = ["getitem", "setitem", "take_along_dim", "flip"]

Item = tuple

index_p = primitive("index", SHAPE)
index_add_p = primitive("index_add", SHAPE)


def _split(items: tuple[Item, ...], arrays: tuple[np.ndarray, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The index as two numpy indexes applied one after the other: the integers first (basic: each drops its axis),
    then the rest. PyTorch applies integers before advanced indices, so ``x[0, :, idx]`` is ``x[0][:, idx]``
    (numpy would count the 0 as an advanced index and move the result axes to the front)."""
    ints: list[Any] = []
    rest: list[Any] = []
    for it in items:
        kind = it[0]
        if kind == "int":
            ints.append(it[1])
            continue
        if kind != "none":
            ints.append(builtins.slice(None))
        rest.append(builtins.slice(*it[1:]) if kind == "slice" else None if kind == "none" else arrays[it[1]])
    return tuple(ints), tuple(rest)


def _out_shape(op: str, shape: tuple[int, ...], items: tuple[Item, ...], arrays: tuple[Spec, ...]) -> tuple[int, ...]:
    """The result shape of ``x[items]``: integers drop their axis, slices and None give their lengths, and the index
    arrays' broadcast shape goes in place of the first of them when they are adjacent, else in front (numpy)."""
    n_axes = builtins.sum(1 for it in items if it[0] != "none")
    if n_axes != len(shape):
        fail(op, "items must index every axis", items=len(items), ndim=len(shape))
    parts: list[tuple[int, ...] | None] = []  # None marks an index array
    axis = 0
    for it in items:
        if it[0] == "none":
            parts.append((1,))
            continue
        d = shape[axis]
        if it[0] == "slice":
            parts.append((len(range(*builtins.slice(*it[1:]).indices(d))),))
        elif it[0] == "int":
            if not -d <= it[1] < d:
                raise IndexError(f"{op}: index {it[1]} is out of bounds for axis {axis} with size {d}")
        else:
            parts.append(None)
        axis += 1
    if not arrays:
        return tuple(d for p in parts if p is not None for d in p)
    for s in arrays:
        if s.dtype.kind not in "iu":
            fail(op, "index arrays must be integer", dtype=s.dtype.name)
    b = broadcast_shapes(op, *(s.shape for s in arrays))
    pos = [i for i, p in enumerate(parts) if p is None]
    flat = [tuple(d for p in ps if p is not None for d in p) for ps in (parts[:pos[0]], parts[pos[-1] + 1:], parts)]
    if pos[-1] - pos[0] == len(pos) - 1:  # adjacent: the broadcast shape takes their place
        return flat[0] + b + flat[1]
    return b + flat[2]


@index_p.def_shape
def _index_shape(x: Spec, *arrays: Spec, items: tuple[Item, ...]) -> Spec:
    return Spec(_out_shape("index", x.shape, items, arrays), x.dtype)


@index_add_p.def_shape
def _index_add_shape(g: Spec, *arrays: Spec, shape: tuple[int, ...], items: tuple[Item, ...]) -> Spec:
    want = _out_shape("index_add", shape, items, arrays)
    if g.shape != want:
        fail("index_add", "the added values must have the indexed shape", values=list(g.shape), indexed=list(want))
    return Spec(shape, g.dtype)


index_p.def_vjp(lambda g, y, x, *arrays, items: (
    bind(index_add_p, g, *arrays, shape=x.shape, items=items),) + (None,) * len(arrays))
index_add_p.def_vjp(lambda g, y, gy, *arrays, shape, items: (
    bind(index_p, g, *arrays, items=items),) + (None,) * len(arrays))


def index_kernel(x: np.ndarray, *arrays: np.ndarray, out: np.ndarray, items: tuple[Item, ...]) -> None:
    ints, rest = _split(items, arrays)
    out[...] = x[ints][rest]


def index_add_kernel(g: np.ndarray, *arrays: np.ndarray, out: np.ndarray, shape: tuple[int, ...],
                     items: tuple[Item, ...]) -> None:
    out[...] = 0
    ints, rest = _split(items, arrays)
    if arrays:
        np.add.at(out[ints], rest, g)  # repeated indices accumulate
    else:
        out[ints][rest] = g  # basic indices never repeat an element


# --- the index a user writes, as items + arrays ----------------------------------------------------------------
def _index_array(i: Any) -> np.ndarray:
    a = (None if i._data is None else i.host()) if isinstance(i, Tensor) else np.asarray(i)  # masks: host-side
    if a is None:
        raise IndexError("getitem: an index tensor has no data (shape-only tracing cannot index with its values)")
    if a.dtype.kind not in "iub":
        raise IndexError(f"getitem: tensors used as indices must be integer or bool (got {a.dtype.name})")
    return a


def _is_array(i: Any) -> bool:
    return isinstance(i, (Tensor, np.ndarray, list))


def _parse(ndim: int, index: Any) -> tuple[tuple[Item, ...], tuple[Any, ...], bool]:
    """``index`` as (items, index arrays, general): Ellipsis expanded, boolean masks replaced by their nonzero
    positions (one array per mask axis), integer tensors kept as they are, and whether it needs the ``index``
    primitive (arrays or a negative step) rather than ``slice``."""
    if not isinstance(index, tuple):
        index = (index,)
    entries: list[Any] = []
    arrays: list[Any] = []
    for i in index:
        if isinstance(i, Tensor) and i.dtype.kind in "iu":  # stays a tensor: traced as a value, not a constant
            arrays.append(i)
            entries.append(("array", len(arrays) - 1))
        elif _is_array(i):
            a = _index_array(i)
            if a.dtype == np.bool_:
                if a.ndim == 0:
                    raise IndexError("getitem: a 0-dim boolean index is not supported (index with x[None])")
                arrays.extend(np.nonzero(a))
                entries.extend(("array", len(arrays) - a.ndim + k) for k in range(a.ndim))
            else:
                arrays.append(a.astype(np.int64, copy=False))
                entries.append(("array", len(arrays) - 1))
        elif isinstance(i, builtins.slice):
            entries.append(("slice", *(None if v is None else int(v) for v in (i.start, i.stop, i.step))))
        elif isinstance(i, (bool, np.bool_)) or not (i is None or i is Ellipsis or isinstance(i, (int, np.integer))):
            raise IndexError(f"getitem: unsupported index {i!r} (use ints, slices, None, ..., integer or bool "
                             f"arrays/tensors)")
        else:
            entries.append(("none",) if i is None else Ellipsis if i is Ellipsis else ("int", int(i)))
    used = builtins.sum(1 for e in entries if e is not Ellipsis and e[0] != "none")
    if used > ndim:
        raise IndexError(f"getitem: too many indices for a tensor of {ndim} dims (got {index!r})")
    fill = [("slice", None, None, None)] * (ndim - used)
    if Ellipsis in entries:
        k = entries.index(Ellipsis)
        entries[k:k + 1] = fill
        if Ellipsis in entries:
            raise IndexError("getitem: an index can only have a single ellipsis ('...')")
    else:
        entries += fill
    general = bool(arrays) or any(e[0] == "slice" and e[3] is not None and e[3] < 0 for e in entries)
    for e in entries:
        if e[0] == "slice" and e[3] == 0:
            raise ValueError("getitem: slice step cannot be zero")
    return tuple(entries), tuple(arrays), general


def getitem(x: Tensor, index: Any) -> Tensor:
    """``x[index]`` (see the module docstring); gradients flow to ``x``."""
    items, arrays, general = _parse(x.ndim, index)
    if not general:
        return basic_getitem(x, index)
    return bind(index_p, x, *(a if isinstance(a, Tensor) else x.new_tensor(a, a.dtype) for a in arrays), items=items)


def take_along_dim(x: Tensor, indices: Tensor, dim: int) -> Tensor:
    """torch.take_along_dim with ``indices`` shaped like ``x`` except along ``dim``: ``x[..., indices, ...]``."""
    d = dim % x.ndim
    arrays, items = [], []
    for ax in range(x.ndim):
        if ax == d:
            items.append(("array", len(arrays)))
            arrays.append(indices)
            continue
        if indices.shape[ax] not in (1, x.shape[ax]):
            fail("take_along_dim", f"indices must match the input on every axis but {d}", input=list(x.shape),
                 indices=list(indices.shape))
        items.append(("array", len(arrays)))
        arrays.append(x.new_tensor(np.arange(x.shape[ax]).reshape([-1 if k == ax else 1 for k in range(x.ndim)]),
                                   np.int64))
    return bind(index_p, x, *arrays, items=tuple(items))


def flip(x: Tensor, dims: int | tuple[int, ...] | list[int]) -> Tensor:
    """torch.flip: reverse the order of elements along ``dims``."""
    dims = (dims,) if isinstance(dims, (int, np.integer)) else tuple(dims)
    flipped = {int(d) % x.ndim for d in dims}
    return getitem(x, tuple(builtins.slice(None, None, -1) if a in flipped else builtins.slice(None)
                            for a in range(x.ndim)))


def setitem(x: Tensor, index: Any, value: Any) -> None:
    """``x[index] = value``, written into ``x``'s data (other references see it). Autograd does not track it: it is
    for tensors that do not require grad, or under ``no_grad`` (initializing a parameter)."""
    if x.requires_grad and is_grad_enabled():
        what = "a leaf tensor that requires grad" if x._node is None else "a tensor that is part of the autograd graph"
        raise RuntimeError(f"setitem: cannot assign into {what} {x.spec} while grad is enabled; assign under "
                           f"engine.no_grad(), or build a new tensor (engine.where, engine.cat)")
    if x._data is None:
        raise RuntimeError(f"setitem: abstract tensor {x.spec} has no data to assign into")
    if not isinstance(x._data, np.ndarray):  # a device tensor: written on a host copy, then copied back in place
        host = Tensor(x.host().copy())
        setitem(host, index, value.host() if isinstance(value, Tensor) else value)
        copy_into(x._data, host._data)
        x.bump_version()
        return
    items, arrays, _ = _parse(x.ndim, index)
    arrays = tuple(a.numpy() if isinstance(a, Tensor) else a for a in arrays)
    v = value.host() if isinstance(value, Tensor) else value
    if not x._data.flags.writeable:
        x._data = x._data.copy()  # e.g. a broadcast view or a read-only file mapping
    ints, rest = _split(items, arrays)
    if all(isinstance(i, int) for i in ints):  # x[i, j] = v: no view to write through
        x._data[ints] = v
    else:
        x._data[ints][rest] = v
    x.bump_version()
