"""conv2d and both gradients as implicit GEMMs on the shared tile loop (:mod:`..tiling`), one GEMM per group
(``blockIdx.z``); no im2col matrix exists, each loader reads the element of the virtual operand it needs.

With ``K_tap = (c, i, j)`` a weight tap (channel within the group, kernel row, kernel column) and ``pix`` an
output pixel ``(img, ho, wo)``:

- forward:      ``y[o, pix]  = sum_tap  w[o, tap] * x[tap, pix]``        M = O/g, N = N*Ho*Wo, K = C/g*kh*kw
- input grad:   ``gx[c, ipix] = sum_(o,i,j) w[o, c, i, j] * gy[o, opix]`` M = C/g, N = N*H*W,   K = O/g*kh*kw,
  where ``opix`` is the output pixel that tap (i, j) of input pixel ``ipix`` came from (zero where the stride
  skips it): a gather, so every input gradient element is written once, without atomics
- weight grad:  ``gw[o, tap] = sum_pix  gy[o, pix] * x[tap, pix]``       M = O/g, N = C/g*kh*kw, K = N*Ho*Wo,
  split along K into ``ksplit`` partial sums added in a fixed order by :func:`sum_splits` (deterministic).

Pixels are the n (column) index of the forward and input-grad GEMMs, so a warp loads and stores consecutive
pixels. Operands contiguous along a GEMM axis are passed as 2-D/3-D views (weight ``(O, C/g*kh*kw)``, output
``(N, O, Ho*Wo)``, ...) so their loaders and stores divide less, and each B column's part of the gather (the
output pixel's patch origin, the input pixel, the weight tap) is decomposed once per block (``b_column``), not per
k step. ``geo = (sh, sw, pt, pl, dh, dw, kh, kw, C/g, O/g,
H, W, Ho, Wo)``.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import cuda

from ..epilogue import HAS_BIAS, HAS_RES, make_epilogue
from ..tiling import Tile, device_function, make_gemm_kernel

ROLES = ("forward", "input_grad", "weight_grad")


def conv_geo(x_shape, w_shape, out_hw, stride, padding, dilation, groups: int) -> tuple[int, ...]:
    (_, c, h, w), (o, _, kh, kw) = x_shape, w_shape
    (sh, sw), ((pt, _), (pl, _)), (dh, dw) = stride, padding, dilation
    return (sh, sw, pt, pl, dh, dw, kh, kw, c // groups, o // groups, h, w, out_hw[0], out_hw[1])


@cache
def _x_at(dtype: np.dtype):
    zero = dtype.type(0)

    @device_function
    def x_at(x, geo, img, ci, h, w):
        """x[img, ci, h, w], zero in the padding."""
        if h >= 0 and h < geo[10] and w >= 0 and w < geo[11]:
            return x[img, ci, h, w]
        return zero

    return x_at


@device_function
def _pixel_origin(geo, n):
    """(img, ho*sh - pt, wo*sw - pl) of output pixel n: where its patch starts in x."""
    hw = geo[12] * geo[13]
    img = n // hw
    p = n - img * hw
    ho = p // geo[13]
    return img, ho * geo[0] - geo[2], (p - ho * geo[13]) * geo[1] - geo[3]


@device_function
def _tap_offset(geo, tap):
    """(c, i*dh, j*dw) of weight tap (c, i, j) within a group."""
    kk = geo[6] * geo[7]
    c = tap // kk
    r = tap - c * kk
    i = r // geo[7]
    return c, i * geo[4], (r - i * geo[7]) * geo[5]


@cache
def _forward_fns(dtype: np.dtype):
    zero = dtype.type(0)
    epilogue = make_epilogue(dtype)
    x_at = _x_at(dtype)

    @device_function
    def load_w(w2, geo, g, m, k):
        return w2[g * geo[9] + m, k]  # w2: (O, C/g*kh*kw), contiguous along k

    @device_function
    def pixel(geo, g, n):
        return _pixel_origin(geo, n)

    @device_function
    def load_x(x, geo, g, k, img, h0, w0):
        c, di, dj = _tap_offset(geo, k)
        return x_at(x, geo, img, g * geo[8] + c, h0 + di, w0 + dj)

    @device_function
    def store_y(out3, bias, res3, geo, g, s, ksplit, m, n, v, flags, act, alpha):
        hw = geo[12] * geo[13]
        img = n // hw
        p = n - img * hw
        o = g * geo[9] + m
        bv = bias[o] if flags & HAS_BIAS else zero
        rv = res3[img, o, p] if flags & HAS_RES else zero
        out3[img, o, p] = epilogue(v, bv, rv, flags, act, alpha)  # out3, res3: (N, O, Ho*Wo)

    return load_w, load_x, store_y, pixel


@cache
def _input_grad_fns(dtype: np.dtype):
    zero = dtype.type(0)

    @device_function
    def load_wt(w3, geo, g, m, k):
        kk = geo[6] * geo[7]
        o = k // kk
        return w3[g * geo[9] + o, m, k - o * kk]  # w3: (O, C/g, kh*kw)

    @device_function
    def input_pixel(geo, g, n):
        """(img, h + pt, w + pl) of input pixel n."""
        hw = geo[10] * geo[11]
        img = n // hw
        p = n - img * hw
        h = p // geo[11]
        return img, h + geo[2], p - h * geo[11] + geo[3]

    @device_function
    def load_gy(gy, geo, g, k, img, hp, wp):
        kk = geo[6] * geo[7]
        o = k // kk
        r = k - o * kk
        i = r // geo[7]
        th = hp - i * geo[4]  # = ho * sh where this tap of that output pixel read the input pixel
        tw = wp - (r - i * geo[7]) * geo[5]
        if th < 0 or tw < 0:
            return zero
        ho = th // geo[0]
        wo = tw // geo[1]
        if ho * geo[0] != th or wo * geo[1] != tw or ho >= geo[12] or wo >= geo[13]:
            return zero
        return gy[img, g * geo[9] + o, ho, wo]

    @device_function
    def store_gx(out3, bias, res, geo, g, s, ksplit, m, n, v, flags, act, alpha):
        hw = geo[10] * geo[11]
        img = n // hw
        out3[img, g * geo[8] + m, n - img * hw] = v  # out3: (N, C, H*W)

    return load_wt, load_gy, store_gx, input_pixel


@cache
def _weight_grad_fns(dtype: np.dtype):
    x_at = _x_at(dtype)

    @device_function
    def load_gy(gy3, geo, g, m, k):
        hw = geo[12] * geo[13]
        img = k // hw
        return gy3[img, g * geo[9] + m, k - img * hw]  # gy3: (N, O, Ho*Wo)

    @device_function
    def tap(geo, g, n):
        return _tap_offset(geo, n)

    @device_function
    def load_x(x, geo, g, k, c, di, dj):
        img, h0, w0 = _pixel_origin(geo, k)
        return x_at(x, geo, img, g * geo[8] + c, h0 + di, w0 + dj)

    @device_function
    def store_partial(out, bias, res, geo, g, s, ksplit, m, n, v, flags, act, alpha):
        out[s, g * geo[9] + m, n] = v  # out: (ksplit, O, C/g*kh*kw); ksplit 1 is gw itself

    return load_gy, load_x, store_partial, tap


_ROLE_FNS = {"forward": (_forward_fns, True, False), "input_grad": (_input_grad_fns, True, False),
             "weight_grad": (_weight_grad_fns, True, True)}


@cache
def conv_kernel(role: str, tile: Tile, dtype: np.dtype):
    """The implicit-GEMM kernel of one role, tile and dtype (compiled on first launch)."""
    fns, a_k_fast, b_k_fast = _ROLE_FNS[role]
    load_a, load_b, store, b_column = fns(np.dtype(dtype))
    return make_gemm_kernel(tile, dtype, load_a, load_b, store, a_k_fast=a_k_fast, b_k_fast=b_k_fast,
                            b_column=b_column)


@cache
def _sum_splits_kernel(dtype: np.dtype):
    zero = dtype.type(0)

    def sum_splits(partial, out):
        """out.flat[e] = sum_s partial[s].flat[e], s in order (grid-stride over the elements)."""
        ns, no, nk = partial.shape
        start, step = cuda.grid(1), cuda.gridsize(1)
        for e in range(start, no * nk, step):
            o = e // nk
            k = e - o * nk
            acc = zero
            for s in range(ns):
                acc += partial[s, o, k]
            out[o, k] = acc

    return cuda.jit(sum_splits)


def sum_splits(partial, out2, threads: int = 256) -> None:
    """``out2 = partial.sum(0)`` in a fixed order; partial (S, O, C/g*kh*kw), out2 (O, C/g*kh*kw)."""
    n = out2.shape[0] * out2.shape[1]
    blocks = min(-(-n // threads), 1024)
    _sum_splits_kernel(np.dtype(out2.dtype))[blocks, threads](partial, out2)
