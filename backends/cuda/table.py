"""The cuda backend's kernel table and memory: device arrays are numba.cuda ``DeviceNDArray``s; each kernel module
of this package registers into ``backend``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import config, cuda

from engine.backend import Backend


def _on_device(array: Any) -> bool:
    # DeviceNDArray and the simulator's FakeCUDAArray both have copy_to_host; numpy arrays do not
    return hasattr(array, "copy_to_host")


class CudaBackend(Backend):
    """Kernels launch on the current CUDA device (or numba's simulator under ``NUMBA_ENABLE_CUDASIM=1``); memory
    comes from numba.cuda, so launches are asynchronous and :meth:`synchronize` waits for them."""

    device = "cuda"
    alignment = 256

    def empty(self, shape: Sequence[int], dtype: Any) -> Any:
        return cuda.device_array(tuple(shape), np.dtype(dtype))

    def from_host(self, array: np.ndarray) -> Any:
        if _on_device(array):
            return array
        array = np.asarray(array)
        # not np.ascontiguousarray: it turns a 0-d array (a scalar input, a random key) into shape (1,)
        return cuda.to_device(array if array.flags.c_contiguous else array.copy(order="C"))

    def to_host(self, array: Any) -> np.ndarray:
        if isinstance(array, np.ndarray):
            return array
        return array.copy_to_host()

    def is_native(self, array: Any) -> bool:
        return _on_device(array)

    def arena(self, nbytes: int) -> Any:
        # device allocations are 256-byte aligned already
        return cuda.device_array(max(int(nbytes), 1), np.uint8)

    def view(self, arena: Any, offset: int, shape: Sequence[int], dtype: Any) -> Any:
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return arena[offset:offset + n].view(dtype).reshape(tuple(shape))

    def copy_(self, dst: Any, src: Any) -> None:
        dst.copy_to_device(src if _on_device(src) else np.asarray(src, order="C"))

    def synchronize(self) -> None:
        cuda.synchronize()


# registered by the package's __init__ only where kernels can launch
# jit: kernels compile on first launch, so compile() runs a graph once to do it there; the simulator compiles
# nothing, and that run would only double the cost of every compiled graph
backend = CudaBackend("cuda", jit=not config.ENABLE_CUDASIM)
