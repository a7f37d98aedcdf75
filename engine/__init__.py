"""convgraph engine: Tensors, reverse-mode autograd over one primitive table, nn, optim, data, io."""

# first: sets the OpenMP variables before anything can load an OpenMP runtime
from ._env import ENV_SET as ENV_SET

# isort: split
from . import functional, init, io, nn, optim
from .autograd import (
    abstract,
    bind,
    detect_anomaly,
    enable_grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    observe,
    set_grad_enabled,
)
from .backend import (
    Backend,
    ExecutorContext,
    active_backend,
    are_deterministic_algorithms_enabled,
    available_backends,
    get_backend,
    register_backend,
    set_backend,
    use_backend,
    use_deterministic_algorithms,
)
from .blas import blas_description, tune_openblas, tune_openblas_from_env
from .gradcheck import gradcheck
from .malloc import tune_malloc
from .ops.creation import arange, full, ones, ones_like, rand, randn, zeros, zeros_like
from .ops.shape import cat, stack
from .primitive import PRIMITIVES, Cost, Primitive, ShapeError, Spec, get_primitive
from .profiler import profile
from .random import generator, get_rng_state, manual_seed, set_rng_state
from .tensor import Tensor

tune_malloc()  # keep freed array memory mapped for reuse (see engine/malloc.py)
tune_openblas_from_env()  # numpy's OpenBLAS: short worker spin; AVX-512 kernels only on request (engine/blas.py)


def tensor(data, dtype=None, requires_grad: bool = False) -> Tensor:
    """torch.tensor: a Tensor with its own copy of ``data`` (in-place ops never write the caller's array);
    ``Tensor(array)`` shares the array instead, as torch.from_numpy."""
    import numpy as np

    if isinstance(data, Tensor):
        if data.device != "cpu":  # a device tensor's copy stays on its device
            out = data.detach().clone()
            out = out if dtype is None else out.to(dtype)
            return out.requires_grad_(requires_grad)
        data = data.data
    if isinstance(data, np.ndarray):
        data = data.copy()
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)


__all__ = ["Tensor", "tensor", "zeros", "ones", "randn", "rand", "full", "zeros_like", "ones_like", "arange", "cat",
           "stack", "functional", "init", "io", "nn", "optim", "no_grad", "enable_grad", "is_grad_enabled",
           "set_grad_enabled", "inference_mode",
           "abstract", "observe", "bind", "detect_anomaly", "gradcheck", "Primitive", "PRIMITIVES", "Spec", "Cost",
           "ShapeError", "get_primitive", "Backend", "register_backend", "get_backend", "set_backend", "use_backend",
           "active_backend", "available_backends", "generator", "manual_seed", "get_rng_state", "set_rng_state",
           "blas_description", "tune_openblas", "profile", "tune_malloc", "ExecutorContext",
           "use_deterministic_algorithms", "are_deterministic_algorithms_enabled"]
