"""OpenMP settings the engine needs before any OpenMP runtime loads (numba's threading layer, PyTorch's)."""

import os
import sys

# Idle OpenMP workers sleep instead of spinning for milliseconds: on a shared, oversubscribed machine spinning
# workers made every parallel launch cost a scheduler time slice (16 ms per tiny kernel with the default policy).
# Set before anything can load an OpenMP runtime (numba's threading layer, PyTorch's): imported after this,
# PyTorch's OpenMP also stops spinning between calls; imported before, its spinning workers slowed a numba
# ResNet-18 CIFAR step by ~50% (555 -> 800-836 ms). An explicit user setting wins.
if "torch" in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
    import warnings

    warnings.warn("convgraph: PyTorch was imported first, so its OpenMP workers spin between calls and slow the "
                  "numba kernels (~1.5x measured); import engine before torch or set OMP_WAIT_POLICY=passive",
                  RuntimeWarning, stacklevel=2)
# ... but not at once: after a parallel region they spin GOMP_SPINCOUNT rounds (a few microseconds) before
# sleeping. Sleeping at once made every numba parallel launch cost ~45 us (futex wake-ups) against ~1.5 us, and a
# training step launches hundreds (LeNet-5 step 14.0 -> 11.3 ms, ResNet-18 CIFAR 378 -> 363 ms).
# ENV_SET: what this module set, so a benchmark can give a peer process (PyTorch) its own defaults.
ENV_SET = {k: v for k, v in (("OMP_WAIT_POLICY", "passive"), ("GOMP_SPINCOUNT", "10000")) if k not in os.environ}
os.environ.update(ENV_SET)
