"""Random primitives on numba: the host kernels defined with the primitives (numpy's generator, the same stream as
the reference backend, so masks do not depend on the backend); a small share of a dropout layer's time."""

from engine.ops.random import bernoulli_mask_kernel, rng_key_kernel

from .table import backend

backend.register("rng_key")(rng_key_kernel)
backend.register("bernoulli_mask")(bernoulli_mask_kernel)
