"""The numba CPU backend: every primitive as an ``@njit(cache=True)`` kernel.

Kernels keep the reference signature ``kernel(*inputs, out, **attrs)``. Hot loops are ``prange`` loops over
independent output slices (batch x channel for conv, pool and norm; rows of a collapsed 4-D view for
elementwise and data movement), so thread count follows ``NUMBA_NUM_THREADS``. GEMM-shaped work of the conv
kernels (:mod:`.conv`) runs on :mod:`.gemm` (a numba GEMM with an explicit-SIMD register tile that reads the conv
layouts in place and applies the epilogue per block) where it measured faster, else on BLAS through
``np.matmul``. There is no fallback backend: a primitive without a numba kernel fails by name
(``NotImplementedError: backend 'numba' has no kernel for ...``). Design notes: docs/numba_backend.md.
"""

# Importing engine (first, below) sets the OpenMP wait policy numba's threading layer starts with: engine/_env.py.
from engine.backend import Backend, register_backend

from .conv.workspace import NumbaContext

# executors keep a NumbaContext: their conv/GEMM workspace and the derived forms of their constant weights
backend = register_backend(Backend("numba", context_type=NumbaContext, jit=True))

from . import activation, elementwise, fused, linalg, loss, norm, optim, pool, random, reduce, shape  # noqa: E402,F401
from .conv import drivers, notes  # noqa: E402,F401
from .conv.select import choose_conv_algorithm  # noqa: E402,F401

# isort: split
from . import gelu, sample_norm  # noqa: E402,F401  (issue 13: kernels of the layers a PyTorch port needs)
