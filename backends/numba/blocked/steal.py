"""Work stealing inside one parallel region. A region's threads each get a contiguous run of items
(``starts[th]:starts[th + 1]``, cut for equal work); a thread runs its own items from the first, then another
thread's from its last, each item once: a flag per item, on its own cache line, marked by an atomic exchange. A
thread that starts late (a worker woken from sleep, or one the OS runs late on a busy machine) finds part of its
run done by the others, and the region ends about when the work does, not its share later. Whichever thread runs an
item computes the same values, so results do not depend on the split. A region of two phases (the second reading
what the first wrote) counts the first phase's finished items (:func:`add`) and waits for all of them
(:func:`wait_for`) between the phases."""

from __future__ import annotations

import functools
import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
FLAG_STRIDE = 8  # int64s per flag: one per cache line, so marking one does not bounce the line of the next


@intrinsic
def taken(typingctx, addr):
    """Mark the int64 flag at ``addr`` (an atomic exchange with 1); whether some thread had marked it before."""
    sig = types.boolean(types.intp)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        old = builder.atomic_rmw("xchg", builder.inttoptr(args[0], ir.PointerType(i64)), ir.Constant(i64, 1),
                                 "acq_rel")
        return builder.icmp_unsigned("!=", old, ir.Constant(i64, 0))

    return sig, codegen


@functools.lru_cache(maxsize=256)  # the stem's call, reading the user's image, is built on every run
def even_runs(items: int, threads: int) -> np.ndarray:
    """``starts`` of ``threads`` contiguous runs of ``items`` items, their counts one apart at most (thread th
    starts at starts[th]; the threads then steal from each other's runs, so the split need not weigh the items).
    Shared: callers do not write it."""
    return np.array([items * t // threads for t in range(threads + 1)], np.int64)


def flags_for(items: int) -> np.ndarray:
    """A flag array for ``items`` items (cleared by :func:`clear` at the start of each region's kernel)."""
    return np.zeros(max(1, items) * FLAG_STRIDE, np.int64)


@njit(cache=True, inline="always")
def clear(flags, items):
    """Unmark the first ``items`` flags; a plain loop before the region (an array expression would be a region)."""
    for i in range(0, items * FLAG_STRIDE, FLAG_STRIDE):
        flags[i] = 0


@njit(cache=True, inline="always")
def claim(th, u, it, starts, flags_addr):
    """The next item of thread ``th``: ``(u, it)`` with ``it`` the item, from run ``(th + u) % threads`` (u = 0 its
    own, walked forward from ``it``; u > 0 another's, walked backward from ``it``), marked taken; ``u`` = the
    thread count when every item is taken. The caller runs ``it`` and claims again from ``it + 1`` (u = 0) or
    ``it - 1``."""
    nth = starts.shape[0] - 1
    while u < nth:
        v = (th + u) % nth
        if starts[v] <= it < starts[v + 1] and not taken(flags_addr + it * (FLAG_STRIDE * 8)):
            return u, it
        u += 1
        it = starts[(th + u) % nth + 1] - 1
    return u, it


@intrinsic
def add(typingctx, addr, value):
    """Add ``value`` to the int64 at ``addr`` (atomic, release: what the thread wrote before is visible to a thread
    that sees the sum through :func:`load`); the value before."""
    sig = types.int64(types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.PointerType(ir.IntType(64)))
        return builder.atomic_rmw("add", ptr, args[1], "acq_rel")

    return sig, codegen


@intrinsic
def load(typingctx, addr):
    """The int64 at ``addr``, read atomically with acquire order (see :func:`add`)."""
    sig = types.int64(types.intp)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.PointerType(ir.IntType(64)))
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def pause(typingctx):
    """A spin-wait hint (x86 ``pause``: the waiting core yields issue slots and power; nothing elsewhere)."""
    sig = types.none()

    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def wait_for(addr, value):
    """Spin until the int64 at ``addr`` reaches ``value``. Only for counts of items that are all taken already
    (each :func:`claim`-ed by a thread that runs it to the end before it waits), so the wait cannot outlast the
    slowest running item, whatever number of threads the region got."""
    while load(addr) < value:
        pause()
