"""Reference kernels of the random primitives (engine/ops/random.py)."""

from __future__ import annotations

import numpy as np

from engine.ops.random import mask_from_key
from engine.random import next_key

from .table import backend


@backend.register("rng_key")
def rng_key(out: np.ndarray) -> None:
    out[...] = next_key()


@backend.register("bernoulli_mask")
def bernoulli_mask(key: np.ndarray, out: np.ndarray, shape: tuple[int, ...], keep: float, dtype: str) -> None:
    out[...] = mask_from_key(key, shape, keep, dtype)
