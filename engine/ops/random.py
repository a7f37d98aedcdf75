"""Random primitives. Randomness enters a computation only through a *key*: ``rng_key`` draws one from the
engine's seedable generator, and ``bernoulli_mask`` turns a key into a mask deterministically. Under tracing,
``rng_key`` calls become graph inputs of kind ``"key"`` that the executor draws afresh on every call, in trace
order, so a seeded compiled run draws exactly the masks a seeded eager run draws, and tracing itself consumes
no generator state (see DESIGN: effects are explicit).
"""

from __future__ import annotations

import numpy as np

from ..autograd import bind
from ..primitive import OTHER, Spec, fail, primitive
from ..random import next_key
from ..tensor import Tensor

KEY_SPEC = Spec((), np.int64)

rng_key_p = primitive("rng_key", OTHER)


@rng_key_p.def_shape
def _rng_key_shape() -> Spec:
    return KEY_SPEC


bernoulli_mask_p = primitive("bernoulli_mask", OTHER)


@bernoulli_mask_p.def_shape
def _bernoulli_mask_shape(key: Spec, shape: tuple[int, ...], keep: float, dtype: str) -> Spec:
    if key != KEY_SPEC:
        fail("bernoulli_mask", "the key must be an int64 scalar drawn by rng_key", key=key)
    if not 0.0 <= keep <= 1.0:
        fail("bernoulli_mask", "the keep probability must be in [0, 1]", keep=keep)
    return Spec(shape, np.dtype(dtype))


def mask_from_key(key: np.ndarray, shape: tuple[int, ...], keep: float, dtype: str) -> np.ndarray:
    """The one definition of a mask: 1 where a uniform draw of the key's stream is < keep (probability keep)."""
    return (np.random.default_rng(int(key)).random(shape) < keep).astype(dtype)


def rng_key_kernel(out: np.ndarray) -> None:
    """Host kernel of rng_key: the next key of the engine's generator (every host backend draws the same stream)."""
    out[...] = next_key()


def bernoulli_mask_kernel(key: np.ndarray, out: np.ndarray, shape: tuple[int, ...], keep: float, dtype: str) -> None:
    """Host kernel of bernoulli_mask: numpy's generator seeded by the key, so masks do not depend on the backend."""
    out[...] = mask_from_key(key, shape, keep, dtype)


def rng_key() -> Tensor:
    """A fresh key from the engine's generator (``engine.manual_seed`` makes the sequence reproducible)."""
    return bind(rng_key_p)


def bernoulli_mask(shape: tuple[int, ...], keep: float, dtype: str = "float32", device: str = "cpu") -> Tensor:
    """A {0, 1} mask of ``shape`` with P(1) = ``keep``, drawn from a fresh key, made on ``device``."""
    key = rng_key()
    if device != "cpu":  # the key (drawn on the host) goes to the device, the mask is made there
        key = key.to(device)
    return bind(bernoulli_mask_p, key, shape=tuple(int(d) for d in shape), keep=float(keep),
                dtype=np.dtype(dtype).name)


__all__ = ["rng_key", "bernoulli_mask", "mask_from_key", "rng_key_p", "bernoulli_mask_p", "KEY_SPEC", "rng_key_kernel",
           "bernoulli_mask_kernel"]
