"""The numpy reference backend: readable kernels that define what every primitive means.

Each kernel has the signature ``kernel(*inputs, out, **attrs)`` and writes its result into ``out``.
"""

from . import (  # noqa: F401 - each module registers its kernels
    activation,
    blocked,
    blocked_train,
    call,
    conv,
    elementwise,
    fused,
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
from .table import backend as backend
