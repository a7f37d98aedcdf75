"""Array plumbing shared by the numba kernels: collapse N-d (possibly broadcast or strided) operands into 4-D
views over one index space, so a single compiled ``prange`` kernel per op serves every rank and layout.

This module moves no data: it only builds views with :func:`numpy.lib.stride_tricks.as_strided`.
"""

from __future__ import annotations

import functools
import itertools
import math
import types
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np
from numba import njit, typeof
from numba.core.dispatcher import Dispatcher
from numpy.lib.stride_tricks import as_strided

from ..strides import collapse as _collapse

RANK = 4  # the rank every elementwise/data-movement kernel is compiled for
CHUNK = 16384  # elements per parallel work item along the innermost axis
# Below this many elements a kernel with a serial twin runs on the calling thread: waking numba's workers costs
# ~2 us on idle cores, and up to milliseconds when the cores are busy with other work (a shared machine, a data
# loader), while a serial pass over 64k floats takes ~8 us.
SERIAL_BELOW = 1 << 16


def serial_twin(kernel: Any) -> Any:
    """``kernel`` (an ``@njit(parallel=True)`` function) compiled without threads, its ``prange`` a plain range:
    the same loop body, so both round identically. Its own name keeps its on-disk cache apart."""
    py = kernel.py_func
    twin = types.FunctionType(py.__code__, py.__globals__, f"{py.__name__}_serial", py.__defaults__, py.__closure__)
    twin.__qualname__ = f"{py.__qualname__}_serial"
    twin.__doc__ = py.__doc__
    options = {k: v for k, v in kernel.targetoptions.items() if k not in ("parallel", "nopython")}
    return njit(cache=True, **options)(twin)


def by_size(kernel: Any, twin: Any, n: int) -> Any:
    """The parallel kernel, or its serial twin for fewer than :data:`SERIAL_BELOW` elements of work."""
    return twin if n < SERIAL_BELOW else kernel


def same_storage(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` and ``b`` are the same C-contiguous elements (an executor's in-place plan), not just overlapping."""
    return a.shape == b.shape and a.flags.c_contiguous and b.flags.c_contiguous and \
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


def nothing() -> None:
    pass


def grouped_call(shape: tuple[int, ...], arrays: Sequence[np.ndarray], fn: Callable[..., None], lead: tuple = (),
                 tail: tuple = ()) -> Callable[[], None]:
    """A zero-argument call of ``fn(*lead, *views4, *tail)`` per operand group (see :func:`views4`): what a
    kernel's ``specialize`` returns. The views alias ``arrays`` (never copies), so the call sees their contents
    at the time it runs."""
    if 0 in tuple(shape):
        return nothing
    return in_order([functools.partial(fn, *lead, *group, *tail) for group in views4(shape, arrays)])


_FOR_REUSE: ContextVar[bool] = ContextVar("convgraph_numba_for_reuse", default=False)


def for_reuse(build: Callable[..., Any]) -> Callable[..., Any]:
    """A kernel's ``specialize`` (or ``specialize_chain``): the calls it builds run again and again on the same
    arrays, so :func:`bind` resolves their compiled overloads while it builds them."""
    @functools.wraps(build)
    def building(*args: Any, **kwargs: Any) -> Any:
        token = _FOR_REUSE.set(True)
        try:
            return build(*args, **kwargs)
        finally:
            _FOR_REUSE.reset(token)

    return building


def bind(kernel: Any, *args: Any) -> Callable[[], None]:
    """``functools.partial(kernel, *args)``; inside a :func:`for_reuse` build, where ``kernel`` is a numba
    dispatcher, its overload for these arguments' types (compiled or loaded from the cache now), called directly.
    The dispatcher types every argument again on each call: ~1.5 us for a blocked kernel's 40-55 arguments, 33 us
    of each MobileNetV2 call over its 22 kernels. Typing them here costs ~6 us per array argument, once: paid per
    call, it would be 40 us for a 4-argument call built and run once (an eager kernel), so only reused calls pay
    it."""
    if _FOR_REUSE.get() and isinstance(kernel, Dispatcher):
        return functools.partial(kernel.compile(tuple(typeof(a) for a in args)), *args)
    return functools.partial(kernel, *args)


def in_order(calls: Sequence[Callable[[], None]]) -> Callable[[], None]:
    """One zero-argument call that runs ``calls`` one after the other (the call itself where there is one)."""
    if len(calls) == 1:
        return calls[0]

    def run_all() -> None:
        for c in calls:
            c()

    return run_all


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
