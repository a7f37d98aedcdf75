"""Views of device arrays: any (shape, strides) over an existing device buffer, and numpy's broadcasting of N-d
operands onto one 4-D index space, so one compiled kernel per arity serves every rank, layout and broadcast.

Nothing here moves data. A device array's strides may be anything non-negative (a broadcast axis has stride 0),
and a kernel indexes ``a[i, j, k, l]`` through them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from numba import cuda
from numpy.lib.stride_tricks import as_strided as _np_as_strided

from ..strides import collapse
from .launch import SIM

RANK = 4  # the rank the elementwise and copy kernels are compiled for

if SIM:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    def as_strided(a: Any, shape: Sequence[int], strides: Sequence[int]) -> Any:
        """A view of ``a``'s buffer (from its first element) with ``shape`` and byte ``strides``."""
        return FakeCUDAArray(_np_as_strided(a._ary, tuple(shape), tuple(strides)))
else:
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    def as_strided(a: Any, shape: Sequence[int], strides: Sequence[int]) -> Any:
        """A view of ``a``'s buffer (from its first element) with ``shape`` and byte ``strides``."""
        return DeviceNDArray(tuple(shape), tuple(strides), a.dtype, gpu_data=a.gpu_data)


@cuda.jit(device=True)
def unravel4(t, shape):
    """The 4-D index of flat (C-order) position ``t`` in an array of ``shape``."""
    n1, n2, n3 = shape[1], shape[2], shape[3]
    return t // (n1 * n2 * n3), (t // (n2 * n3)) % n1, (t // n3) % n2, t % n3


def broadcast_strides(a: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``a``'s byte strides once broadcast to ``shape`` (numpy's rule: align trailing axes, size 1 -> stride 0)."""
    lead = len(shape) - a.ndim
    if lead < 0 or any(d not in (1, s) for d, s in zip(a.shape, shape[lead:])):
        raise ValueError(f"cuda: operand of shape {tuple(a.shape)} does not broadcast to {tuple(shape)}")
    return (0,) * lead + tuple(0 if d == 1 else st for d, st in zip(a.shape, a.strides))


def is_c_contiguous(a: Any) -> bool:
    expect = a.dtype.itemsize
    for d, st in zip(reversed(a.shape), reversed(a.strides)):
        if d != 1 and st != expect:
            return False
        expect *= d
    return True


def views4(shape: tuple[int, ...], arrays: Sequence[Any]) -> list[list[Any]]:
    """4-D views of ``arrays`` (each broadcastable to ``shape``) over one index space: one group of views, or, when
    more than four axes stay apart after merging (e.g. a 6-D transpose), one group per index of the extra axes."""
    shape = tuple(int(d) for d in shape)
    if all(tuple(a.shape) == shape and is_c_contiguous(a) for a in arrays):
        n = math.prod(shape)
        return [[as_strided(a, (1, 1, 1, n), (0, 0, 0, a.dtype.itemsize)) for a in arrays]]
    dims, strs = collapse(shape, [broadcast_strides(a, shape) for a in arrays])
    pad = max(0, RANK - len(dims))
    dims_p = (1,) * pad + tuple(dims)
    extra = len(dims_p) - RANK
    groups = []
    for idx in itertools.product(*(range(d) for d in dims_p[:extra])):
        group = []
        for a, s in zip(arrays, strs):
            st = (0,) * pad + tuple(s)
            base = as_strided(a, dims_p, st)
            group.append(base[idx] if extra else base)
        groups.append(group)
    return groups


def c_strides(shape: Sequence[int], itemsize: int) -> tuple[int, ...]:
    out, acc = [], itemsize
    for d in reversed(tuple(shape)):
        out.append(acc)
        acc *= max(int(d), 1)
    return tuple(reversed(out))


def transposed(a: Any, perm: Sequence[int]) -> Any:
    """``a.transpose(perm)`` as a view."""
    return as_strided(a, [a.shape[p] for p in perm], [a.strides[p] for p in perm])


def reshaped(a: Any, shape: Sequence[int]) -> Any:
    """A C-contiguous ``a`` viewed with another shape of the same size (outputs of this backend's allocations and
    arena views are C-contiguous; a strided one is refused by name)."""
    if not is_c_contiguous(a):
        raise ValueError(f"cuda: kernel needs a C-contiguous array here, got shape {tuple(a.shape)} strides "
                         f"{tuple(a.strides)}")
    return as_strided(a, tuple(shape), c_strides(shape, a.dtype.itemsize))
