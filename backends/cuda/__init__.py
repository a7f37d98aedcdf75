"""The numba.cuda backend: every primitive as a GPU kernel on device arrays (``DeviceNDArray``).

It imports only where numba can launch kernels: on a CUDA GPU, or in numba's simulator (``NUMBA_ENABLE_CUDASIM=1``
set before numba is first imported). Elsewhere importing it raises ImportError with one line that says why, which
``engine.get_backend("cuda")`` turns into its "unavailable backend" error.
"""

from numba import cuda

if not cuda.is_available():
    raise ImportError("the cuda backend needs a CUDA GPU and driver, or numba's simulator "
                      "(set NUMBA_ENABLE_CUDASIM=1 before numba is imported)")

from .table import backend as backend  # noqa: E402
