"""numba kernels: conv2d and both gradients, with one algorithm chosen per layer.

Algorithms (see :func:`choose_conv_algorithm`; the compile report shows the choice per node):

- ``im2col``: a parallel numba im2col into ``cols (C*kh*kw, N*Ho*Wo)`` (one column per output pixel of the
  whole batch), ONE BLAS GEMM for the whole batch, oriented by :func:`gemm_pixel_major` (``cols^T @ W^T`` or
  ``W @ cols``), then one parallel pass that moves the result into NCHW while applying the epilogue (bias,
  folded-BN scale/shift, residual, activation; :mod:`.conv_epilogue`). Gradients: ``gW`` is one GEMM with
  K = N*Ho*Wo (oriented so the larger of C*kh*kw and O is the row count), ``gcols = W^T @ gy^T`` then a
  parallel col2im that gives each (n, c) input plane to one thread.
- ``gemm_1x1``: 1x1 kernels without padding are a plain GEMM ``W (O, C) @ x (C, N*P)``: x is only re-laid out
  channels-first (subsampled when strided), no kh*kw im2col expansion; the input gradient is ``W^T @ gy`` moved
  back to NCHW. (One batch-wide GEMM measured 2x faster here than N per-image GEMMs ``W @ x[n]``.)
- ``direct`` (:mod:`.conv_direct`): direct loop nests for grouped / depthwise layers and for layers with few
  input taps per output (LeNet's first layer: C*kh*kw = 25), where a GEMM with a tiny inner dimension runs far
  below BLAS peak and im2col would multiply the memory traffic by kh*kw.

Workspaces (im2col matrix, packed gradients) are reused between calls (:func:`scratch`). Every prange
iteration writes a disjoint output slice (no races).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from . import backend
from .conv_direct import (
    _scatter_strided,
    _valid,
    direct_forward,
    direct_forward_s1,
    direct_input_grad,
    direct_weight_grad,
    direct_weight_grad_s1,
)
from .conv_epilogue import HAS_BIAS, HAS_RES, HAS_SCALE, NO_ACT, Epilogue, unpack_epilogue, unpack_pixel_major
from .elementwise import COPY, run_unary
from .shape import fill

__all__ = ["choose_conv_algorithm", "conv2d_forward", "Epilogue", "HAS_BIAS", "HAS_SCALE", "HAS_RES", "NO_ACT"]

DIRECT_MAX_TAPS = 32  # C/g * kh * kw at or below which a groups=1 layer runs the direct kernel


# --- algorithm choice ------------------------------------------------------------------------------------
def _shape(s: Any) -> tuple[int, ...]:
    return tuple(getattr(s, "shape", s))


def choose_conv_algorithm(x_spec: Any, w_spec: Any, attrs: dict[str, Any]) -> str:
    """The algorithm a conv2d layer (and its two gradients) runs with: ``"direct"``, ``"gemm_1x1"`` or
    ``"im2col"``. ``x_spec``/``w_spec`` are Specs, arrays or shapes; ``attrs`` are the conv2d attrs.

    Heuristic, in order:
      1. ``groups > 1`` (grouped, depthwise) -> ``direct``: per-group GEMMs are tiny.
      2. 1x1 kernel, no padding -> ``gemm_1x1``: x itself (re-laid out channels-first) is the GEMM operand.
      3. ``C/g * kh * kw <= 32`` (few input channels, e.g. LeNet conv1 with 1*5*5 = 25) -> ``direct``: the
         GEMM's inner dimension would be too short for BLAS to reach peak.
      4. otherwise -> ``im2col`` + one batch-wide BLAS GEMM.
    """
    o, cg, kh, kw = _shape(w_spec)
    (pt, pb), (pl, pr) = attrs["padding"]
    if attrs["groups"] > 1:
        return "direct"
    if kh == kw == 1 and pt == pb == pl == pr == 0:
        return "gemm_1x1"
    if cg * kh * kw <= DIRECT_MAX_TAPS:
        return "direct"
    return "im2col"


# --- shared pieces -------------------------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def im2col(x, cols, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """cols[(c*kh + i)*kw + j, n*Ho*Wo + y*Wo + z] = x[n, c, y*sh + i*dh - pt, z*sw + j*dw - pl] (0 outside)."""
    nn, nc, h, w = x.shape
    npix = oh * ow
    for t in prange(nc * kh * kw * nn):
        ck, n = t // nn, t % nn
        c, i, j = ck // (kh * kw), (ck // kw) % kh, ck % kw
        lo, hi = _valid(j * dw - pl, sw, w, ow)
        s0 = lo * sw + j * dw - pl
        crow = cols[ck, n * npix:(n + 1) * npix]
        for y in range(oh):
            ih = y * sh + i * dh - pt
            dst = crow[y * ow:(y + 1) * ow]
            if ih < 0 or ih >= h:
                dst[:] = 0
                continue
            dst[:lo] = 0
            dst[hi:] = 0
            src = x[n, c, ih]
            seg = dst[lo:hi]
            if sw == 1:
                seg[:] = src[s0:s0 + hi - lo]
            else:
                for k in range(hi - lo):
                    seg[k] = src[s0 + k * sw]


@njit(parallel=True, cache=True)
def col2im(cols, gx, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """The transpose of :func:`im2col`: gx[n, c] = sum of the columns that read it (one thread per plane)."""
    nn, nc, h, w = gx.shape
    npix = oh * ow
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        gx[n, c] = 0
        for i in range(kh):
            for j in range(kw):
                ck = (c * kh + i) * kw + j
                lo, hi = _valid(j * dw - pl, sw, w, ow)
                s0 = lo * sw + j * dw - pl
                crow = cols[ck, n * npix:(n + 1) * npix]
                for y in range(oh):
                    ih = y * sh + i * dh - pt
                    if ih >= 0 and ih < h:
                        _scatter_strided(gx[n, c, ih], crow[y * ow + lo:y * ow + hi], s0, sw, 1.0)


@njit(parallel=True, cache=True)
def pack_channels_first(y, yt):
    """yt[o, n*P + p] = y[n, o, p]: (N, O, P) -> (O, N*P)."""
    nn, no, npix = y.shape
    for t in prange(no * nn):
        o, n = t // nn, t % nn
        for p in range(npix):
            yt[o, n * npix + p] = y[n, o, p]


# --- host-side drivers -------------------------------------------------------------------------------------
_SCRATCH: dict[str, np.ndarray] = {}


def scratch(role: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A reusable workspace (im2col matrix, packed gradients): one growing buffer per role, so repeated calls
    do not page-fault fresh memory. Contents are undefined; views never outlive the kernel call."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = _SCRATCH.get(role)
    if buf is None or buf.size < size:
        buf = _SCRATCH[role] = np.empty(size, np.uint8)
    return buf[:size].view(dtype).reshape(shape)


def _geom(stride, padding, dilation) -> tuple[int, ...]:
    (sh, sw), ((pt, _), (pl, _)), (dh, dw) = stride, padding, dilation
    return sh, sw, pt, pl, dh, dw


def _im2col(x: np.ndarray, kernel, oh: int, ow: int, stride, padding, dilation) -> np.ndarray:
    """The (C*kh*kw, N*Ho*Wo) im2col matrix in scratch memory; for a 1x1 kernel without padding it is just the
    channels-first pack (N, C, P) -> (C, N*P) (subsampled when strided): no kh*kw expansion."""
    kh, kw = kernel
    n, c, h, w = x.shape
    cols = scratch("cols", (c * kh * kw, n * oh * ow), x.dtype)
    x = np.ascontiguousarray(x)
    if kh == kw == 1 and stride == (1, 1) and (oh, ow) == (h, w):
        pack_channels_first(x.reshape(n, c, h * w), cols)
    else:
        im2col(x, cols, kh, kw, *_geom(stride, padding, dilation), oh, ow)
    return cols


def _pack_gy(gy: np.ndarray) -> np.ndarray:
    n, o, oh, ow = gy.shape
    gyt = scratch("gyt", (o, n * oh * ow), gy.dtype)
    pack_channels_first(np.ascontiguousarray(gy).reshape(n, o, oh * ow), gyt)
    return gyt


def gemm_pixel_major(ck: int, npix: int, o: int) -> bool:
    """GEMM orientation of the forward: ``cols^T @ W^T`` (pixel-major output, then a tiled transpose) when both
    the pixel count N*P and the inner size C*kh*kw are at least 4x the output channels, else ``W @ cols``.
    Measured with OpenBLAS on the ResNet-18 shapes (2-core Zen3, GFLOP/s pixel-major vs channel-major):
    56x56x64 51 vs 46, 28x28x128 58 vs 39, 14x14x256 58 vs 33, 7x7x512 18 vs 58, 1x1 64->256 equal (and its
    cheaper channel-major unpack wins)."""
    return npix >= 4 * o and ck >= 4 * o


def conv2d_forward(x: np.ndarray, w: np.ndarray, out: np.ndarray, ep: Epilogue, stride, padding, dilation,
                   groups: int, algorithm: str | None = None) -> None:
    """out = epilogue(conv2d(x, w)); the driver behind conv2d and fused_conv2d."""
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    algo = algorithm or choose_conv_algorithm(x, w, attrs)
    n, o, oh, ow = out.shape
    if out.size == 0:
        return
    if algo == "direct" and stride == (1, 1):
        sh, sw, pt, pl, dh, dw = _geom(stride, padding, dilation)
        direct_forward_s1(np.ascontiguousarray(x), np.ascontiguousarray(w), out, pt, pl, dh, dw, groups, ep.flags,
                          ep.bias, ep.scale, ep.res3((n, o, oh * ow)), ep.act, ep.alpha)
    elif algo == "direct":
        direct_forward(np.ascontiguousarray(x), np.ascontiguousarray(w), out, *_geom(stride, padding, dilation),
                       groups, ep.flags, ep.bias, ep.scale, ep.res3((n, o, oh * ow)), ep.act, ep.alpha)
    else:  # im2col and gemm_1x1 (whose "cols" is the channels-first pack of x)
        cols = _im2col(x, w.shape[2:], oh, ow, stride, padding, dilation)
        ck, npix = cols.shape
        w2 = np.ascontiguousarray(w).reshape(o, -1)
        res3 = ep.res3((n, o, oh * ow))
        if gemm_pixel_major(ck, npix, o):
            y2 = scratch("y2", (npix, o), out.dtype)
            np.matmul(cols.T, w2.T, out=y2)  # (N*P, C*kh*kw) @ (C*kh*kw, O)
            unpack_pixel_major(y2, out.reshape(n, o, oh * ow), ep.flags, ep.bias, ep.scale, res3, ep.act, ep.alpha)
        else:
            yt = scratch("yt", (o, npix), out.dtype)
            np.matmul(w2, cols, out=yt)  # (O, C*kh*kw) @ (C*kh*kw, N*P)
            unpack_epilogue(yt, out.reshape(n, o, oh * ow), ep.flags, ep.bias, ep.scale, res3, ep.act, ep.alpha)


@backend.register("conv2d")
def conv2d(x: np.ndarray, w: np.ndarray, *b: np.ndarray, out: np.ndarray, stride, padding, dilation,
           groups: int) -> None:
    conv2d_forward(x, w, out, Epilogue(out.dtype, bias=b[0] if b else None), stride, padding, dilation, groups)


@backend.register("conv2d_input_grad")
def conv2d_input_grad(gy: np.ndarray, w: np.ndarray, out: np.ndarray, input_shape, stride, padding, dilation,
                      groups: int) -> None:
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    algo = choose_conv_algorithm(input_shape, w, attrs)
    n, c, h, wd = input_shape
    _, o, oh, ow = gy.shape
    gy = np.ascontiguousarray(gy)
    if out.size == 0:
        return
    if gy.size == 0:
        fill(out, 0)
    elif algo == "direct":
        direct_input_grad(gy, np.ascontiguousarray(w), out, *_geom(stride, padding, dilation), groups)
    else:
        gyt = _pack_gy(gy)
        kh, kw = w.shape[2:]
        gcols = scratch("cols", (c * kh * kw, n * oh * ow), gy.dtype)
        np.matmul(np.ascontiguousarray(w).reshape(o, -1).T, gyt, out=gcols)  # (C*kh*kw, N*P)
        if algo == "gemm_1x1" and stride == (1, 1) and (oh, ow) == (h, wd):
            ep = Epilogue(out.dtype)  # empty: unpack only, (C, N*P) -> (N, C, P)
            unpack_epilogue(gcols, out.reshape(n, c, h * wd), 0, ep.bias, ep.scale, ep.res3((n, c, h * wd)),
                            NO_ACT, 0.0)
        else:
            col2im(gcols, out, kh, kw, *_geom(stride, padding, dilation), oh, ow)


@backend.register("conv2d_weight_grad")
def conv2d_weight_grad(x: np.ndarray, gy: np.ndarray, out: np.ndarray, weight_shape, stride, padding, dilation,
                       groups: int) -> None:
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    algo = choose_conv_algorithm(x, weight_shape, attrs)
    n, o, oh, ow = gy.shape
    gy = np.ascontiguousarray(gy)
    if out.size == 0:
        return
    if gy.size == 0:
        fill(out, 0)
    elif algo == "direct" and stride == (1, 1):
        sh, sw, pt, pl, dh, dw = _geom(stride, padding, dilation)
        direct_weight_grad_s1(np.ascontiguousarray(x), gy, out, pt, pl, dh, dw, groups)
    elif algo == "direct":
        direct_weight_grad(np.ascontiguousarray(x), gy, out, *_geom(stride, padding, dilation), groups)
    else:  # im2col and gemm_1x1 (for 1x1, im2col is the channels-first pack): one GEMM over the batch
        cols = _im2col(x, weight_shape[2:], oh, ow, stride, padding, dilation)
        gyt = _pack_gy(gy)
        # One GEMM with K = N*P. BLAS (OpenBLAS here) runs these long-K products several times faster when the
        # larger of (C*kh*kw, O) is the output's row count (measured 52 vs 245 ms for 3x3 64->64 at 56x56 b8, and
        # 43 vs 178 ms for 1x1 64->256), so pick the orientation by shape.
        if cols.shape[0] >= o:
            gwt = scratch("gwt", (cols.shape[0], o), gy.dtype)
            np.matmul(cols, gyt.T, out=gwt)
            run_unary(COPY, gwt.T, out.reshape(o, -1))
        else:
            np.matmul(gyt, cols.T, out=out.reshape(o, -1))


# --- what the compile report shows per node (graph.compile reads a kernel's ``algorithm`` attribute) ----------
def _forward_note(x_shape, w_shape, attrs) -> str:
    algo = choose_conv_algorithm(x_shape, w_shape, attrs)
    if algo == "direct":
        return algo
    (n, _, h, w), (o, cg, kh, kw) = x_shape, w_shape
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    npix = n * ((h + pt + pb - dh * (kh - 1) - 1) // sh + 1) * ((w + pl + pr - dw * (kw - 1) - 1) // sw + 1)
    return f"{algo}, {'pixel' if gemm_pixel_major(cg * kh * kw, npix, o) else 'channel'}-major GEMM"


conv2d.algorithm = lambda specs, **attrs: _forward_note(_shape(specs[0]), _shape(specs[1]), attrs)
conv2d_input_grad.algorithm = lambda specs, input_shape, **attrs: choose_conv_algorithm(input_shape, specs[1], attrs)
conv2d_weight_grad.algorithm = lambda specs, weight_shape, **attrs: choose_conv_algorithm(specs[0], weight_shape,
                                                                                          attrs)
