"""A faster barrier for numba's CUDA simulator (test support only; the kernels and their results are unchanged).

The simulator runs each thread of a block as a Python thread, and its ``BlockManager`` finds out that every thread
reached ``syncthreads()`` by busy-polling them from the main thread, which then competes for the GIL with the very
threads it waits for: a barrier of 8 threads costs ~10 ms, so a reduction tree over a few hundred rows takes
seconds. :func:`install` swaps in a condition-variable barrier: the last thread to arrive (or to finish) releases
the others, and the main thread sleeps until the block is done. Threads that finished no longer count as parties,
as in the simulator's own manager.
"""

from __future__ import annotations

import threading

import numpy as np
from numba.cuda.simulator import kernel as _sim


class _Barrier:
    def __init__(self, parties: int):
        self.cond = threading.Condition()
        self.live = parties
        self.waiting = 0
        self.generation = 0

    def wait(self, thread: _sim.BlockThread) -> None:
        with self.cond:
            if thread.abort:
                raise RuntimeError("abort flag set on syncthreads call")
            gen = self.generation
            self.waiting += 1
            if self.waiting == self.live:
                self._release()
            else:
                while gen == self.generation and not thread.abort:
                    self.cond.wait()
            if thread.abort:
                raise RuntimeError("abort flag set on syncthreads clear")

    def _release(self) -> None:
        self.waiting = 0
        self.generation += 1
        self.cond.notify_all()

    def leave(self) -> None:
        with self.cond:
            self.live -= 1
            if self.live and self.waiting == self.live:
                self._release()
            self.cond.notify_all()


def _syncthreads(self: _sim.BlockThread) -> None:
    self._manager.barrier.wait(self)


def _run(self: _sim.BlockManager, grid_point: tuple, *args: object) -> None:
    threads = []
    barrier = self.barrier = _Barrier(int(np.prod(self._block_dim)))

    def target() -> None:
        try:
            self._f(*args)
        finally:
            barrier.leave()

    for block_point in np.ndindex(*self._block_dim):
        threads.append(_sim.BlockThread(target, self, grid_point, block_point, self._debug))
    for t in threads:
        t.start()
    with barrier.cond:
        while barrier.live:
            if any(t.exception for t in threads):
                for t in threads:
                    t.abort = True
                barrier.cond.notify_all()
                break
            barrier.cond.wait()
    for t in threads:
        t.join()
    for t in threads:
        if t.exception:
            raise t.exception[0].with_traceback(t.exception[1])


def install() -> None:
    """Use the condition-variable barrier for every kernel launched in this process from now on."""
    _sim.BlockThread.syncthreads = _syncthreads
    _sim.BlockManager.run = _run
