"""numpy reference kernels: softmax and log_softmax (max-shifted for stability)."""

from __future__ import annotations

import numpy as np

from . import backend


@backend.register("softmax")
def softmax(x: np.ndarray, out: np.ndarray, axis: int) -> None:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    out[...] = e / np.sum(e, axis=axis, keepdims=True)


@backend.register("log_softmax")
def log_softmax(x: np.ndarray, out: np.ndarray, axis: int) -> None:
    s = x - np.max(x, axis=axis, keepdims=True)
    out[...] = s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))
