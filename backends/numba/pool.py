"""numba kernels: max / avg / adaptive pooling and their gradients, parallel over (n, c) planes.

Each prange iteration owns whole (n, c) planes of the gradient (or of the forward's output), so the scatter
of overlapping windows in the gradients needs no atomics. Window rules follow the reference
(PyTorch's): padding never wins a max, a NaN wins it, the max gradient goes to the first maximal tap in
row-major order (the first NaN if any), avg divisors clip the window to the padded input, adaptive windows are
``[floor(i*H/o), ceil((i+1)*H/o))``.

Sliding-window pools are separable, so each output row is built in two branch-free, vectorizable passes: a
vertical pass over the kh input rows (contiguous) into a row buffer padded with -inf (max) or 0 (avg), so
padding needs no bounds checks, then one pass per horizontal tap. The buffer is first split into its ``sw``
stride phases (``phases[r, q] = row[q*sw + r]``) so each tap is a contiguous slice too. The max gradient
carries the tap row of each column's first maximum into the horizontal pass, so ties still go to the first
tap in row-major order, then scatters one add per output.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit, prange

from .table import backend
from .window2x2 import window_tap, zero_rows_from


@njit(cache=True)
def _phase_len(w, ow, kw, sw, pw, dw):
    """Length nq of each stride phase of the padded row: the row covers pw + w and every tap of the last
    (ceil-mode) window, rounded up to nq * sw."""
    need = max(pw + w, (ow - 1) * sw + (kw - 1) * dw + 1)
    return -(-need // sw)


@njit(cache=True)
def _phases(row, sw, nq):
    """The (sw, nq) stride-phase buffer of row: a view of it when sw == 1 (nothing to split)."""
    return row.reshape((1, nq)) if sw == 1 else np.empty((sw, nq), row.dtype)


@njit(cache=True)
def _split(row, phases, sw):
    """phases[r, q] = row[q*sw + r]."""
    nq = phases.shape[1]
    if sw == 2:  # both members of each pair in one loop: an interleaved load, not a gather
        for q in range(nq):
            phases[0, q] = row[2 * q]
            phases[1, q] = row[2 * q + 1]
    else:
        for r in range(sw):
            src, dst = row[r:], phases[r]
            for q in range(nq):
                dst[q] = src[q * sw]


@njit(cache=True)
def _merge(phases, row, sw):
    """row[q*sw + r] = phases[r, q] (inverse of _split)."""
    nq = phases.shape[1]
    if sw == 2:
        for q in range(nq):
            row[2 * q] = phases[0, q]
            row[2 * q + 1] = phases[1, q]
    else:
        for r in range(sw):
            src, dst = phases[r], row[r:]
            for q in range(nq):
                dst[q * sw] = src[q]


# Hot loops index 1-D views with the bare loop counter: an index like off + c with a runtime off keeps numba's
# negative-index wraparound select in the loop and defeats vectorization (measured 40x slower), and slice
# assignment (dst[:] = src) costs more than the row itself. A view per row is cheap.
@njit(cache=True)
def _vmax(xp, dst, top, kh, dh):
    """dst = column-wise max over the in-bounds rows top + i*dh (a NaN wins); -inf if none."""
    h, w = xp.shape
    first = True
    for i in range(kh):
        ih = top + i * dh
        if ih < 0 or ih >= h:
            continue
        src = xp[ih]
        if first:
            for c in range(w):
                dst[c] = src[c]
            first = False
            continue
        for c in range(w):
            v, q = src[c], dst[c]
            dst[c] = v if (v > q) | (v != v) else q
    if first:
        for c in range(w):
            dst[c] = -math.inf


@njit(cache=True)
def _vargmax(xp, dst, idx, top, kh, dh):
    """_vmax plus idx = the tap row i of each column's first maximum (first NaN)."""
    h, w = xp.shape
    first = True
    for i in range(kh):
        ih = top + i * dh
        if ih < 0 or ih >= h:
            continue
        src = xp[ih]
        if first:
            for c in range(w):
                dst[c] = src[c]
                idx[c] = i
            first = False
            continue
        for c in range(w):
            v, q = src[c], dst[c]
            take = (v > q) | ((v != v) & (q == q))  # strict: an equal later row loses
            dst[c] = v if take else q
            idx[c] = i if take else idx[c]
    if first:
        for c in range(w):
            dst[c] = -math.inf
            idx[c] = 0


