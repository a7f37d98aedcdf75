"""OpenMP settings the engine needs before any OpenMP runtime loads (numba's threading layer, PyTorch's).

An OpenMP runtime reads these variables once, when it starts, so they cannot live anywhere but here: this module is
imported first by ``engine/__init__.py``. An explicit setting in the environment always wins. Measurements and
trade-offs: docs/configuration.md.

- ``OMP_WAIT_POLICY=passive``: idle workers sleep instead of spinning for milliseconds. On a shared, busy machine
  spinning workers make every parallel launch wait for a scheduler time slice.
- ``GOMP_SPINCOUNT=0``: ... at once, with no spin first. A worker that spins before sleeping is charged the spin
  by the scheduler and, woken for the next parallel region, waits for another process's time slice instead of
  taking its core at once; that region's barrier waits for it (``bench/parallel_regions.py`` measures it).
"""

import os
import sys

if "torch" in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
    import warnings

    # PyTorch's OpenMP runtime has already started with its own (spinning) defaults
    warnings.warn("convgraph: PyTorch was imported first, so its OpenMP workers spin between calls and slow the "
                  "numba kernels (~1.5x measured); import engine before torch or set OMP_WAIT_POLICY=passive",
                  RuntimeWarning, stacklevel=2)
# ENV_SET: what this module set, so a benchmark can give a peer process (PyTorch) its own defaults.
ENV_SET = {k: v for k, v in (("OMP_WAIT_POLICY", "passive"), ("GOMP_SPINCOUNT", "0")) if k not in os.environ}
os.environ.update(ENV_SET)
