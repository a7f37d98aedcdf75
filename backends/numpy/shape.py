"""numpy reference kernels: data movement."""

from __future__ import annotations

import numpy as np

from engine.ops.index import index_add_kernel, index_kernel

from .table import backend


@backend.register("reshape")
def reshape(x: np.ndarray, out: np.ndarray, shape: tuple[int, ...]) -> None:
    out[...] = x.reshape(shape)


@backend.register("transpose")
def transpose(x: np.ndarray, out: np.ndarray, perm: tuple[int, ...]) -> None:
    out[...] = x.transpose(perm)


@backend.register("broadcast_to")
def broadcast_to(x: np.ndarray, out: np.ndarray, shape: tuple[int, ...]) -> None:
    out[...] = np.broadcast_to(x, shape)


@backend.register("concat")
def concat(*xs_and_out: np.ndarray, out: np.ndarray, axis: int) -> None:
    np.concatenate(xs_and_out, axis=axis, out=out)


@backend.register("pad")
def pad(x: np.ndarray, out: np.ndarray, pads: tuple[tuple[int, int], ...], value: float) -> None:
    out[...] = np.pad(x, pads, constant_values=value)


def _index(starts, stops, steps) -> tuple[slice, ...]:
    return tuple(slice(s, e, k) for s, e, k in zip(starts, stops, steps))


@backend.register("slice")
def slice_(x: np.ndarray, out: np.ndarray, starts, stops, steps) -> None:
    out[...] = x[_index(starts, stops, steps)]


@backend.register("unslice")
def unslice(g: np.ndarray, out: np.ndarray, shape, starts, steps) -> None:
    out[...] = 0
    stops = tuple(s + n * k for s, n, k in zip(starts, g.shape, steps))
    out[_index(starts, stops, steps)] = g


backend.register("index")(index_kernel)
backend.register("index_add")(index_add_kernel)
