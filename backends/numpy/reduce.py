"""numpy reference kernels: reductions."""

from __future__ import annotations

import numpy as np

from .table import backend


@backend.register("sum")
def sum_(x: np.ndarray, out: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> None:
    out[...] = np.sum(x, axis=axes, keepdims=keepdims)


@backend.register("max")
def max_(x: np.ndarray, out: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> None:
    out[...] = np.max(x, axis=axes, keepdims=keepdims)


@backend.register("argmax")
def argmax(x: np.ndarray, out: np.ndarray, axis: int, keepdims: bool) -> None:
    out[...] = np.argmax(x, axis=axis, keepdims=keepdims)


@backend.register("min")
def min_(x: np.ndarray, out: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> None:
    out[...] = np.min(x, axis=axes, keepdims=keepdims)


@backend.register("argmin")
def argmin(x: np.ndarray, out: np.ndarray, axis: int, keepdims: bool) -> None:
    out[...] = np.argmin(x, axis=axis, keepdims=keepdims)
