"""OpenMP settings the engine needs before any OpenMP runtime loads (numba's threading layer, PyTorch's).

An OpenMP runtime reads these variables once, when it starts, so they cannot live anywhere but here: this module is
imported first by ``engine/__init__.py``. An explicit setting in the environment always wins. Measurements and
trade-offs: docs/configuration.md.

- ``OMP_WAIT_POLICY=passive``: idle workers sleep instead of spinning for milliseconds. On a shared, busy machine
  spinning workers make every parallel launch wait for a scheduler time slice.
- ``GOMP_SPINCOUNT=10000``: after a parallel region a worker spins ~0.5 ms (10000 rounds of ~48 ns) before it
  sleeps. That covers the gap to the next region of the same call (a serial kernel, the executor's step), and on a
  machine whose other tenants come and go, the gaps a preempted main thread leaves too, so the next region starts
  without waking a sleeping thread (a halted virtual CPU took ~47 us to wake per region here). MobileNetV2 batch 1
  against onnxruntime (whose workers spin too), same runs, 1000 vs 10000: 1.00-1.10 vs 0.90-0.96. On a machine
  whose every core is busy a spinning worker loses its core and every later region waits for a time slice
  (10000: 270-530 us per launch at load 5-9): set ``GOMP_SPINCOUNT=0`` there. ``bench/parallel_regions.py``,
  docs/configuration.md.
"""

import os
import sys

if "torch" in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
    import warnings

    # PyTorch's OpenMP runtime has already started with its own (spinning) defaults
    warnings.warn("convgraph: PyTorch was imported first, so its OpenMP workers spin between calls and slow the "
                  "numba kernels (~1.5x measured); import engine before torch or set OMP_WAIT_POLICY=passive",
                  RuntimeWarning, stacklevel=2)
# DEFAULTS: the settings above (bench/parallel_regions.py times them as its "engine" variant). ENV_SET: what this
# module set, so a benchmark can give a peer process (PyTorch) its own defaults.
DEFAULTS = {"OMP_WAIT_POLICY": "passive", "GOMP_SPINCOUNT": "10000"}
ENV_SET = {k: v for k, v in DEFAULTS.items() if k not in os.environ}
os.environ.update(ENV_SET)
