"""cuda matmul, linear and fused_linear: the shared tile loop (:mod:`.tiling`) with plain array loaders.

- matmul ``(..., M, K) @ (..., K, N)``: numpy broadcasting over the batch axes. The batch axes are merged where
  both operands broadcast alike, padded to :data:`MAX_BATCH_DIMS`, and each block maps its output batch index
  (``blockIdx.z``) to the operands' batch indices with ``geo = (sizes..., a strides..., b strides...)``.
- linear / fused_linear ``x (..., K) @ w(N, K)^T``: one GEMM over the flattened rows; w is read k-fast (it is
  contiguous along K) so the transposed operand still loads coalesced; the epilogue (bias per column, residual,
  activation) is applied on store.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from engine.ops.fused import split_inputs

from .epilogue import HAS_BIAS, HAS_RES, Epilogue, make_epilogue
from .table import backend
from .tiling import Tile, device_function, launch, make_gemm_kernel, same_group, tile_order, tiles

MAX_BATCH_DIMS = 4
GEMM_ROLES = ("matmul", "linear")


def batch_geo(a_batch: tuple[int, ...], b_batch: tuple[int, ...], out_batch: tuple[int, ...]) -> tuple[int, ...]:
    """(sizes, a strides, b strides) of the output batch axes, in units of the operands' flattened batch index (0
    where an operand broadcasts), after merging neighbouring axes that broadcast alike."""
    nd = len(out_batch)
    a = (1,) * (nd - len(a_batch)) + tuple(a_batch)
    b = (1,) * (nd - len(b_batch)) + tuple(b_batch)
    dims: list[list[int]] = []  # [size, a_size, b_size] per merged axis
    for size, sa, sb in zip(out_batch, a, b):
        if size == 1:
            continue
        if dims and (dims[-1][1] == 1) == (sa == 1) and (dims[-1][2] == 1) == (sb == 1):
            dims[-1] = [dims[-1][0] * size, dims[-1][1] * sa, dims[-1][2] * sb]
        else:
            dims.append([size, sa, sb])
    if len(dims) > MAX_BATCH_DIMS:
        raise NotImplementedError(f"backend 'cuda' matmul: batch shapes {a_batch} and {b_batch} broadcast over "
                                  f"{len(dims)} axes; at most {MAX_BATCH_DIMS} are supported")
    dims = [[1, 1, 1]] * (MAX_BATCH_DIMS - len(dims)) + dims
    sizes = tuple(d[0] for d in dims)

    def strides(col: int) -> tuple[int, ...]:
        out, step = [], 1
        for d in reversed(dims):
            out.append(step if d[col] != 1 else 0)
            step *= d[col]
        return tuple(reversed(out))

    return sizes + strides(1) + strides(2)


@cache
def _matmul_fns(dtype: np.dtype):
    def operand_batch(first):
        @device_function
        def batch(geo, g):
            """Flattened batch index of an operand (strides at geo[first:first+4]) for output batch g."""
            idx = 0
            for d in range(MAX_BATCH_DIMS - 1, -1, -1):
                c = g % geo[d]
                g //= geo[d]
                idx += c * geo[first + d]
            return idx

        return batch

    @device_function
    def load_a(a, geo, ga, m, k):
        return a[ga, m, k]

    @device_function
    def load_b(b, geo, gb, k, n, c1, c2):
        return b[gb, k, n]

    @device_function
    def store(out, bias, res, geo, g, s, ksplit, m, n, v, flags, act, alpha):
        out[g, m, n] = v

    return load_a, load_b, store, operand_batch(MAX_BATCH_DIMS), operand_batch(2 * MAX_BATCH_DIMS)


@cache
def _linear_fns(dtype: np.dtype):
    zero = dtype.type(0)
    epilogue = make_epilogue(dtype)

    @device_function
    def load_x(x, geo, g, m, k):
        return x[m, k]

    @device_function
    def load_wt(w, geo, g, k, n, c1, c2):
        return w[n, k]

    @device_function
    def store(out, bias, res, geo, g, s, ksplit, m, n, v, flags, act, alpha):
        bv = bias[n] if flags & HAS_BIAS else zero
        rv = res[m, n] if flags & HAS_RES else zero
        out[m, n] = epilogue(v, bv, rv, flags, act, alpha)

    return load_x, load_wt, store, same_group, same_group


_ROLE_FNS = {"matmul": (_matmul_fns, True, False), "linear": (_linear_fns, True, True)}


@cache
def gemm_kernel(role: str, tile: Tile, dtype: np.dtype):
    """The GEMM kernel of one role ("matmul" or "linear"), tile and dtype."""
    fns, a_k_fast, b_k_fast = _ROLE_FNS[role]
    load_a, load_b, store, a_group, b_group = fns(np.dtype(dtype))
    return make_gemm_kernel(tile, dtype, load_a, load_b, store, a_k_fast=a_k_fast, b_k_fast=b_k_fast,
                            a_group=a_group, b_group=b_group)


@backend.register("matmul")
def matmul(a, b, out) -> None:
    dt = np.dtype(out.dtype)
    sa, sb, so = tuple(a.shape), tuple(b.shape), tuple(out.shape)  # the simulator's shapes index only >= 0
    m, k, n = sa[-2], sa[-1], sb[-1]
    nb = math.prod(so[:-2])
    geo = batch_geo(sa[:-2], sb[:-2], so[:-2])
    tile = tiles(dt)[tile_order(m, n, nb, dt)[0]]
    ep = Epilogue.of(dt, res_ndim=2)
    launch(gemm_kernel("matmul", tile, dt), tile, nb, a.reshape(math.prod(sa[:-2]), m, k),
           b.reshape(math.prod(sb[:-2]), k, n), out.reshape(nb, m, n), ep.bias, ep.res, geo, m, n, k)


def _linear(x, w, out, ep: Epilogue) -> None:
    dt = np.dtype(out.dtype)
    rows, (n, k) = math.prod(tuple(x.shape)[:-1]), tuple(w.shape)
    tile = tiles(dt)[tile_order(rows, n, 1, dt)[0]]
    launch(gemm_kernel("linear", tile, dt), tile, 1, x.reshape(rows, k), w, out.reshape(rows, n), ep.bias, ep.res,
           (0,), rows, n, k, 1, ep.flags, ep.act, ep.alpha)


@backend.register("linear")
def linear(x, w, *b, out) -> None:
    _linear(x, w, out, Epilogue.of(out.dtype, b[0] if b else None, res_ndim=2))


@backend.register("fused_linear")
def fused_linear(*ins, out, has_bias: bool, has_residual: bool, activation: str, act_attrs: tuple = ()) -> None:
    x, w, b, r = split_inputs(ins, has_bias, has_residual)
    so = tuple(out.shape)
    res = None if r is None else r.reshape(math.prod(so[:-1]), so[-1])
    _linear(x, w, out, Epilogue.of(out.dtype, b, res, activation, act_attrs, res_ndim=2))
