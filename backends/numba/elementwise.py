"""numba kernels: elementwise math, activations, comparisons, where, astype, dropout.

One compiled kernel per arity serves every op of that arity: the op is a small int (loop-invariant, so the
per-row ``if`` chain is hoisted out of the inner loop) and the operands are 4-D views over one index space
(:mod:`._layout`), which covers numpy broadcasting, strided inputs and any rank. Work items are
(row, chunk-of-row) pairs, so a flat contiguous array is split across threads as well.

Unary and binary ops run on the calling thread below :data:`._layout.SERIAL_BELOW` elements (serial twins), and
in place (``out`` the storage of an operand, as the memory planner makes it) through loops that write the
operand they read: with ``out`` aliasing an input, LLVM's runtime alias check fails and the general loop runs
unvectorized, 2-3x slower. Their kernels offer ``specialize`` (:func:`engine.backend.specialize`): the operand
views and the loop are chosen once for an executor's fixed arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numba import njit, prange

from ._layout import CHUNK, by_size, for_each_group, grouped_call, same_storage, serial_twin
from .table import backend

# --- op codes (the vocabulary of the row functions below) ------------------------------------------------
# unary
NEG, EXP, LOG, SQRT, ABS, RELU, TANH, LEAKY_RELU, ELU, SIGMOID, SILU, COPY = range(12)
UNARY = {"neg": NEG, "exp": EXP, "log": LOG, "sqrt": SQRT, "abs": ABS, "relu": RELU, "tanh": TANH,
         "sigmoid": SIGMOID, "silu": SILU}
# binary
ADD, SUB, MUL, DIV, POW, MAXIMUM, MINIMUM = range(7)
BINARY = {"add": ADD, "sub": SUB, "mul": MUL, "div": DIV, "pow": POW, "maximum": MAXIMUM, "minimum": MINIMUM}
# comparisons (bool output)
GREATER, EQUAL, GREATER_EQUAL, NOT_EQUAL = range(4)
COMPARE = {"greater": GREATER, "equal": EQUAL, "greater_equal": GREATER_EQUAL, "not_equal": NOT_EQUAL}


@njit(cache=True, error_model="numpy")
def _sigmoid(v):
    e = math.exp(-abs(v))  # split by sign so exp never overflows
    return 1.0 / (1.0 + e) if v >= 0 else e / (1.0 + e)


@njit(cache=True, error_model="numpy")
def unary_scalar(op, v, alpha):
    """The scalar definition of every unary op (also used by fused epilogues)."""
    if op == RELU:
        return v if not v <= 0 else 0.0 * v
    if op == NEG:
        return -v
    if op == EXP:
        return math.exp(v)
    if op == LOG:
        return math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan)
    if op == SQRT:
        return math.sqrt(v) if v >= 0 else math.nan
    if op == ABS:
        return abs(v)
    if op == TANH:
        return math.tanh(v)
    if op == LEAKY_RELU:
        return v if v > 0 else v * alpha
    if op == ELU:
        return v if v > 0 else alpha * math.expm1(min(v, 0.0))
    if op == SIGMOID:
        return _sigmoid(v)
    if op == SILU:
        return v * _sigmoid(v)
    return v  # COPY


@njit(cache=True, error_model="numpy")
def _unary_row(op, x, o, alpha):
    n = o.shape[0]
    if op == COPY:
        for i in range(n):
            o[i] = x[i]
    elif op == RELU:
        for i in range(n):
            v = x[i]
            o[i] = v if not v <= 0 else 0
    elif op == NEG:
        for i in range(n):
            o[i] = -x[i]
    elif op == EXP:
        for i in range(n):
            o[i] = np.exp(x[i])
    else:
        for i in range(n):
            o[i] = unary_scalar(op, x[i], alpha)


@njit(parallel=True, cache=True, error_model="numpy")
def unary4(op, x, out, alpha):
    """out[i,j,k,l] = f_op(x[i,j,k,l]); x and out are 4-D views (any strides)."""
    ni, nj, nk, nl = out.shape
    nch = (nl + CHUNK - 1) // CHUNK
    for t in prange(ni * nj * nk * nch):
        r, q = t // nch, t % nch
        i, j, k = r // (nj * nk), (r // nk) % nj, r % nk
        l0 = q * CHUNK
        l1 = min(nl, l0 + CHUNK)
        _unary_row(op, x[i, j, k, l0:l1], out[i, j, k, l0:l1], alpha)


@njit(cache=True, error_model="numpy")
def _binary_row(op, a, b, o):
    n = o.shape[0]
    if op == ADD:
        for i in range(n):
            o[i] = a[i] + b[i]
    elif op == SUB:
        for i in range(n):
            o[i] = a[i] - b[i]
    elif op == MUL:
        for i in range(n):
            o[i] = a[i] * b[i]
    elif op == DIV:
        for i in range(n):
            o[i] = a[i] / b[i]
    elif op == POW:
        for i in range(n):
            o[i] = a[i] ** b[i]
    elif op == MAXIMUM:
        for i in range(n):
            o[i] = np.maximum(a[i], b[i])
    else:
        for i in range(n):
            o[i] = np.minimum(a[i], b[i])


@njit(parallel=True, cache=True, error_model="numpy")
def binary4(op, a, b, out):
    ni, nj, nk, nl = out.shape
    nch = (nl + CHUNK - 1) // CHUNK
    for t in prange(ni * nj * nk * nch):
        r, q = t // nch, t % nch
        i, j, k = r // (nj * nk), (r // nk) % nj, r % nk
        l0 = q * CHUNK
        l1 = min(nl, l0 + CHUNK)
        _binary_row(op, a[i, j, k, l0:l1], b[i, j, k, l0:l1], out[i, j, k, l0:l1])


@njit(parallel=True, cache=True, error_model="numpy")
def compare4(op, a, b, out):
    ni, nj, nk, nl = out.shape
    for r in prange(ni * nj * nk):
        i, j, k = r // (nj * nk), (r // nk) % nj, r % nk
        if op == GREATER:
            for m in range(nl):
                out[i, j, k, m] = a[i, j, k, m] > b[i, j, k, m]
        elif op == GREATER_EQUAL:
            for m in range(nl):
                out[i, j, k, m] = a[i, j, k, m] >= b[i, j, k, m]
        elif op == NOT_EQUAL:
            for m in range(nl):
                out[i, j, k, m] = a[i, j, k, m] != b[i, j, k, m]
        else:
            for m in range(nl):
                out[i, j, k, m] = a[i, j, k, m] == b[i, j, k, m]


@njit(parallel=True, cache=True, error_model="numpy")
def where4(c, a, b, out):
    ni, nj, nk, nl = out.shape
    for r in prange(ni * nj * nk):
        i, j, k = r // (nj * nk), (r // nk) % nj, r % nk
        for m in range(nl):
            out[i, j, k, m] = a[i, j, k, m] if c[i, j, k, m] else b[i, j, k, m]


@njit(parallel=True, cache=True, error_model="numpy")
def scaled_mul4(x, mask, out, scale):
    """out = x * mask * scale (dropout)."""
    ni, nj, nk, nl = out.shape
    for r in prange(ni * nj * nk):
        i, j, k = r // (nj * nk), (r // nk) % nj, r % nk
        for m in range(nl):
            out[i, j, k, m] = x[i, j, k, m] * mask[i, j, k, m] * scale


@njit(parallel=True, cache=True)
def cast4(x, out):
    ni, nj, nk, nl = out.shape
    for r in prange(ni * nj * nk):
        i, j, k = r // (nj * nk), (r // nk) % nj, r % nk
        for m in range(nl):
            out[i, j, k, m] = x[i, j, k, m]


@njit(parallel=True, cache=True)
def nonzero4(x, out):
    ni, nj, nk, nl = out.shape
    for r in prange(ni * nj * nk):
        i, j, k = r // (nj * nk), (r // nk) % nj, r % nk
        for m in range(nl):
            out[i, j, k, m] = x[i, j, k, m] != 0


@njit(cache=True, error_model="numpy")
def _unary_row_into(op, x, alpha):
    """x = f_op(x) over one row: one array, so no runtime alias check to fail (passing x as both the input and
    the output of :func:`_unary_row` runs its unvectorized fallback)."""
    n = x.shape[0]
    if op == RELU:
        for i in range(n):
            v = x[i]
            x[i] = v if not v <= 0 else 0
    elif op == NEG:
        for i in range(n):
            x[i] = -x[i]
    elif op == EXP:
        for i in range(n):
            x[i] = np.exp(x[i])
    elif op != COPY:
        for i in range(n):
            x[i] = unary_scalar(op, x[i], alpha)


@njit(parallel=True, cache=True, error_model="numpy")
def unary_inplace4(op, x, alpha):
    """x = f_op(x) in place (x a 4-D view)."""
    ni, nj, nk, nl = x.shape
    nch = (nl + CHUNK - 1) // CHUNK
    for t in prange(ni * nj * nk * nch):
        r, q = t // nch, t % nch
        i, j, k = r // (nj * nk), (r // nk) % nj, r % nk
        _unary_row_into(op, x[i, j, k, q * CHUNK:min(nl, q * CHUNK + CHUNK)], alpha)


@njit(cache=True, error_model="numpy")
def _binary_row_into_a(op, a, b):
    """a = a op b: the in-place rows of the common ops, each one loop over one written array."""
    n = a.shape[0]
    if op == ADD:
        for i in range(n):
            a[i] += b[i]
    elif op == MUL:
        for i in range(n):
            a[i] *= b[i]
    elif op == SUB:
        for i in range(n):
            a[i] -= b[i]
    else:
        _binary_row(op, a, b, a)


@njit(cache=True, error_model="numpy")
def _binary_row_into_b(op, a, b):
    """b = a op b."""
    n = b.shape[0]
    if op == ADD:
        for i in range(n):
            b[i] += a[i]
    elif op == MUL:
        for i in range(n):
            b[i] *= a[i]
    elif op == SUB:
        for i in range(n):
            b[i] = a[i] - b[i]
    else:
        _binary_row(op, a, b, b)


@njit(parallel=True, cache=True, error_model="numpy")
def binary_into_a4(op, a, b):
    ni, nj, nk, nl = a.shape
    nch = (nl + CHUNK - 1) // CHUNK
    for t in prange(ni * nj * nk * nch):
        r, q = t // nch, t % nch
        i, j, k = r // (nj * nk), (r // nk) % nj, r % nk
        l0 = q * CHUNK
        l1 = min(nl, l0 + CHUNK)
        _binary_row_into_a(op, a[i, j, k, l0:l1], b[i, j, k, l0:l1])


@njit(parallel=True, cache=True, error_model="numpy")
def binary_into_b4(op, a, b):
    ni, nj, nk, nl = b.shape
    nch = (nl + CHUNK - 1) // CHUNK
    for t in prange(ni * nj * nk * nch):
        r, q = t // nch, t % nch
        i, j, k = r // (nj * nk), (r // nk) % nj, r % nk
        l0 = q * CHUNK
        l1 = min(nl, l0 + CHUNK)
        _binary_row_into_b(op, a[i, j, k, l0:l1], b[i, j, k, l0:l1])


unary4_serial, binary4_serial = serial_twin(unary4), serial_twin(binary4)
unary_inplace4_serial = serial_twin(unary_inplace4)
binary_into_a4_serial, binary_into_b4_serial = serial_twin(binary_into_a4), serial_twin(binary_into_b4)


# --- host-side wrappers: the registered kernels -------------------------------------------------------------
def unary_call(op: int, x: np.ndarray, out: np.ndarray, alpha: float = 0.0) -> Callable[[], None]:
    """The call computing ``out = f_op(x)`` (``x`` broadcast to ``out.shape``), in place where ``out`` is
    ``x``'s storage."""
    if same_storage(out, x):
        return grouped_call(out.shape, (out,), by_size(unary_inplace4, unary_inplace4_serial, out.size), (op,),
                            (alpha,))
    return grouped_call(out.shape, (x, out), by_size(unary4, unary4_serial, out.size), (op,), (alpha,))


