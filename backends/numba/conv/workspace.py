"""Scratch memory and derived constants of the conv and GEMM kernels, owned by whoever runs them.

A :class:`Workspace` is a set of named scratch buffers (im2col matrix, padded input, packed panels, Winograd's V
and M, the GEMM's per-thread packing blocks), each grown to the largest request and reused by later calls so
that repeated calls do not page-fault fresh memory. A compiled graph's executor owns one
(:class:`NumbaContext`, made by ``Backend.prepare`` and sized there for every step the graph will run, so its
compile report shows what the model really uses); eager calls share :data:`EAGER`. Measuring candidate
algorithms runs in a throwaway workspace (:func:`throwaway`), so a compiled workspace holds only what the chosen
algorithms need.

The context also keeps the derived forms of the graph's constants (Winograd-transformed kernels, gemm-tables'
packed W^T panels), made once while the executor is prepared. Outside an executor (eager mode, where an optimizer
may update a weight in place between calls) :func:`derived` returns None and the kernels transform the weight per
call.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numba
import numpy as np

from engine.backend import ExecutorContext, Step, current_context

# the primitives whose numba kernels take scratch memory from the workspace (conv drivers, the GEMM)
WORKSPACE_PRIMITIVES = frozenset({"conv2d", "conv2d_input_grad", "conv2d_weight_grad", "fused_conv2d", "linear",
                                  "matmul", "blocked_conv2d", "blocked_prologue_conv2d",
                                  "blocked_conv2d_train", "blocked_conv2d_input_grad", "blocked_conv2d_weight_grad"})


class Workspace:
    """Named scratch buffers; contents are undefined between calls and views never outlive a kernel call."""

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, role: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A (shape, dtype) view of the buffer ``role``, grown when too small."""
        size = math.prod(shape) * np.dtype(dtype).itemsize  # math.prod: 0.2 us, np.prod 3 us (called per run)
        buf = self._bufs.get(role)
        if buf is None or buf.size < size:
            buf = self._bufs[role] = np.empty(size, np.uint8)
        return buf[:size].view(dtype).reshape(shape)

    def per_thread(self, role: str, size: int, dtype: Any = np.float32) -> np.ndarray:
        """One row of ``size`` elements per numba thread (indexed by ``numba.get_thread_id()``)."""
        return self.get(role, (numba.config.NUMBA_NUM_THREADS, size), dtype)

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._bufs.values())

    def __repr__(self) -> str:
        return f"Workspace({len(self._bufs)} buffers, {self.nbytes / (1 << 20):.2f} MiB)"


EAGER = Workspace()  # eager-mode calls (no executor): one per process
_THROWAWAY: list[tuple[Workspace, dict]] = []  # (scratch, derived forms) of the measurements under way


class NumbaContext(ExecutorContext):
    """The numba backend's state for one executor: its :class:`Workspace` and the derived forms of its constants."""

    def __init__(self, constants: Sequence[Any] = (), *, autotune: bool = False):
        super().__init__(constants, autotune=autotune)
        self.workspace = Workspace()
        self._const_ids = {id(a) for a in self.constants}
        self._derived: dict[tuple[int, str], np.ndarray] = {}

    def derived(self, w: np.ndarray, form: str, make: Callable[[np.ndarray], np.ndarray],
                cache: dict | None = None) -> np.ndarray | None:
        """``make(w)``, made once per (constant, form) and kept in ``cache`` (default: this context's); None when
        w is not one of this context's read-only constants."""
        if id(w) not in self._const_ids or w.flags.writeable:
            return None
        cache = self._derived if cache is None else cache
        key = (id(w), form)
        d = cache.get(key)
        if d is None:
            d = cache[key] = make(w)
        return d

    @property
    def derived_forms(self) -> list[str]:
        return [form for _, form in self._derived]

    def reserve(self, steps: Sequence[Step]) -> None:
        """Run each distinct workspace-using step once, on zeros for its run-time inputs (its constants as they
        are), inside this context: the workspace grows to what these calls need and the constants' derived forms
        are made, so the executor's runs allocate nothing more."""
        seen = set()
        with self:
            for step in steps:
                if step.name not in WORKSPACE_PRIMITIVES:
                    continue
                key = (step.name, tuple(id(a) if isinstance(a, np.ndarray) else (a.shape, a.dtype.str)
                                        for a in step.inputs), repr(sorted(step.attrs.items())))
                if key in seen:
                    continue
                seen.add(key)
                args = [a if isinstance(a, np.ndarray) else np.zeros(a.shape, a.dtype) for a in step.inputs]
                outs = [np.empty(s.shape, s.dtype) for s in step.outputs]
                step.kernel(*args, out=outs[0] if len(outs) == 1 else tuple(outs), **step.attrs)

    @property
    def workspace_bytes(self) -> int:
        return self.workspace.nbytes


def current_workspace() -> Workspace:
    """Where a kernel takes its scratch memory: a measurement's throwaway workspace, the running executor's, or
    :data:`EAGER`."""
    if _THROWAWAY:
        return _THROWAWAY[-1][0]
    ctx = current_context()
    return ctx.workspace if isinstance(ctx, NumbaContext) else EAGER


def scratch(role: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """:meth:`Workspace.get` on the current workspace."""
    return current_workspace().get(role, shape, dtype)


def derived(w: np.ndarray, form: str, make: Callable[[np.ndarray], np.ndarray]) -> np.ndarray | None:
    """The running executor's cached ``make(w)`` for a constant weight (see :meth:`NumbaContext.derived`), else
    None (the caller transforms w into scratch memory). While candidates are measured, their derived forms are
    kept only for the measurement (timed as the compiled run will run them, and dropped with it)."""
    ctx = current_context()
    if not isinstance(ctx, NumbaContext):
        return None
    return ctx.derived(w, form, make, _THROWAWAY[-1][1] if _THROWAWAY else None)


def autotuning() -> bool:
    """Whether the running executor was compiled with ``autotune=True``."""
    ctx = current_context()
    return ctx is not None and ctx.autotune


@contextlib.contextmanager
def throwaway() -> Iterator[Workspace]:
    """Scratch memory (and derived constants) for measuring candidates, dropped afterwards."""
    _THROWAWAY.append((Workspace(), {}))
    try:
        yield _THROWAWAY[-1][0]
    finally:
        _THROWAWAY.pop()
