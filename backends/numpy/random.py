"""Kernels of the random primitives (engine/ops/random.py): the host kernels defined with the primitives, so every
host backend draws the same stream."""

from engine.ops.random import bernoulli_mask_kernel, rng_key_kernel

from .table import backend

backend.register("rng_key")(rng_key_kernel)
backend.register("bernoulli_mask")(bernoulli_mask_kernel)
