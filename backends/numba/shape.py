"""numba kernels: data movement. Every op is a view on the host side plus one parallel strided copy
(:func:`.elementwise.run_unary` with ``COPY``); pad and unslice first fill ``out`` in parallel."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine.ops.index import index_add_kernel, index_kernel

from .elementwise import COPY, run_unary
from .table import backend


@njit(parallel=True, cache=True)
def fill1(out, value):
    n = out.shape[0]
    for i in prange(n):
        out[i] = value


def fill(out: np.ndarray, value: float) -> None:
    """out[...] = value (out is C-contiguous, as every planned buffer is)."""
    if out.size:
        fill1(out.reshape(-1), out.dtype.type(value))


def copy(src: np.ndarray, dst: np.ndarray) -> None:
    run_unary(COPY, src, dst)


def _index(starts, stops, steps) -> tuple[slice, ...]:
    return tuple(slice(s, e, k) for s, e, k in zip(starts, stops, steps))


@backend.register("reshape")
def reshape(x: np.ndarray, out: np.ndarray, shape: tuple[int, ...]) -> None:
    if x.flags.c_contiguous:
        copy(x.reshape(shape), out)
    else:  # copy in x's own shape into out viewed the same way (out is contiguous)
        copy(x, out.reshape(x.shape))


@backend.register("transpose")
def transpose(x: np.ndarray, out: np.ndarray, perm: tuple[int, ...]) -> None:
    copy(x.transpose(perm), out)


@backend.register("broadcast_to")
def broadcast_to(x: np.ndarray, out: np.ndarray, shape: tuple[int, ...]) -> None:
    copy(x, out)  # run_unary broadcasts x to out.shape with zero strides


_CONCAT_SERIAL_BYTES = 8 << 20


@backend.register("concat")
def concat(*xs: np.ndarray, out: np.ndarray, axis: int) -> None:
    if len(xs) > 2 and out.nbytes <= _CONCAT_SERIAL_BYTES:
        # many small inputs (DenseNet's concat of every earlier feature map): one serial copy beats one parallel
        # launch per input, whose start and join dominate at these sizes
        np.concatenate(xs, axis=axis, out=out)
        return
    start = 0
    for x in xs:  # one parallel copy per input tensor
        idx = (slice(None),) * axis + (slice(start, start + x.shape[axis]),)
        copy(x, out[idx])
        start += x.shape[axis]


@backend.register("pad")
def pad(x: np.ndarray, out: np.ndarray, pads: tuple[tuple[int, int], ...], value: float) -> None:
    fill(out, value)
    copy(x, out[tuple(slice(b, b + d) for (b, _), d in zip(pads, x.shape))])


@backend.register("slice")
def slice_(x: np.ndarray, out: np.ndarray, starts, stops, steps) -> None:
    copy(x[_index(starts, stops, steps)], out)


@backend.register("unslice")
def unslice(g: np.ndarray, out: np.ndarray, shape, starts, steps) -> None:
    fill(out, 0)
    stops = tuple(s + n * k for s, n, k in zip(starts, g.shape, steps))
    copy(g, out[_index(starts, stops, steps)])


# numpy's fancy indexing and np.add.at are compiled loops already, with numpy's exact semantics (dimension
# placement, repeated indices): the same kernels as the reference backend
backend.register("index")(index_kernel)
backend.register("index_add")(index_add_kernel)
