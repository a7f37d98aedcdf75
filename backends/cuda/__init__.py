"""The numba.cuda backend: every primitive as a GPU kernel on device arrays (``DeviceNDArray``).

The package always imports (so its kernels can be compiled to PTX on a machine without a GPU), but it registers
the backend only where numba can launch kernels: on a CUDA GPU, or in numba's simulator (``NUMBA_ENABLE_CUDASIM=1``
set before numba is first imported). Elsewhere ``engine.get_backend("cuda")`` fails with :data:`UNAVAILABLE`.
"""

from numba import cuda

from engine.backend import register_backend

from . import (  # noqa: F401 - each module registers its kernels
    call,
    conv,
    elementwise,
    gemm,
    loss,
    norm,
    optim,
    pool,
    random,
    reduce,
    shape,
    softmax,
)
from .table import backend as backend

UNAVAILABLE = ("the cuda backend needs a CUDA GPU and driver, or numba's simulator "
               "(set NUMBA_ENABLE_CUDASIM=1 before numba is imported)")

if cuda.is_available():
    register_backend(backend)
