"""The numpy reference backend: readable kernels that define what every primitive means.

Each kernel has the signature ``kernel(*inputs, out, **attrs)`` and writes its result into ``out``.
"""

from engine.backend import Backend, register_backend

backend = register_backend(Backend("numpy"))

from . import (  # noqa: E402,F401  (register kernels)  # noqa: E402,F401
    activation,
    conv,
    elementwise,
    fused,  # noqa: E402,F401  (fused inference primitives, engine/ops/fused.py)
    linalg,
    norm,
    pool,
    reduce,
    shape,
)

# isort: split
from . import sample_norm  # noqa: E402,F401  (issue 13: kernels of the layers a PyTorch port needs)
