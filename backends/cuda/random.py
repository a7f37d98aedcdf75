"""cuda kernels of the random primitives (engine/ops/random.py), drawing exactly the bits the host backends draw.

``rng_key`` takes the next key from the engine's generator on the host (the one stream every backend shares) and
writes it to the device. ``bernoulli_mask`` is numpy's ``default_rng(key).random(shape) < keep`` computed on the
device: numpy's PCG64 is a 128-bit LCG (state <- state * M + inc) with an XSL-RR output, and ``random()`` takes
the top 53 bits of each 64-bit output. The host seeds it (``np.random.PCG64(key).state``: SeedSequence hashing,
no draws); each thread then jumps the LCG ahead to the start of its chunk in O(log n) steps (Brown's algorithm, as
``pcg_advance``) and steps through its chunk. 128-bit arithmetic is built from 32-bit halves so that no
intermediate exceeds 64 bits: the same code is exact as compiled uint64 arithmetic and as the simulator's numpy
scalars (which warn on a wrapping multiply).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from engine.random import next_key

from .elementwise import fill
from .launch import grid
from .table import backend
from .views import reshaped

_M_HI, _M_LO = np.uint64(0x2360ED051FC65DA4), np.uint64(0x4385DF649FCCF645)  # PCG64's 128-bit multiplier
_MASK32, _U0, _U1, _U11, _U32, _U58, _U63, _U64 = (np.uint64(v) for v in (0xFFFFFFFF, 0, 1, 11, 32, 58, 63, 64))
_CHUNK = 64  # consecutive draws per thread: one jump-ahead, then plain steps


@cuda.jit(device=True)
def _add64(x, y):
    """(x + y) mod 2^64 and the carry, from 32-bit halves (no intermediate exceeds 64 bits)."""
    lo = (x & _MASK32) + (y & _MASK32)
    hi = (x >> _U32) + (y >> _U32) + (lo >> _U32)
    return ((hi & _MASK32) << _U32) | (lo & _MASK32), hi >> _U32


@cuda.jit(device=True)
def _mul64(a, b):
    """The 128-bit product a * b as (high, low) 64-bit halves, from 32-bit partial products."""
    a0, a1, b0, b1 = a & _MASK32, a >> _U32, b & _MASK32, b >> _U32
    p00, p01, p10 = a0 * b0, a0 * b1, a1 * b0
    mid = (p00 >> _U32) + (p01 & _MASK32) + (p10 & _MASK32)
    hi = a1 * b1 + (p01 >> _U32) + (p10 >> _U32) + (mid >> _U32)
    return hi, ((mid & _MASK32) << _U32) | (p00 & _MASK32)


@cuda.jit(device=True)
def _add128(ah, al, bh, bl):
    lo, carry = _add64(al, bl)
    hi, _ = _add64(ah, bh)
    return _add64(hi, carry)[0], lo


@cuda.jit(device=True)
def _mul128(ah, al, bh, bl):
    """(a * b) mod 2^128 of (high, low) pairs."""
    hi, lo = _mul64(al, bl)
    hi = _add64(hi, _mul64(ah, bl)[1])[0]
    return _add64(hi, _mul64(al, bh)[1])[0], lo


@cuda.jit(device=True)
def _advance(sh, sl, ih, il, delta):
    """The LCG state ``delta`` steps after (sh, sl), increment (ih, il)."""
    mh, ml, ph, pl = _U0, _U1, _U0, _U0  # accumulated multiplier and increment
    ch, cl, dh, dl = _M_HI, _M_LO, ih, il  # current multiplier and increment (for 2^k steps)
    while delta > _U0:
        if delta & _U1:
            mh, ml = _mul128(mh, ml, ch, cl)
            ph, pl = _mul128(ph, pl, ch, cl)
            ph, pl = _add128(ph, pl, dh, dl)
        th, tl = _add128(ch, cl, _U0, _U1)
        dh, dl = _mul128(th, tl, dh, dl)
        ch, cl = _mul128(ch, cl, ch, cl)
        delta >>= _U1
    sh, sl = _mul128(mh, ml, sh, sl)
    return _add128(sh, sl, ph, pl)


@cuda.jit(device=True)
def _output(sh, sl):
    """PCG's XSL-RR output of a state: (hi ^ lo) rotated right by the top 6 bits."""
    x, rot = sh ^ sl, sh >> _U58
    return (x >> rot) | (x << ((_U64 - rot) & _U63))


@cuda.jit
def bernoulli1(sh, sl, ih, il, keep, out):
    n = out.size
    for chunk in range(cuda.grid(1), (n + _CHUNK - 1) // _CHUNK, cuda.gridsize(1)):
        start = chunk * _CHUNK
        h, lo = _advance(sh, sl, ih, il, np.uint64(start))
        for i in range(start, min(start + _CHUNK, n)):
            h, lo = _mul128(h, lo, _M_HI, _M_LO)
            h, lo = _add128(h, lo, ih, il)
            out[i] = (_output(h, lo) >> _U11) * (1.0 / 9007199254740992.0) < keep


@backend.register("rng_key")
def rng_key(out: Any) -> None:
    fill(out, np.int64(next_key()))


def _split(v: int) -> tuple[np.uint64, np.uint64]:
    return np.uint64(v >> 64), np.uint64(v & 0xFFFFFFFFFFFFFFFF)


@backend.register("bernoulli_mask")
def bernoulli_mask(key: Any, out: Any, shape: tuple[int, ...], keep: float, dtype: str) -> None:
    if out.size == 0:
        return
    state = np.random.PCG64(int(backend.to_host(key))).state["state"]
    bernoulli1[grid(-(-out.size // _CHUNK))](*_split(state["state"]), *_split(state["inc"]), float(keep),
                                            reshaped(out, (out.size,)))
