"""cuda kernels: data movement. Each is a strided copy between device views (:func:`.elementwise.copy`): reshape,
transpose, broadcast_to, slice, unslice, pad and concat only choose the source and destination views.

``index`` / ``index_add`` (engine/ops/index.py: numpy's advanced indexing, PyTorch's order) are a gather and a
deterministic scatter-add over flat positions planned on the host: the position of every selected element is
numpy's own indexing applied to ``arange(x.size)`` with the index arrays read back from the device (a synchronizing
copy of the small integer arrays). ``index_add`` sorts the positions (stably) so that one thread owns each target
element and adds its values in the order ``np.add.at`` does: no atomics, the same bits on every run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from engine import Spec
from engine.ops.index import index_kernel, index_p

from .elementwise import contiguous, copy, fill
from .launch import grid
from .table import backend
from .views import reshaped, transposed


@backend.register("reshape")
def reshape(x: Any, out: Any, shape: tuple[int, ...]) -> None:
    copy(reshaped(contiguous(x), out.shape), out)


@backend.register("transpose")
def transpose(x: Any, out: Any, perm: tuple[int, ...]) -> None:
    copy(transposed(x, perm), out)


@backend.register("broadcast_to")
def broadcast_to(x: Any, out: Any, shape: tuple[int, ...]) -> None:
    copy(x, out)


def _region(starts, stops, steps) -> tuple[slice, ...]:
    return tuple(slice(int(s), int(e), int(k)) for s, e, k in zip(starts, stops, steps))


@backend.register("slice")
def slice_(x: Any, out: Any, starts, stops, steps) -> None:
    if out.size:
        copy(x[_region(starts, stops, steps)], out)


@backend.register("unslice")
def unslice(g: Any, out: Any, shape, starts, steps) -> None:
    fill(out, 0)
    if g.size:
        stops = tuple(s + n * k for s, n, k in zip(starts, g.shape, steps))
        copy(g, out[_region(starts, stops, steps)])


@backend.register("pad")
def pad(x: Any, out: Any, pads: tuple[tuple[int, int], ...], value: float) -> None:
    fill(out, np.dtype(out.dtype).type(value))
    if x.size:
        copy(x, out[tuple(slice(lo, lo + d) for (lo, _), d in zip(pads, x.shape))])


@backend.register("concat")
def concat(*xs: Any, out: Any, axis: int) -> None:
    ax, start = axis % out.ndim, 0
    for x in xs:
        n = x.shape[ax]
        if x.size:
            copy(x, out[(slice(None),) * ax + (slice(start, start + n),)])
        start += n


# --- index / index_add ----------------------------------------------------------------------------------------
def _positions(shape: tuple[int, ...], arrays: tuple[Any, ...], items: tuple) -> np.ndarray:
    """Flat positions (in a C-ordered array of ``shape``) of the elements ``[items]`` selects, in result order."""
    host = tuple(backend.to_host(a) for a in arrays)
    iota = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)
    spec = index_p.abstract_eval(Spec(shape, np.int64), *(Spec(a.shape, a.dtype) for a in host), items=items)[0]
    pos = np.empty(spec.shape, np.int64)
    index_kernel(iota, *host, out=pos, items=items)
    return pos.reshape(-1)


@cuda.jit
def gather1(x, pos, out):
    for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[t] = x[pos[t]]


@cuda.jit
def scatter_add1(g, order, target, starts, out):
    """out[target[s]] = sum of g[order[k]] for k in segment s (its values in their original order)."""
    for s in range(cuda.grid(1), target.size, cuda.gridsize(1)):
        acc = g[order[starts[s]]]
        for k in range(starts[s] + 1, starts[s + 1]):
            acc += g[order[k]]
        out[target[s]] = acc


def _flat(a: Any) -> Any:
    return reshaped(a, (a.size,))


@backend.register("index")
def index(x: Any, *arrays: Any, out: Any, items: tuple) -> None:
    if out.size == 0:
        return
    pos = backend.from_host(_positions(tuple(x.shape), arrays, items))
    gather1[grid(out.size)](_flat(contiguous(x)), pos, _flat(out))


@backend.register("index_add")
def index_add(g: Any, *arrays: Any, out: Any, shape: tuple[int, ...], items: tuple) -> None:
    fill(out, 0)
    if g.size == 0:
        return
    pos = _positions(tuple(shape), arrays, items)
    order = np.argsort(pos, kind="stable")
    sorted_pos = pos[order]
    first = np.flatnonzero(np.r_[True, sorted_pos[1:] != sorted_pos[:-1]])
    starts = np.r_[first, pos.size].astype(np.int64)
    target = sorted_pos[first]
    scatter_add1[grid(target.size)](_flat(contiguous(g)), backend.from_host(order), backend.from_host(target),
                                    backend.from_host(starts), _flat(out))
