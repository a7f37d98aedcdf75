"""Random primitives on numba: the draw itself is numpy's generator (the same stream as the reference backend,
so masks do not depend on the backend); it is a small share of a dropout layer's time."""

from __future__ import annotations

from backends.numpy import random as _reference

from . import backend

backend.register("rng_key")(_reference.rng_key)
backend.register("bernoulli_mask")(_reference.bernoulli_mask)
