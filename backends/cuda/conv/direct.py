"""Direct kernels for grouped and depthwise convolutions, whose per-group GEMMs are too thin for a 64-wide tile
(depthwise: M = O/g = 1, K = kh*kw).

- forward: one thread per output element (grid-stride), a warp covers consecutive ``wo`` of one (img, o) plane,
  so its x reads are consecutive (or strided by sw) and its weight reads are a broadcast; epilogue on store.
- input grad: one thread per input element gathering from the output pixels that read it (no atomics).
- weight grad: one block per weight element (o, c, i, j); its threads walk the N*Ho*Wo pixels in a fixed stride
  and add their partial sums in a shared-memory tree of fixed shape, so the result does not depend on scheduling.

``geo`` is :func:`.igemm.conv_geo`'s tuple.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import cuda
from numba.np.numpy_support import from_dtype

from ..epilogue import HAS_BIAS, HAS_RES, make_epilogue

MAX_BLOCKS = 4096  # grid-stride kernels launch at most this many blocks


@cache
def direct_forward_kernel(dtype: np.dtype):
    zero = dtype.type(0)
    epilogue = make_epilogue(dtype)

    def conv_direct(x, w, out, bias, res, geo, flags, act, alpha):
        sh, sw, pt, pl, dh, dw, kh, kw, cg, og = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], \
            geo[8], geo[9]
        h_n, w_n, ho_n, wo_n = geo[10], geo[11], geo[12], geo[13]
        no = out.shape[1]
        total = out.shape[0] * no * ho_n * wo_n
        for e in range(cuda.grid(1), total, cuda.gridsize(1)):
            wo = e % wo_n
            t = e // wo_n
            ho = t % ho_n
            t //= ho_n
            o = t % no
            img = t // no
            c0 = (o // og) * cg
            acc = zero
            for c in range(cg):
                for i in range(kh):
                    h = ho * sh - pt + i * dh
                    if h >= 0 and h < h_n:
                        for j in range(kw):
                            ww = wo * sw - pl + j * dw
                            if ww >= 0 and ww < w_n:
                                acc += x[img, c0 + c, h, ww] * w[o, c, i, j]
            bv = bias[o] if flags & HAS_BIAS else zero
            rv = res[img, o, ho, wo] if flags & HAS_RES else zero
            out[img, o, ho, wo] = epilogue(acc, bv, rv, flags, act, alpha)

    return cuda.jit(conv_direct)


@cache
def direct_input_grad_kernel(dtype: np.dtype):
    zero = dtype.type(0)

    def conv_input_grad_direct(gy, w, out, geo):
        sh, sw, pt, pl, dh, dw, kh, kw, cg, og = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], \
            geo[8], geo[9]
        h_n, w_n, ho_n, wo_n = geo[10], geo[11], geo[12], geo[13]
        nc = out.shape[1]
        total = out.shape[0] * nc * h_n * w_n
        for e in range(cuda.grid(1), total, cuda.gridsize(1)):
            wi = e % w_n
            t = e // w_n
            hi = t % h_n
            t //= h_n
            ci = t % nc
            img = t // nc
            g = ci // cg
            c = ci - g * cg
            acc = zero
            for i in range(kh):
                th = hi + pt - i * dh
                ho = th // sh
                if th >= 0 and ho * sh == th and ho < ho_n:
                    for j in range(kw):
                        tw = wi + pl - j * dw
                        wo = tw // sw
                        if tw >= 0 and wo * sw == tw and wo < wo_n:
                            for o in range(g * og, g * og + og):
                                acc += gy[img, o, ho, wo] * w[o, c, i, j]
            out[img, ci, hi, wi] = acc

    return cuda.jit(conv_input_grad_direct)


@cache
def direct_weight_grad_kernel(threads: int, dtype: np.dtype):
    if threads & (threads - 1):
        raise ValueError(f"direct weight grad: threads per block must be a power of two, got {threads}")
    zero = dtype.type(0)
    nbt = from_dtype(dtype)

    def conv_weight_grad_direct(x, gy, out, geo):
        sh, sw, pt, pl, dh, dw, kh, kw, cg, og = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], \
            geo[8], geo[9]
        h_n, w_n, ho_n, wo_n = geo[10], geo[11], geo[12], geo[13]
        red = cuda.shared.array(threads, nbt)
        tid = cuda.threadIdx.x
        npix = gy.shape[0] * ho_n * wo_n
        nw = out.shape[0] * cg * kh * kw
        for q in range(cuda.blockIdx.x, nw, cuda.gridDim.x):  # q: the weight element this block reduces
            j = q % kw
            t = q // kw
            i = t % kh
            t //= kh
            c = t % cg
            o = t // cg
            ci = (o // og) * cg + c
            acc = zero
            for p in range(tid, npix, threads):
                wo = p % wo_n
                t2 = p // wo_n
                ho = t2 % ho_n
                img = t2 // ho_n
                h = ho * sh - pt + i * dh
                ww = wo * sw - pl + j * dw
                if h >= 0 and h < h_n and ww >= 0 and ww < w_n:
                    acc += gy[img, o, ho, wo] * x[img, ci, h, ww]
            red[tid] = acc
            # Wait until every partial sum is in shared memory
            cuda.syncthreads()
            half = threads // 2
            while half > 0:
                if tid < half:
                    red[tid] += red[tid + half]
                # Wait until this level of the tree is summed
                cuda.syncthreads()
                half //= 2
            if tid == 0:
                out[o, c, i, j] = red[0]
            # Wait until red[0] is read before the next weight element overwrites it
            cuda.syncthreads()

    return cuda.jit(conv_weight_grad_direct)


def blocks_for(n: int, threads: int) -> int:
    return max(1, min(-(-n // threads), MAX_BLOCKS))
