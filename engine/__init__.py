"""convgraph engine: Tensors, reverse-mode autograd over one primitive table, nn, optim, data, io."""

import os
import sys

# Idle OpenMP workers sleep instead of spinning (see backends/numba/__init__.py). Set here too, before anything
# else can load an OpenMP runtime: imported after this, PyTorch's OpenMP also stops spinning between calls;
# imported before, its spinning workers slowed a numba ResNet-18 CIFAR step by ~50% (555 -> 800-836 ms).
if "torch" in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
    import warnings

    warnings.warn("convgraph: PyTorch was imported first, so its OpenMP workers spin between calls and slow the "
                  "numba kernels (~1.5x measured); import engine before torch or set OMP_WAIT_POLICY=passive",
                  RuntimeWarning, stacklevel=2)
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from . import functional  # noqa: E402
from . import methods as _methods
from .autograd import abstract, bind, detect_anomaly, enable_grad, is_grad_enabled, no_grad, observe
from .backend import (
    Backend,
    active_backend,
    available_backends,
    get_backend,
    register_backend,
    set_backend,
    use_backend,
)
from .blas import blas_description, tune_openblas
from .gradcheck import gradcheck
from .malloc import tune_malloc
from .primitive import PRIMITIVES, Cost, Primitive, ShapeError, Spec, get_primitive
from .profiler import profile
from .random import get_rng_state, manual_seed, set_rng_state
from .tensor import Tensor

_methods.install()
tune_malloc()  # keep freed array memory mapped for reuse (see engine/malloc.py)
tune_openblas()  # numpy's OpenBLAS: AVX-512 kernels where the CPU has them, short spin (see engine/blas.py)
from . import init, io, nn, optim  # noqa: E402,F401 - public subpackages, imported once Tensor is complete


def tensor(data, dtype=None, requires_grad: bool = False) -> Tensor:
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)


def zeros(*shape, dtype="float32", requires_grad: bool = False) -> Tensor:
    import numpy as np

    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(np.zeros(shape, dtype), requires_grad=requires_grad)


def ones(*shape, dtype="float32", requires_grad: bool = False) -> Tensor:
    import numpy as np

    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(np.ones(shape, dtype), requires_grad=requires_grad)


def randn(*shape, dtype="float32", requires_grad: bool = False) -> Tensor:
    from .random import generator

    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(generator().standard_normal(shape).astype(dtype), requires_grad=requires_grad)


__all__ = ["Tensor", "tensor", "zeros", "ones", "randn", "functional", "no_grad", "enable_grad", "is_grad_enabled",
           "abstract", "observe", "bind", "detect_anomaly", "gradcheck", "Primitive", "PRIMITIVES", "Spec", "Cost",
           "ShapeError", "get_primitive", "Backend", "register_backend", "get_backend", "set_backend", "use_backend",
           "active_backend", "available_backends", "manual_seed", "get_rng_state", "set_rng_state", "blas_description",
           "tune_openblas", "profile", "tune_malloc"]