@njit(parallel=True, cache=True)
def max_pool_fwd(x, out, kh, kw, sh, sw, ph, pw, dh, dw, nch):
    nn, nc, h, w = x.shape
    _, _, oh, ow = out.shape
    nq, planes = _phase_len(w, ow, kw, sw, pw, dw), nn * nc
    for k in prange(nch):
        row = np.full(nq * sw, -math.inf, x.dtype)  # padding columns stay -inf: they never win
        phases = _phases(row, sw, nq)
        for t in range(k * planes // nch, (k + 1) * planes // nch):
            xp, op = x[t // nc, t % nc], out[t // nc, t % nc]
            for y in range(oh):
                _vmax(xp, row[pw : pw + w], y * sh - ph, kh, dh)
                if sw > 1:
                    _split(row, phases, sw)
                o = op[y]
                for j in range(kw):
                    src = phases[(j * dw) % sw, (j * dw) // sw :]
                    if j == 0:
                        for z in range(ow):
                            o[z] = src[z]
                        continue
                    for z in range(ow):
                        v, q = src[z], o[z]
                        o[z] = v if (v > q) | (v != v) else q


@njit(parallel=True, cache=True)
def max_pool_bwd(gy, x, gx, kh, kw, sh, sw, ph, pw, dh, dw, nch):
    nn, nc, h, w = x.shape
    _, _, oh, ow = gy.shape
    nq, planes = _phase_len(w, ow, kw, sw, pw, dw), nn * nc
    for k in prange(nch):
        row, rowi = np.full(nq * sw, -math.inf, x.dtype), np.zeros(nq * sw, np.int32)
        phases, phasei = _phases(row, sw, nq), _phases(rowi, sw, nq)
        best, bi, bj = np.empty(ow, x.dtype), np.empty(ow, np.int32), np.empty(ow, np.int32)
        for t in range(k * planes // nch, (k + 1) * planes // nch):
            xp, gyp, gp = x[t // nc, t % nc], gy[t // nc, t % nc], gx[t // nc, t % nc]
            for a in range(h):
                for b in range(w):
                    gp[a, b] = 0
            for y in range(oh):
                top = y * sh - ph
                _vargmax(xp, row[pw : pw + w], rowi[pw : pw + w], top, kh, dh)
                if sw > 1:
                    _split(row, phases, sw)
                    _split(rowi, phasei, sw)
                for j in range(kw):
                    r, q0 = (j * dw) % sw, (j * dw) // sw
                    src, srci = phases[r, q0:], phasei[r, q0:]
                    if j == 0:
                        for z in range(ow):
                            best[z], bi[z], bj[z] = src[z], srci[z], 0
                        continue
                    for z in range(ow):
                        v, q, vi, qi = src[z], best[z], srci[z], bi[z]
                        # row-major first: greater, or the first NaN, or equal (both NaN) from an earlier row
                        tie = (v == q) | ((v != v) & (q != q))
                        take = (v > q) | ((v != v) & (q == q)) | (tie & (vi < qi))
                        best[z] = v if take else q
                        bi[z] = vi if take else qi
                        bj[z] = j if take else bj[z]
                g = gyp[y]
                for z in range(ow):
                    a, b = top + bi[z] * dh, z * sw - pw + bj[z] * dw
                    if best[z] == -math.inf:  # every tap, padding included, is -inf: tap (0, 0) is the first
                        a, b = top, z * sw - pw
                        if a < 0 or b < 0 or a >= h or b >= w:
                            continue
                    gp[a, b] += g[z]


@njit(parallel=True, cache=True)
def max_pool_fwd_2x2(x, out):
    """kernel 2, stride 2, no padding or dilation, every window inside x: one pass, no scratch."""
    nn, nc, h, w = x.shape
    _, _, oh, ow = out.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for y in range(oh):
            for z in range(ow):
                a, b = x[n, c, 2 * y, 2 * z], x[n, c, 2 * y, 2 * z + 1]
                p, q = x[n, c, 2 * y + 1, 2 * z], x[n, c, 2 * y + 1, 2 * z + 1]
                m = b if (b > a) | (b != b) else a
                m = p if (p > m) | (p != p) else m
                out[n, c, y, z] = q if (q > m) | (q != q) else m


@njit(parallel=True, cache=True)
def max_pool_bwd_2x2(gy, x, gx, nch):
    """Gradient of max_pool_fwd_2x2: windows do not overlap, so every gx element is written exactly once."""
    nn, nc, _, w = x.shape
    _, _, oh, ow = gy.shape
    planes = nn * nc
    for k in prange(nch):
        win = np.empty(ow, np.int32)
        zero = gx.dtype.type(0)
        for t in range(k * planes // nch, (k + 1) * planes // nch):
            n, c = t // nc, t % nc
            for y in range(oh):
                for z in range(ow):
                    win[z] = window_tap(x[n, c, 2 * y, 2 * z], x[n, c, 2 * y, 2 * z + 1], x[n, c, 2 * y + 1, 2 * z],
                                        x[n, c, 2 * y + 1, 2 * z + 1])[1]
                # one gx row per loop: fewer streams per loop keeps LLVM's alias checks vectorizable. Written out
                # here rather than calling window2x2.scatter_rows per row as the fused kernels do: this kernel's
                # rows are its whole work, and the call was measured slower (commit 420a1a6)
                for d in range(2):
                    for z in range(ow):
                        g, tap = gy[n, c, y, z], win[z] - 2 * d
                        gx[n, c, 2 * y + d, 2 * z] = g if tap == 0 else zero
                        gx[n, c, 2 * y + d, 2 * z + 1] = g if tap == 1 else zero
                for b in range(2 * ow, w):
                    gx[n, c, 2 * y, b] = 0
                    gx[n, c, 2 * y + 1, b] = 0
            zero_rows_from(gx, n, c, 2 * oh)


@njit(cache=True)
def _avg_count(o, s, p, k, size, include_pad):
    start = o * s - p
    end = min(start + k, size + p)
    if not include_pad:
        start, end = max(start, 0), min(end, size)
    return end - start


@njit(cache=True)
def _vsum(xp, dst, top, kh):
    """dst = column-wise sum over the in-bounds rows top .. top + kh - 1 (0 if none)."""
    h, w = xp.shape
    first = True
    for i in range(kh):
        ih = top + i
        if ih < 0 or ih >= h:
            continue
        src = xp[ih]
        if first:
            for c in range(w):
                dst[c] = src[c]
            first = False
            continue
        for c in range(w):
            dst[c] += src[c]
    if first:
        for c in range(w):
            dst[c] = 0


@njit(cache=True)
def _divisors(dv, cw, ch, divisor):
    """dv[z] = the divisor of output column z in a row whose row count is ch."""
    for z in range(dv.shape[0]):
        dv[z] = divisor if divisor > 0 else ch * cw[z]


@njit(parallel=True, cache=True, error_model="numpy")
def avg_pool_fwd(x, out, kh, kw, sh, sw, ph, pw, include_pad, divisor, nch):
    nn, nc, h, w = x.shape
    _, _, oh, ow = out.shape
    nq, planes = _phase_len(w, ow, kw, sw, pw, 1), nn * nc
    cw = np.array([_avg_count(z, sw, pw, kw, w, include_pad) for z in range(ow)])
    for k in prange(nch):
        row = np.zeros(nq * sw, x.dtype)  # padding columns stay 0
        phases = _phases(row, sw, nq)
        dv = np.empty(ow, x.dtype)
        for t in range(k * planes // nch, (k + 1) * planes // nch):
            xp, op = x[t // nc, t % nc], out[t // nc, t % nc]
            for y in range(oh):
                _vsum(xp, row[pw : pw + w], y * sh - ph, kh)
                if sw > 1:
                    _split(row, phases, sw)
                _divisors(dv, cw, _avg_count(y, sh, ph, kh, h, include_pad), divisor)
                o = op[y]
                for j in range(kw):
                    src = phases[j % sw, j // sw :]
                    if j == 0:
                        for z in range(ow):
                            o[z] = src[z]
                        continue
                    for z in range(ow):
                        o[z] += src[z]
                for z in range(ow):
                    o[z] /= dv[z]


@njit(parallel=True, cache=True, error_model="numpy")
def avg_pool_bwd(gy, gx, kh, kw, sh, sw, ph, pw, include_pad, divisor, nch):
    nn, nc, h, w = gx.shape
    _, _, oh, ow = gy.shape
    nq, planes = _phase_len(w, ow, kw, sw, pw, 1), nn * nc
    cw = np.array([_avg_count(z, sw, pw, kw, w, include_pad) for z in range(ow)])
    for k in prange(nch):
        row = np.zeros(nq * sw, gx.dtype)
        phases = _phases(row, sw, nq)
        dv, share = np.empty(ow, gx.dtype), np.empty(ow, gx.dtype)
        for t in range(k * planes // nch, (k + 1) * planes // nch):
            gyp, gp = gy[t // nc, t % nc], gx[t // nc, t % nc]
            for a in range(h):
                for b in range(w):
                    gp[a, b] = 0
            for y in range(oh):
                top = y * sh - ph
                _divisors(dv, cw, _avg_count(y, sh, ph, kh, h, include_pad), divisor)
                for z in range(ow):
                    share[z] = gyp[y, z] / dv[z]
                for r in range(sw):
                    for q in range(nq):
                        phases[r, q] = 0
                for j in range(kw):  # horizontal scatter: one contiguous add per tap
                    dst = phases[j % sw, j // sw :]
                    for z in range(ow):
                        dst[z] += share[z]
                if sw > 1:
                    _merge(phases, row, sw)
                src = row[pw : pw + w]
                for i in range(kh):  # vertical scatter
                    ih = top + i
                    if ih < 0 or ih >= h:
                        continue
                    gr = gp[ih]
                    for b in range(w):
                        gr[b] += src[b]


@njit(cache=True)
def _window(i, size, out):
    return (i * size) // out, -(-((i + 1) * size) // out)


@njit(parallel=True, cache=True, error_model="numpy")
def adaptive_avg_fwd(x, out):
    nn, nc, h, w = x.shape
    _, _, oh, ow = out.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for y in range(oh):
            h0, h1 = _window(y, h, oh)
            for z in range(ow):
                w0, w1 = _window(z, w, ow)
                s = 0.0
                for a in range(h0, h1):
                    for b in range(w0, w1):
                        s += x[n, c, a, b]
                out[n, c, y, z] = s / ((h1 - h0) * (w1 - w0))


@njit(parallel=True, cache=True, error_model="numpy")
def adaptive_avg_bwd(gy, gx):
    nn, nc, h, w = gx.shape
    _, _, oh, ow = gy.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for a in range(h):
            for b in range(w):
                gx[n, c, a, b] = 0
        for y in range(oh):
            h0, h1 = _window(y, h, oh)
            for z in range(ow):
                w0, w1 = _window(z, w, ow)
                share = gy[n, c, y, z] / ((h1 - h0) * (w1 - w0))
                for a in range(h0, h1):
                    for b in range(w0, w1):
                        gx[n, c, a, b] += share


@njit(cache=True)
def _adaptive_argmax(x, n, c, h0, h1, w0, w1):
    """Row-major first maximum of a window (the first NaN if any): (value, row, col)."""
    best, ba, bb = x[n, c, h0, w0], h0, w0
    if best != best:
        return best, ba, bb
    for a in range(h0, h1):
        for b in range(w0, w1):
            v = x[n, c, a, b]
            if v != v:
                return v, a, b
            if v > best:
                best, ba, bb = v, a, b
    return best, ba, bb


@njit(parallel=True, cache=True)
def adaptive_max_fwd(x, out):
    nn, nc, h, w = x.shape
    _, _, oh, ow = out.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for y in range(oh):
            h0, h1 = _window(y, h, oh)
            for z in range(ow):
                w0, w1 = _window(z, w, ow)
                out[n, c, y, z] = _adaptive_argmax(x, n, c, h0, h1, w0, w1)[0]


@njit(parallel=True, cache=True)
def adaptive_max_bwd(gy, x, gx):
    nn, nc, h, w = x.shape
    _, _, oh, ow = gy.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for a in range(h):
            for b in range(w):
                gx[n, c, a, b] = 0
        for y in range(oh):
            h0, h1 = _window(y, h, oh)
            for z in range(ow):
                w0, w1 = _window(z, w, ow)
                _, a, b = _adaptive_argmax(x, n, c, h0, h1, w0, w1)
                gx[n, c, a, b] += gy[n, c, y, z]


def _c(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a)


def _chunks(shape) -> int:
    """prange count for kernels with scratch rows: a few chunks of planes per thread, so scratch is allocated
    per chunk, not per plane (passed in: get_num_threads inside a kernel would defeat cache=True)."""
    return min(shape[0] * shape[1], 4 * get_num_threads())


def _is_2x2(x_shape, out_shape, kernel, stride, padding, dilation) -> bool:
    """The common non-overlapping 2x2/2 pool with every window inside x (no ceil-mode partial window)."""
    return (kernel == (2, 2) and stride == (2, 2) and padding == (0, 0) and dilation == (1, 1)
            and 2 * out_shape[2] <= x_shape[2] and 2 * out_shape[3] <= x_shape[3])


@backend.register("max_pool2d")
def max_pool2d(x, out, kernel, stride, padding, dilation, ceil_mode) -> None:
    kernel, stride, padding, dilation = (tuple(a) for a in (kernel, stride, padding, dilation))
    if _is_2x2(x.shape, out.shape, kernel, stride, padding, dilation):
        max_pool_fwd_2x2(_c(x), out)
    else:
        max_pool_fwd(_c(x), out, *kernel, *stride, *padding, *dilation, _chunks(x.shape))


@backend.register("max_pool2d_grad")
def max_pool2d_grad(gy, x, out, kernel, stride, padding, dilation, ceil_mode) -> None:
    kernel, stride, padding, dilation = (tuple(a) for a in (kernel, stride, padding, dilation))
    if _is_2x2(x.shape, gy.shape, kernel, stride, padding, dilation):
        max_pool_bwd_2x2(_c(gy), _c(x), out, _chunks(x.shape))
    else:
        max_pool_bwd(_c(gy), _c(x), out, *kernel, *stride, *padding, *dilation, _chunks(x.shape))


@backend.register("avg_pool2d")
def avg_pool2d(x, out, kernel, stride, padding, ceil_mode, count_include_pad, divisor) -> None:
    avg_pool_fwd(_c(x), out, *kernel, *stride, *padding, bool(count_include_pad), int(divisor), _chunks(x.shape))


@backend.register("avg_pool2d_grad")
def avg_pool2d_grad(gy, out, input_shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor) -> None:
    avg_pool_bwd(_c(gy), out, *kernel, *stride, *padding, bool(count_include_pad), int(divisor),
                 _chunks(gy.shape))


@backend.register("adaptive_avg_pool2d")
def adaptive_avg_pool2d(x, out, output_size) -> None:
    adaptive_avg_fwd(_c(x), out)


@backend.register("adaptive_avg_pool2d_grad")
def adaptive_avg_pool2d_grad(gy, out, output_size, input_shape) -> None:
    adaptive_avg_bwd(_c(gy), out)


@backend.register("adaptive_max_pool2d")
def adaptive_max_pool2d(x, out, output_size) -> None:
    adaptive_max_fwd(_c(x), out)


@backend.register("adaptive_max_pool2d_grad")
def adaptive_max_pool2d_grad(gy, x, out, output_size) -> None:
    adaptive_max_bwd(_c(gy), _c(x), out)
