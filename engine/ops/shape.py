"""Data-movement primitives: reshape, transpose, broadcast_to, concat, pad, slice (and its transpose, unslice)."""

from __future__ import annotations

import builtins
import math
from typing import Any

import numpy as np

from ..autograd import bind
from ..primitive import SHAPE, Spec, fail, primitive, same_float_dtype
from ..tensor import Tensor
from ._util import lift, result_type

__all__ = ["reshape", "flatten", "transpose", "permute", "broadcast_to", "concat", "cat", "pad", "slice",
           "squeeze", "unsqueeze", "stack", "unbroadcast"]

reshape_p = primitive("reshape", SHAPE)


@reshape_p.def_shape
def _reshape_shape(x: Spec, shape: tuple[int, ...]) -> Spec:
    if math.prod(shape) != x.size or any(d < 0 for d in shape):
        fail("reshape", "the new shape must have the same number of elements", input=list(x.shape),
             shape=list(shape))
    return Spec(shape, x.dtype)


reshape_p.def_vjp(lambda g, y, x, shape: (reshape(g, x.shape),))


def _resolve_shape(x: Tensor, shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if shape.count(-1) > 1:
        fail("reshape", "only one dimension can be -1", shape=list(shape))
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or x.numel() % known:
            fail("reshape", "cannot infer the -1 dimension", input=list(x.shape), shape=list(shape))
        shape = tuple(x.numel() // known if d == -1 else d for d in shape)
    return shape


def reshape(x: Tensor, *shape: Any) -> Tensor:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = _resolve_shape(x, shape)
    if shape == x.shape:
        return x
    return bind(reshape_p, x, shape=shape)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    nd = x.ndim
    s, e = start_dim % nd if nd else 0, end_dim % nd if nd else 0
    if s > e:
        fail("flatten", "start_dim must not come after end_dim", start_dim=start_dim, end_dim=end_dim, ndim=nd)
    return reshape(x, x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])


def squeeze(x: Tensor, dim: int) -> Tensor:
    d = dim % x.ndim
    if x.shape[d] != 1:
        return x
    return reshape(x, x.shape[:d] + x.shape[d + 1:])


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    d = dim % (x.ndim + 1)
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


transpose_p = primitive("transpose", SHAPE)


@transpose_p.def_shape
def _transpose_shape(x: Spec, perm: tuple[int, ...]) -> Spec:
    if sorted(perm) != list(range(x.ndim)):
        fail("transpose", "perm must be a permutation of the input axes", perm=perm, ndim=x.ndim)
    return Spec(tuple(x.shape[p] for p in perm), x.dtype)


transpose_p.def_vjp(lambda g, y, x, perm: (bind(transpose_p, g, perm=tuple(int(i) for i in np.argsort(perm))),))


def permute(x: Tensor, *perm: Any) -> Tensor:
    if len(perm) == 1 and isinstance(perm[0], (tuple, list)):
        perm = tuple(perm[0])
    perm = tuple(int(p) % max(x.ndim, 1) for p in perm)
    if perm == tuple(range(x.ndim)):
        return x
    return bind(transpose_p, x, perm=perm)


def transpose(x: Tensor, dim0: int = 0, dim1: int = 1) -> Tensor:
    """Swap two axes (torch.transpose); use :func:`permute` for a full permutation."""
    perm = list(range(x.ndim))
    perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
    return permute(x, tuple(perm))


broadcast_to_p = primitive("broadcast_to", SHAPE)


@broadcast_to_p.def_shape
def _broadcast_to_shape(x: Spec, shape: tuple[int, ...]) -> Spec:
    lead = len(shape) - x.ndim
    if lead < 0 or any(d != 1 and d != shape[lead + i] for i, d in enumerate(x.shape)):
        fail("broadcast_to", "input shape must broadcast to the target shape", input=list(x.shape),
             shape=list(shape))
    return Spec(shape, x.dtype)


def unbroadcast(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum ``g`` over the axes numpy broadcasting added or stretched, so it has ``shape`` (broadcast_to's vjp)."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1)
    return reshape(g.sum(axes), shape) if axes else reshape(g, shape)


broadcast_to_p.def_vjp(lambda g, y, x, shape: (unbroadcast(g, x.shape),))


def broadcast_to(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    shape = tuple(int(d) for d in shape)
    if x.shape == shape:
        return x
    return bind(broadcast_to_p, x, shape=shape)


concat_p = primitive("concat", SHAPE)


@concat_p.def_shape
def _concat_shape(*xs: Spec, axis: int) -> Spec:
    if not xs:
        fail("concat", "needs at least one tensor")
    same_float_dtype("concat", *xs)
    first = xs[0]
    if not 0 <= axis < first.ndim:
        fail("concat", f"axis must be in [0, {first.ndim})", axis=axis)
    for i, x in enumerate(xs):
        if x.ndim != first.ndim or any(a != b for k, (a, b) in enumerate(zip(x.shape, first.shape)) if k != axis):
            fail("concat", f"all shapes must match except along axis {axis}", first=list(first.shape),
                 **{f"input{i}": list(x.shape)})
    return Spec(first.shape[:axis] + (sum(x.shape[axis] for x in xs),) + first.shape[axis + 1:], first.dtype)


@concat_p.def_vjp
def _concat_vjp(g: Tensor, y: Tensor, *xs: Tensor, axis: int) -> tuple[Tensor, ...]:
    out, start = [], 0
    for x in xs:
        stop = start + x.shape[axis]
        starts = tuple(start if i == axis else 0 for i in range(g.ndim))
        stops = tuple(stop if i == axis else d for i, d in enumerate(g.shape))
        out.append(bind(slice_p, g, starts=starts, stops=stops, steps=(1,) * g.ndim))
        start = stop
    return tuple(out)


def concat(xs: list[Tensor] | tuple[Tensor, ...], dim: int = 0) -> Tensor:
    """torch.cat: mixed dtypes promote as torch.result_type does (int64 with float32 -> float32)."""
    xs = [lift(x) for x in xs]
    if len(xs) == 1:
        return xs[0]
    dtype = result_type(*xs)
    xs = [x if x.dtype == dtype else x.astype(dtype) for x in xs]  # the Tensor method: astype lives above this module
    return bind(concat_p, *xs, axis=dim % xs[0].ndim)


cat = concat


def stack(xs: list[Tensor] | tuple[Tensor, ...], dim: int = 0) -> Tensor:
    return concat([unsqueeze(x, dim) for x in xs], dim)


pad_p = primitive("pad", SHAPE)


@pad_p.def_shape
def _pad_shape(x: Spec, pads: tuple[tuple[int, int], ...], value: float) -> Spec:
    if len(pads) != x.ndim or any(b < 0 or a < 0 for b, a in pads):
        fail("pad", "pads must give non-negative (before, after) for every axis", pads=pads, ndim=x.ndim)
    return Spec(tuple(d + b + a for d, (b, a) in zip(x.shape, pads)), x.dtype)


@pad_p.def_vjp
def _pad_vjp(g: Tensor, y: Tensor, x: Tensor, pads: tuple[tuple[int, int], ...], value: float) -> tuple[Tensor]:
    starts = tuple(b for b, _ in pads)
    stops = tuple(b + d for (b, _), d in zip(pads, x.shape))
    return (bind(slice_p, g, starts=starts, stops=stops, steps=(1,) * g.ndim),)


def pad_pairs(op: str, x: Tensor, pad: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """torch's ``pad`` (left, right) pairs, last axis first, as one (before, after) pair per axis."""
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        fail(op, "pad must hold (before, after) pairs for at most ndim axes", pad=tuple(pad), ndim=x.ndim)
    pads = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        pads[x.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return tuple(pads)


def constant_pad(x: Tensor, pads: tuple[tuple[int, int], ...], value: float = 0.0) -> Tensor:
    """Pad every axis by its (before, after) pair with ``value`` (the pad primitive)."""
    if all(p == (0, 0) for p in pads):
        return x
    return bind(pad_p, x, pads=tuple(pads), value=float(value))


def pad(x: Tensor, pad: tuple[int, ...], mode: str = "constant", value: float = 0.0) -> Tensor:
    """torch.nn.functional.pad with ``mode="constant"``; the border modes (reflect, replicate, circular) are
    composites in engine/ops/resample.py, whose ``pad`` (the one ``engine.functional`` exports) handles all modes."""
    if mode != "constant":
        fail("pad", "this pad takes mode='constant' only; use engine.functional.pad for border modes", mode=mode)
    return constant_pad(x, pad_pairs("pad", x, pad), value)


slice_p = primitive("slice", SHAPE)
unslice_p = primitive("unslice", SHAPE)  # the transpose of slice: scatter into zeros of the original shape


def _slice_len(start: int, stop: int, step: int) -> int:
    return max(0, -(-(stop - start) // step))


@slice_p.def_shape
def _slice_shape(x: Spec, starts: tuple[int, ...], stops: tuple[int, ...], steps: tuple[int, ...]) -> Spec:
    if not len(starts) == len(stops) == len(steps) == x.ndim:
        fail("slice", "starts/stops/steps need one entry per axis", ndim=x.ndim, starts=starts)
    for a, (s, e, k, d) in enumerate(zip(starts, stops, steps, x.shape)):
        if not (0 <= s <= d and 0 <= e <= d and k >= 1):
            fail("slice", "bounds must satisfy 0 <= start, stop <= size and step >= 1", axis=a, start=s, stop=e,
                 step=k, size=d)
    return Spec(tuple(_slice_len(s, e, k) for s, e, k in zip(starts, stops, steps)), x.dtype)


slice_p.def_vjp(lambda g, y, x, starts, stops, steps: (
    bind(unslice_p, g, shape=x.shape, starts=starts, steps=steps),))


@unslice_p.def_shape
def _unslice_shape(g: Spec, shape: tuple[int, ...], starts: tuple[int, ...], steps: tuple[int, ...]) -> Spec:
    for a, (n, s, k, d) in enumerate(zip(g.shape, starts, steps, shape)):
        if n and s + (n - 1) * k >= d:
            fail("unslice", "the slice must fit in the target shape", axis=a, length=n, start=s, step=k, size=d)
    return Spec(shape, g.dtype)


@unslice_p.def_vjp
def _unslice_vjp(g: Tensor, y: Tensor, x: Tensor, shape, starts, steps) -> tuple[Tensor]:
    stops = tuple(s + (n - 1) * k + 1 if n else s for s, n, k in zip(starts, x.shape, steps))
    return (bind(slice_p, g, starts=starts, stops=stops, steps=steps),)


def slice(x: Tensor, dim: int, start: int | None = None, stop: int | None = None, step: int = 1) -> Tensor:  # noqa: A001
    """``x[..., start:stop:step, ...]`` along one axis (positive step)."""
    return basic_getitem(x, (builtins.slice(None),) * (dim % x.ndim) + (builtins.slice(start, stop, step),))


def basic_getitem(x: Tensor, index: Any) -> Tensor:
    """Basic indexing with ``slice`` + ``reshape``: ints, slices with positive step, Ellipsis and None (the rest is
    engine/ops/index.py)."""
    if not isinstance(index, tuple):
        index = (index,)
    n_real = sum(1 for i in index if i is not None and i is not Ellipsis)
    if n_real > x.ndim:
        raise IndexError(f"getitem: too many indices for a tensor of {x.ndim} dims (got {index!r})")
    if Ellipsis in index:
        k = index.index(Ellipsis)
        index = index[:k] + (builtins.slice(None),) * (x.ndim - n_real) + index[k + 1:]
    index = index + (builtins.slice(None),) * (x.ndim - sum(1 for i in index if i is not None))
    starts, stops, steps, out_shape = [], [], [], []
    axis = 0
    for i in index:
        if i is None:
            out_shape.append(1)
            continue
        d = x.shape[axis]
        if isinstance(i, (int, np.integer)):
            j = int(i)
            if not -d <= j < d:
                raise IndexError(f"getitem: index {j} is out of bounds for axis {axis} with size {d}")
            j %= d
            starts.append(j), stops.append(j + 1), steps.append(1)
        elif isinstance(i, builtins.slice):
            s, e, k = i.indices(d)
            if k < 1:
                raise IndexError(f"getitem: only positive slice steps are supported (got {k})")
            e = max(e, s)
            starts.append(s), stops.append(e), steps.append(k)
            out_shape.append(_slice_len(s, e, k))
        else:
            raise IndexError(f"getitem: unsupported index {i!r} (use ints, slices, None, ...)")
        axis += 1
    if tuple(starts) != (0,) * x.ndim or tuple(stops) != x.shape or tuple(steps) != (1,) * x.ndim:
        x = bind(slice_p, x, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))
    return reshape(x, tuple(out_shape))