def binary_call(op: int, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> Callable[[], None]:
    """The call computing ``out = a op b`` (broadcasting), in place where ``out`` is ``a``'s or ``b``'s storage."""
    if same_storage(out, a):
        return grouped_call(out.shape, (a, b), by_size(binary_into_a4, binary_into_a4_serial, out.size), (op,))
    if same_storage(out, b):
        return grouped_call(out.shape, (a, b), by_size(binary_into_b4, binary_into_b4_serial, out.size), (op,))
    return grouped_call(out.shape, (a, b, out), by_size(binary4, binary4_serial, out.size), (op,))


def run_unary(op: int, x: np.ndarray, out: np.ndarray, alpha: float = 0.0) -> None:
    """Apply unary op ``op`` to ``x`` (broadcast to ``out.shape``) into ``out``; COPY is a strided copy."""
    unary_call(op, x, out, alpha)()


def _unary_kernel(op: int):
    def kernel(x: np.ndarray, out: np.ndarray) -> None:
        unary_call(op, x, out)()

    kernel.specialize = lambda x, out: unary_call(op, x, out)
    return kernel


def _binary_kernel(op: int):
    def kernel(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        binary_call(op, a, b, out)()

    kernel.specialize = lambda a, b, out: binary_call(op, a, b, out)
    return kernel


def _compare_kernel(op: int):
    def kernel(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        for_each_group(out.shape, (a, b, out), lambda a4, b4, o4: compare4(op, a4, b4, o4))

    return kernel


for _name, _op in UNARY.items():
    backend.register(_name)(_unary_kernel(_op))
for _name, _op in BINARY.items():
    backend.register(_name)(_binary_kernel(_op))
for _name, _op in COMPARE.items():
    backend.register(_name)(_compare_kernel(_op))


@backend.register("leaky_relu")
def leaky_relu(x: np.ndarray, out: np.ndarray, negative_slope: float) -> None:
    run_unary(LEAKY_RELU, x, out, float(negative_slope))


@backend.register("elu")
def elu(x: np.ndarray, out: np.ndarray, alpha: float) -> None:
    run_unary(ELU, x, out, float(alpha))


@backend.register("where")
def where(c: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    for_each_group(out.shape, (c, a, b, out), where4)


@backend.register("astype")
def astype(x: np.ndarray, out: np.ndarray, dtype: str) -> None:
    if out.dtype == np.bool_ and x.dtype != np.bool_:
        for_each_group(out.shape, (x, out), nonzero4)
    else:
        for_each_group(out.shape, (x, out), cast4)


@backend.register("dropout")
def dropout(x: np.ndarray, mask: np.ndarray, out: np.ndarray, p: float) -> None:
    scale = x.dtype.type(1.0 / (1.0 - p))
    for_each_group(out.shape, (x, mask, out), lambda x4, m4, o4: scaled_mul4(x4, m4, o4, scale))
