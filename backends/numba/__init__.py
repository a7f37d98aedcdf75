"""The numba CPU backend: every primitive as an ``@njit(cache=True)`` kernel.

Kernels keep the reference signature ``kernel(*inputs, out, **attrs)``. Hot loops are ``prange`` loops over
independent output slices (batch x channel for conv, pool and norm; rows of a collapsed 4-D view for
elementwise and data movement), so thread count follows ``NUMBA_NUM_THREADS``. GEMM-shaped work of the conv
kernels (:mod:`.conv`) runs on :mod:`.gemm` (a numba GEMM with an explicit-SIMD register tile that reads the conv
layouts in place and applies the epilogue per block) where it measured faster, else on BLAS through
``np.matmul``. There is no fallback backend: a primitive without a numba kernel fails by name
(``NotImplementedError: backend 'numba' has no kernel for ...``). Design notes: docs/numba_backend.md.
"""

from .table import backend as backend  # first: the kernel table every module below registers into

# isort: split
from . import (  # noqa: F401 - each module registers its kernels
    _cache,
    activation,
    blocked,
    call,
    elementwise,
    fused,
    fused_grad,
    fused_pool,
    gelu,
    linalg,
    loss,
    norm,
    optim,
    pool,
    random,
    reduce,
    sample_norm,
    shape,
)
from .blocked import train_bn  # noqa: F401
from .conv import blocked_train, drivers, notes  # noqa: F401
from .conv.select import choose_conv_algorithm  # noqa: F401

# before any kernel loads from numba's cache (importing the modules above compiles and loads nothing): a cached
# kernel compiled against another module's old source would run that old code
_cache.drop_stale()
