"""The optimizer update on numba. SGD (momentum, dampening, Nesterov, weight decay, maximize) runs as one fused
pass per parameter, the same float operations in the same order as :meth:`engine.optim.SGD.update_arrays` (each
scalar in the parameter's dtype, no contraction into FMAs), so it rounds exactly as eager ``optimizer.step()``;
numpy's version makes up to five passes and two temporaries. Every other optimizer runs the shared numpy update
(:func:`engine.optim.update.update_kernel`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit, prange

from engine.optim import SGD
from engine.optim.update import update_kernel

from ._layout import CHUNK, by_size, serial_twin
from .table import backend


@njit(cache=True)
def _sgd_chunk(p, g, buf, lr, momentum, c, wd, nesterov, maximize, has_buf, first):
    for i in range(p.shape[0]):
        d = -g[i] if maximize else g[i]
        if wd != 0:
            d = d + wd * p[i]
        if has_buf:
            b = d if first else buf[i] * momentum + c * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] = p[i] - lr * d


@njit(parallel=True, cache=True)
def sgd_update(p, g, buf, lr, momentum, c, wd, nesterov, maximize, has_buf, first):
    """p -= lr * d with d the SGD direction; buf (``has_buf``) the momentum buffer, ``c`` = 1 - dampening. Chunk
    views indexed from 0, as in activation.py, so the loop vectorizes."""
    n = p.shape[0]
    for blk in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = blk * CHUNK, min(n, blk * CHUNK + CHUNK)
        bc = buf[i0:i1] if has_buf else buf[0:0]
        _sgd_chunk(p[i0:i1], g[i0:i1], bc, lr, momentum, c, wd, nesterov, maximize, has_buf, first)


sgd_update_serial = serial_twin(sgd_update)


def _sgd_call(p: np.ndarray, g: np.ndarray, *rest: np.ndarray, out: tuple[np.ndarray, ...], rule: type,
              hyper: tuple, keys: tuple[str, ...]) -> Callable[[], None] | None:
    """The fused SGD update as a call on these arrays, or None where it does not apply (another optimizer, mixed
    dtypes, strided arrays: the shared kernel handles those)."""
    if not (isinstance(rule, type) and issubclass(rule, SGD) and rule.update_arrays is SGD.update_arrays):
        return None
    h = dict(hyper)
    p_out, *state_out, step_out = out
    arrays = (p, g, p_out, *rest[:len(keys)], *state_out)
    if p.dtype.kind != "f" or any(a.dtype != p.dtype or not a.flags.c_contiguous for a in arrays):
        return None
    has_buf = h["momentum"] != 0
    if has_buf != (keys == ("momentum_buffer",)):
        return None
    # outputs that are not the inputs' own arrays (the executor writes them back later): update copies
    copies = [(src, dst) for src, dst in zip((p, *rest[:len(keys)]), (p_out, *state_out)) if src is not dst]
    t = p.dtype.type
    flat = p_out.reshape(-1), g.reshape(-1), (state_out[0] if has_buf else p_out).reshape(-1)
    fn = by_size(sgd_update, sgd_update_serial, p.size)
    momentum, c, wd = t(h["momentum"]), t(1 - h["dampening"]), t(h["weight_decay"])
    nesterov, maximize = bool(h["nesterov"]), bool(h["maximize"])
    lr_in, step_in = rest[-2], rest[-1]

    def call() -> None:  # the learning rate and the step count are read when the update runs
        for src, dst in copies:
            np.copyto(dst, src)
        first = bool(step_in == 0)
        step_out[...] = step_in + 1
        fn(*flat, t(float(lr_in)), momentum, c, wd, nesterov, maximize, has_buf, first)

    return call


@backend.register("optimizer_update")
def optimizer_update(p: np.ndarray, g: np.ndarray, *rest: np.ndarray, out: tuple[np.ndarray, ...], **attrs: Any
                     ) -> None:
    call = _sgd_call(p, g, *rest, out=out, **attrs)
    if call is None:
        update_kernel(p, g, *rest, out=out, **attrs)
    else:
        call()


optimizer_update.specialize = _sgd_call
