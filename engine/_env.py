"""OpenMP settings the engine needs before any OpenMP runtime loads (numba's threading layer, PyTorch's).

An OpenMP runtime reads these variables once, when it starts, so they cannot live anywhere but here: this module is
imported first by ``engine/__init__.py``. An explicit setting in the environment always wins. Measurements and
trade-offs: docs/configuration.md.

- ``OMP_WAIT_POLICY=passive``: idle workers sleep instead of spinning for milliseconds. On a shared, busy machine
  spinning workers make every parallel launch wait for a scheduler time slice.
- ``GOMP_SPINCOUNT=1000``: after a parallel region a worker spins ~50 us (1000 rounds of ~48 ns) before it
  sleeps. That covers the gap to the next region of the same call (a serial kernel, the executor's step), so the
  next region starts without waking a sleeping thread: a halted virtual CPU took ~47 us to wake per region here
  with a spare core (1.8 us with the spin), which cost MobileNetV2 batch 1 about a quarter of its time. Longer
  spins (10000 and up) lose their core on a busy machine and every later region then waits for a time slice; with
  every core busy even 1000 costs more than none (57 vs 10 us per launch): ``bench/parallel_regions.py``,
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
DEFAULTS = {"OMP_WAIT_POLICY": "passive", "GOMP_SPINCOUNT": "1000"}
ENV_SET = {k: v for k, v in DEFAULTS.items() if k not in os.environ}
os.environ.update(ENV_SET)
