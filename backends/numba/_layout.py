"""Array plumbing shared by the numba kernels: collapse N-d (possibly broadcast or strided) operands into 4-D
views over one index space, so a single compiled ``prange`` kernel per op serves every rank and layout.

This module moves no data: it only builds views with :func:`numpy.lib.stride_tricks.as_strided`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..strides import collapse as _collapse

RANK = 4  # the rank every elementwise/data-movement kernel is compiled for
CHUNK = 16384  # elements per parallel work item along the innermost axis


def views4(shape: tuple[int, ...], arrays: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """4-D views of ``arrays`` (each broadcastable to ``shape``) over the same index space.

    Returns a list of operand groups: one group in the common case; when more than four non-mergeable axes
    remain (rare: e.g. a 6-D transpose), one group per index of the extra leading axes.
    """
    shape = tuple(shape)
    if all(a.shape == shape and a.flags.c_contiguous for a in arrays):  # the common case: a reshape is ~10x
        return [[a.reshape(1, 1, 1, math.prod(shape)) for a in arrays]]  # cheaper than building as_strided views
    full = [a if a.shape == shape else np.broadcast_to(a, shape) for a in arrays]
    dims, strs = _collapse(shape, [a.strides for a in full])
    pad = max(0, RANK - len(dims))
    dims_p = (1,) * pad + tuple(dims)
    views = [as_strided(a, dims_p, (0,) * pad + tuple(s), writeable=a.flags.writeable) for a, s in zip(full, strs)]
    extra = len(dims_p) - RANK
    if extra == 0:
        return [views]
    return [[v[idx] for v in views] for idx in itertools.product(*(range(d) for d in dims_p[:extra]))]


def for_each_group(shape: tuple[int, ...], arrays: Sequence[np.ndarray], fn: Callable[..., None]) -> None:
    """Call ``fn(*views4)`` once per operand group (see :func:`views4`); skips empty index spaces."""
    if 0 in tuple(shape):
        return
    for group in views4(shape, arrays):
        fn(*group)
