"""Direct conv kernels (no im2col, no GEMM) for grouped and depthwise layers and for layers with few input taps
(LeNet's conv1): parallel over (n, out-channel) for the forward, (n, in-channel) for the input gradient and
(out-channel, in-channel/g) for the weight gradient, so every prange iteration owns its output slice. Stride-1
layers run on zero-padded planes where each kernel tap is one long contiguous (vectorizable) loop."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .epilogue import HAS_RES, NO_ACT, epilogue_row, epilogue_value
from .geometry import valid_range


@njit(cache=True)
def _axpy_strided(dst, src, s0, step, alpha):
    """dst[k] += alpha * src[s0 + k*step] for k < len(dst). 1-D slices indexed from 0 let LLVM drop numba's
    negative-index wraparound and vectorize the step == 1 case."""
    m = dst.shape[0]
    if step == 1:
        sv = src[s0:s0 + m]
        for k in range(m):
            dst[k] += alpha * sv[k]
    else:
        for k in range(m):
            dst[k] += alpha * src[s0 + k * step]


@njit(cache=True)
def _scatter_strided(dst, src, s0, step, alpha):
    """dst[s0 + k*step] += alpha * src[k] for k < len(src) (the transpose of :func:`_axpy_strided`)."""
    m = src.shape[0]
    if step == 1:
        dv = dst[s0:s0 + m]
        for k in range(m):
            dv[k] += alpha * src[k]
    else:
        for k in range(m):
            dst[s0 + k * step] += alpha * src[k]


@njit(cache=True)
def _padded_plane(src, xpf, pt, pl, wp):
    """Copy a (H, W) plane into the zeroed flat buffer ``xpf`` viewed with row width ``wp``, offset by the
    top/left padding: afterwards every tap of a stride-1 conv is one contiguous slice of ``xpf``."""
    h, w = src.shape
    xpf[:] = 0
    for a in range(h):
        row = xpf[(a + pt) * wp + pl:(a + pt) * wp + pl + w]
        srow = src[a]
        for b in range(w):
            row[b] = srow[b]


@njit(parallel=True, cache=True)
def pad_planes(x, xp, pt, pl, wp):
    """xp[n, c] = the (H, W) plane x[n, c] zero-padded into a flat buffer of row width ``wp`` (see
    :func:`_padded_plane`), once per plane rather than once per (plane, output channel)."""
    nn, nc = x.shape[:2]
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        _padded_plane(x[n, c], xp[n, c], pt, pl, wp)


@njit(parallel=True, cache=True, error_model="numpy")
def direct_forward_s1(xp, w, out, acc_buf, wp, dh, dw, groups, flags, bias, scale, res, act, alpha):
    """Stride-1 direct conv on padded planes ``xp`` (:func:`pad_planes`) of row width Wp = Wo + (kw-1)*dw: each
    (tap, channel) is ONE contiguous axpy of length Ho*Wp into ``acc_buf[n*O + o]`` (columns >= Wo are scratch),
    which vectorizes where short image rows do not; the epilogue runs per output row on the way out."""
    nn = xp.shape[0]
    no, cg, kh, kw = w.shape
    _, _, oh, ow = out.shape
    og = no // groups
    m = oh * wp
    for t in prange(nn * no):
        n, o = t // no, t % no
        acc = acc_buf[t]
        acc[:] = 0
        c0 = (o // og) * cg
        for ci in range(cg):
            plane = xp[n, c0 + ci]
            for i in range(kh):
                for j in range(kw):
                    wv = w[o, ci, i, j]
                    src = plane[i * dh * wp + j * dw:i * dh * wp + j * dw + m]
                    for u in range(m):
                        acc[u] += wv * src[u]
        for y in range(oh):
            res_row = res[n, o, y * ow:(y + 1) * ow] if flags & HAS_RES else res[0, 0]
            epilogue_row(out[n, o, y], acc[y * wp:y * wp + ow], o, flags, bias, scale, res_row, act, alpha)


@njit(parallel=True, cache=True, fastmath=True)  # fastmath: lets LLVM vectorize the dot-product reductions
def direct_weight_grad_s1(x, gy, gw, pt, pl, dh, dw, groups):
    """Stride-1 weight gradient on the same padded planes: gw[o, ci, i, j] is a sum over n of one contiguous
    dot product of length Ho*Wp between gy (re-laid out with row width Wp, zeros in the extra columns) and a
    shifted slice of the padded input plane."""
    nn, nc, h, wd = x.shape
    no, cg, kh, kw = gw.shape
    _, _, oh, ow = gy.shape
    og = no // groups
    wp = ow + (kw - 1) * dw
    hp = oh + (kh - 1) * dh
    m = oh * wp
    for t in prange(no * cg):
        o, ci = t // cg, t % cg
        c = (o // og) * cg + ci
        xpf = np.empty(hp * wp + (kw - 1) * dw, gw.dtype)
        gyp = np.zeros(m, gw.dtype)
        acc = np.zeros(kh * kw)
        for n in range(nn):
            _padded_plane(x[n, c], xpf, pt, pl, wp)
            for y in range(oh):
                row = gyp[y * wp:y * wp + ow]
                g = gy[n, o, y]
                for z in range(ow):
                    row[z] = g[z]
            for i in range(kh):
                for j in range(kw):
                    src = xpf[i * dh * wp + j * dw:i * dh * wp + j * dw + m]
                    s = 0.0
                    for u in range(m):
                        s += gyp[u] * src[u]
                    acc[i * kw + j] += s
        for i in range(kh):
            for j in range(kw):
                gw[o, ci, i, j] = acc[i * kw + j]


@njit(parallel=True, cache=True, error_model="numpy")
def direct_forward(x, w, out, sh, sw, pt, pl, dh, dw, groups, flags, bias, scale, res, act, alpha):
    nn, nc, h, wd = x.shape
    no, cg, kh, kw = w.shape
    _, _, oh, ow = out.shape
    og = no // groups
    for t in prange(nn * no):
        n, o = t // no, t % no
        acc = np.zeros((oh, ow), out.dtype)
        c0 = (o // og) * cg
        for ci in range(cg):
            for i in range(kh):
                for j in range(kw):
                    wv = w[o, ci, i, j]
                    lo, hi = valid_range(j * dw - pl, sw, wd, ow)
                    s0 = lo * sw + j * dw - pl
                    for y in range(oh):
                        ih = y * sh + i * dh - pt
                        if ih >= 0 and ih < h:
                            _axpy_strided(acc[y, lo:hi], x[n, c0 + ci, ih], s0, sw, wv)
        dst = out[n, o]
        if flags == 0 and act == NO_ACT:
            dst[:] = acc
        else:
            for y in range(oh):
                for z in range(ow):
                    r = res[n, o, y * ow + z] if flags & HAS_RES else 0.0
                    dst[y, z] = epilogue_value(acc[y, z], o, flags, bias, scale, r, act, alpha)


@njit(parallel=True, cache=True)
def direct_input_grad(gy, w, gx, sh, sw, pt, pl, dh, dw, groups):
    nn, nc, h, wd = gx.shape
    no, cg, kh, kw = w.shape
    _, _, oh, ow = gy.shape
    og = no // groups
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        g, ci = c // cg, c % cg
        gx[n, c] = 0
        for o in range(g * og, (g + 1) * og):
            for i in range(kh):
                for j in range(kw):
                    wv = w[o, ci, i, j]
                    lo, hi = valid_range(j * dw - pl, sw, wd, ow)
                    s0 = lo * sw + j * dw - pl
                    for y in range(oh):
                        ih = y * sh + i * dh - pt
                        if ih >= 0 and ih < h:
                            _scatter_strided(gx[n, c, ih], gy[n, o, y, lo:hi], s0, sw, wv)


@njit(parallel=True, cache=True)
def direct_weight_grad(x, gy, gw, sh, sw, pt, pl, dh, dw, groups):
    nn, nc, h, wd = x.shape
    no, cg, kh, kw = gw.shape
    _, _, oh, ow = gy.shape
    og = no // groups
    for t in prange(no * cg):
        o, ci = t // cg, t % cg
        c = (o // og) * cg + ci
        for i in range(kh):
            for j in range(kw):
                lo, hi = valid_range(j * dw - pl, sw, wd, ow)
                s0 = lo * sw + j * dw - pl
                s = 0.0
                for n in range(nn):
                    for y in range(oh):
                        ih = y * sh + i * dh - pt
                        if ih < 0 or ih >= h:
                            continue
                        g = gy[n, o, y, lo:hi]
                        xr = x[n, c, ih]
                        if sw == 1:
                            xv = xr[s0:s0 + hi - lo]
                            for k in range(hi - lo):
                                s += g[k] * xv[k]
                        else:
                            for k in range(hi - lo):
                                s += g[k] * xr[s0 + k * sw]
                gw[o, ci, i, j] = s
