"""numba kernels: conv2d and both gradients, with one algorithm chosen per layer.

Algorithms (:mod:`.conv_select` lists the candidates per layer and role and picks one: measured once per shape by
default, or by its heuristic; the compile report shows the choice and the measured times per node):

- ``gemm-tables`` (:mod:`.conv_tables`, float32): an implicit GEMM whose register tile reads x through two offset
  tables (output pixel -> input position, tap -> offset), so no im2col matrix is built and no col2im runs; the
  epilogue is applied as each block of output pixels moves to NCHW. 1.2-4x faster than im2col + GEMM on every
  layer measured (LeNet conv2 forward 0.6 vs 1.9 ms; ResNet-18 CIFAR 3x3/2 at 32x32 b32 3.2 vs 7.4 ms), at
  par with Winograd on 3x3 forwards. The float32 default outside Winograd and stride-1 1x1 layers.
- ``im2col`` (other dtypes): a parallel numba im2col into ``cols (C*kh*kw, N*Ho*Wo)`` (one column per output
  pixel of the whole batch), ONE GEMM for the whole batch, ``cols^T @ W^T`` (``im2col-pixel``) or ``W @ cols``
  (``im2col-channel``; plain ``im2col`` orients by :func:`gemm_pixel_major`), then one parallel pass that
  moves the result into NCHW while applying the epilogue (bias,
  folded-BN scale/shift, residual, activation; :mod:`.conv_epilogue`). Gradients: ``gW`` is one GEMM with
  K = N*Ho*Wo (oriented so the larger of C*kh*kw and O is the row count), ``gcols = W^T @ gy^T`` then a
  parallel col2im that gives each (n, c) input plane to one thread. (Per-image im2col for large planes and an
  im2col packed panel by panel inside the GEMM were measured candidates until gemm-tables beat both.)
- ``gemm_1x1-nchw``: 1x1 stride-1 kernels without padding as one GEMM per image on the NCHW arrays themselves
  (``out[n] = W @ x[n]``, ``gx[n] = W^T @ gy[n]``, ``gW = sum_n gy[n] @ x[n]^T``): no packing at all. Measured at
  batch 8 (forward, ms, vs ``gemm_1x1``): 56x56 64->256 3.9 vs 6.3, 256->64 4.1 vs 5.3, 28x28 128->512 3.5 vs 4.1;
  slower at 7x7 512->2048 (3.8 vs 3.5).
- ``gemm_1x1``: 1x1 kernels without padding are a plain GEMM ``W (O, C) @ x (C, N*P)``: x is only re-laid out
  channels-first (subsampled when strided), no kh*kw im2col expansion; the input gradient is ``W^T @ gy`` moved
  back to NCHW. (One batch-wide GEMM measured 2x faster here than N per-image GEMMs ``W @ x[n]``.)
- ``winograd-f2`` / ``winograd-f4`` (:mod:`.conv_winograd`): 3x3 stride-1 layers as Winograd F(2x2, 3x3) or
  F(4x4, 3x3): 4 or 2.25 multiplies per output and channel pair instead of 9, as a*a batched GEMMs between an
  input and an output transform (the output transform applies the epilogue). The input gradient of such a
  layer is itself one (gy with the flipped, transposed kernel), so it runs the same way; the weight gradient
  transforms x and gy tiles and runs a*a long-K GEMMs ``Gy[k]^T @ V[k]`` before the inverse kernel transform.
- ``direct`` (:mod:`.conv_direct`): direct loop nests for grouped / depthwise layers, and a measured candidate for
  layers with few input taps per output (LeNet's first layer: C*kh*kw = 25; gemm-tables wins there too).

Workspaces (im2col matrix, packed gradients) are reused between calls (:func:`scratch`). Every prange
iteration writes a disjoint output slice (no races).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from numba import njit, prange

from . import backend, conv_tables
from .conv_direct import (
    _valid,
    direct_forward,
    direct_forward_s1,
    direct_input_grad,
    direct_weight_grad,
    direct_weight_grad_s1,
    pad_planes,
)
from .conv_epilogue import (
    HAS_BIAS,
    HAS_RES,
    HAS_SCALE,
    NO_ACT,
    Epilogue,
    unpack_epilogue,
    unpack_pixel_major,
)
from .conv_select import cached, choose, heuristic
from .elementwise import COPY, run_unary
from .gemm import gemm
from .gemm import supported as gemm_supported
from .shape import fill

__all__ = ["choose_conv_algorithm", "conv2d_forward", "Epilogue", "HAS_BIAS", "HAS_SCALE", "HAS_RES", "NO_ACT"]

# --- algorithm choice (see conv_select: candidates per role, heuristic, measured choice cached per shape) ------
def _shape(s: Any) -> tuple[int, ...]:
    return tuple(getattr(s, "shape", s))


def out_hw(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any]) -> tuple[int, int]:
    (_, _, h, w), (_, _, kh, kw) = x_shape, w_shape
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    return (h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1


def choose_conv_algorithm(x_spec: Any, w_spec: Any, attrs: dict[str, Any]) -> str:
    """The heuristic algorithm family of a conv2d layer: ``"direct"``, ``"gemm_1x1"``, ``"gemm-tables"``,
    ``"winograd"`` or ``"im2col"`` (no measurement; see :mod:`.conv_select` for the measured per-shape choice the
    kernels use by default)."""
    algo = heuristic("forward", _shape(x_spec), _shape(w_spec), attrs, getattr(x_spec, "dtype", np.float32))
    return algo if algo.startswith("gemm-") else algo.split("-")[0]


SMALL_PLANE = 256  # output planes below this many pixels use im2col_planes

# --- shared pieces -------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _col_row(dst, plane, ih, lo, hi, s0, sw):
    """One output row of an im2col row: dst[z] = plane[ih, s0 + (z - lo)*sw] for z in [lo, hi), 0 elsewhere and
    everywhere when row ``ih`` is padding. Explicit loops: slice assignment cost more than these short rows."""
    if ih < 0 or ih >= plane.shape[0]:
        for z in range(dst.shape[0]):
            dst[z] = 0
        return
    for z in range(lo):
        dst[z] = 0
    for z in range(hi, dst.shape[0]):
        dst[z] = 0
    seg = dst[lo:hi]
    if sw == 1:
        src = plane[ih, s0:s0 + hi - lo]
        for k in range(hi - lo):
            seg[k] = src[k]
    else:
        src = plane[ih]
        for k in range(hi - lo):
            seg[k] = src[s0 + k * sw]


@njit(parallel=True, cache=True)
def im2col(x, cols, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """cols[(c*kh + i)*kw + j, n*Ho*Wo + y*Wo + z] = x[n, c, y*sh + i*dh - pt, z*sw + j*dw - pl] (0 outside), one
    thread per (row of cols, image): each writes one contiguous stretch (best for large planes)."""
    nn, nc, h, w = x.shape
    npix = oh * ow
    for t in prange(nc * kh * kw * nn):
        ck, n = t // nn, t % nn
        c, i, j = ck // (kh * kw), (ck // kw) % kh, ck % kw
        lo, hi = _valid(j * dw - pl, sw, w, ow)
        s0 = lo * sw + j * dw - pl
        crow = cols[ck, n * npix:(n + 1) * npix]
        for y in range(oh):
            _col_row(crow[y * ow:(y + 1) * ow], x[n, c], y * sh + i * dh - pt, lo, hi, s0, sw)


@njit(parallel=True, cache=True)
def im2col_planes(x, cols, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """:func:`im2col` with one thread per input plane (n, c) writing its kh*kw rows: for small planes the
    per-thread setup of :func:`im2col` dominates (LeNet conv2, 12x12 -> 8x8, batch 64: 1.58 -> 1.16 ms; 7x7x512
    batch 8: 1.94 -> 1.38 ms), for large ones its one-stretch-per-thread order writes better (56x56: 2.5 vs 2.9)."""
    nn, nc, h, w = x.shape
    npix = oh * ow
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for i in range(kh):
            for j in range(kw):
                lo, hi = _valid(j * dw - pl, sw, w, ow)
                s0 = lo * sw + j * dw - pl
                crow = cols[(c * kh + i) * kw + j, n * npix:(n + 1) * npix]
                for y in range(oh):
                    _col_row(crow[y * ow:(y + 1) * ow], x[n, c], y * sh + i * dh - pt, lo, hi, s0, sw)


@njit(parallel=True, cache=True)
def col2im(cols, gx, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """The transpose of :func:`im2col`: gx[n, c] = sum of the columns that read it (one thread per plane). Plain
    2-D indexing per output row: a row view and a helper call per row cost more than the adds on short rows
    (LeNet conv2 1.13 -> 0.94 ms, 3x3/2 32x32x64 b32 5.78 -> 2.00, 7x7x512 b8 1.30 -> 0.95)."""
    nn, nc, h, w = gx.shape
    npix = oh * ow
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        g = gx[n, c]
        g[:, :] = 0
        for i in range(kh):
            for j in range(kw):
                crow = cols[(c * kh + i) * kw + j]
                lo, hi = _valid(j * dw - pl, sw, w, ow)
                s0 = lo * sw + j * dw - pl
                for y in range(oh):
                    ih = y * sh + i * dh - pt
                    if ih < 0 or ih >= h:
                        continue
                    b = n * npix + y * ow + lo
                    if sw == 1:
                        for k in range(hi - lo):
                            g[ih, s0 + k] += crow[b + k]
                    else:
                        for k in range(hi - lo):
                            g[ih, s0 + k * sw] += crow[b + k]


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


# What the "cols" workspace holds: [x, geometry] of the last im2col, so a weight gradient right after its layer's
# forward (the last conv layer of a training step: nothing else ran im2col in between) reuses the matrix instead of
# recomputing it. Holding x keeps its id from being reused; like every autograd engine this assumes x is not
# modified in place between the forward and the backward. A forward never reuses it: the same buffer may hold new
# data by then (a compiled graph's arena, a caller's reused input array).
_COLS_OF: list = [None, None]


def _table_geom(stride, dilation) -> tuple[int, int, int, int]:
    return stride[0], stride[1], dilation[0], dilation[1]


def _pointwise(kernel, stride, out_hw: tuple[int, int], in_hw: tuple[int, int]) -> bool:
    """A 1x1 kernel at stride 1 without padding: its im2col matrix is x re-laid out channels-first."""
    return tuple(kernel[-2:]) == (1, 1) and tuple(stride) == (1, 1) and tuple(out_hw) == tuple(in_hw)


def _im2col(x: np.ndarray, kernel, oh: int, ow: int, stride, padding, dilation, reuse: bool = False) -> np.ndarray:
    """The (C*kh*kw, N*Ho*Wo) im2col matrix in scratch memory; for a 1x1 kernel without padding it is just the
    channels-first pack (N, C, P) -> (C, N*P) (subsampled when strided): no kh*kw expansion. ``reuse``: return the
    workspace as is when it already holds this x's matrix (weight gradients only, see ``_COLS_OF``)."""
    kh, kw = kernel
    n, c, h, w = x.shape
    cols = scratch("cols", (c * kh * kw, n * oh * ow), x.dtype)
    geometry = (x.shape, x.dtype, tuple(kernel), oh, ow, stride, padding, dilation)
    if reuse and _COLS_OF[0] is x and _COLS_OF[1] == geometry:
        return cols
    _COLS_OF[:] = [x, geometry]
    x = np.ascontiguousarray(x)
    if _pointwise(kernel, stride, (oh, ow), (h, w)):
        pack_channels_first(x.reshape(n, c, h * w), cols)
    else:
        (im2col_planes if oh * ow < SMALL_PLANE else im2col)(x, cols, kh, kw, *_geom(stride, padding, dilation), oh, ow)
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


def _attrs(stride, padding, dilation, groups) -> dict[str, Any]:
    return {"stride": tuple(stride), "padding": tuple(tuple(p) for p in padding), "dilation": tuple(dilation),
            "groups": groups}


def _unshared(run):
    """A measurement run that recomputes its im2col matrix: repeated runs on one x would otherwise reuse it (see
    ``_COLS_OF``) and time im2col algorithms without their im2col."""
    def fresh(algo: str) -> None:
        _COLS_OF[:] = [None, None]
        run(algo)

    return fresh


def _select(role: str, x_shape, w_shape, attrs: dict[str, Any], dtype, run, algorithm: str | None) -> str:
    if algorithm is not None:
        return algorithm
    return choose(role, x_shape, w_shape, attrs, dtype, run).algorithm


def conv2d_forward(x: np.ndarray, w: np.ndarray, out: np.ndarray, ep: Epilogue, stride, padding, dilation,
                   groups: int, algorithm: str | None = None) -> None:
    """out = epilogue(conv2d(x, w)); the driver behind conv2d and fused_conv2d. ``algorithm``: one of
    :func:`.conv_select.candidates` (``"im2col"`` = the heuristic GEMM orientation); None: the selected one."""
    if out.size == 0:
        return
    attrs = _attrs(stride, padding, dilation, groups)
    algo = _select("forward", x.shape, w.shape, attrs, out.dtype,
                   _unshared(lambda a: _forward(a, x, w, np.empty_like(out), ep, attrs)), algorithm)
    _forward(algo, x, w, out, ep, attrs)


def _forward(algo: str, x: np.ndarray, w: np.ndarray, out: np.ndarray, ep: Epilogue, attrs: dict[str, Any]) -> None:
    stride, padding, dilation, groups = attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"]
    n, o, oh, ow = out.shape
    if algo == "direct" and stride == (1, 1):
        sh, sw, pt, pl, dh, dw = _geom(stride, padding, dilation)
        kh, kw = w.shape[2:]
        wp = ow + (kw - 1) * dw
        xp = scratch("xpad", (n, x.shape[1], (oh + (kh - 1) * dh) * wp + (kw - 1) * dw), out.dtype)
        pad_planes(np.ascontiguousarray(x), xp, pt, pl, wp)
        direct_forward_s1(xp, np.ascontiguousarray(w), out, scratch("acc", (n * o, oh * wp), out.dtype), wp, dh, dw,
                          groups, ep.flags, ep.bias, ep.scale, ep.res3((n, o, oh * ow)), ep.act, ep.alpha)
    elif algo == "direct":
        direct_forward(np.ascontiguousarray(x), np.ascontiguousarray(w), out, *_geom(stride, padding, dilation),
                       groups, ep.flags, ep.bias, ep.scale, ep.res3((n, o, oh * ow)), ep.act, ep.alpha)
    elif algo == "gemm-tables" and gemm_supported(x, w, out):  # implicit GEMM over offset tables, no im2col
        conv_tables.forward(x, w, out, ep, _table_geom(stride, dilation), padding, scratch,
                            _derived(w, "tables", conv_tables.weight_panels))
    elif algo == "gemm_1x1-nchw":  # per-image GEMMs straight into NCHW: out[n] = W (O, C) @ x[n] (C, H*W)
        np.matmul(np.ascontiguousarray(w).reshape(o, -1), np.ascontiguousarray(x).reshape(n, -1, oh * ow),
                  out=out.reshape(n, o, oh * ow))
        ep.apply_inplace(out.reshape(n, o, oh * ow))
    elif algo.startswith("winograd"):  # winograd-f2 / winograd-f4: the output tile size
        from .conv_winograd import winograd_forward

        m = int(algo[-1])
        winograd_forward(x, w, out, ep, padding, u=_winograd_weights(w, m), m=m)
    else:  # im2col[-pixel|-channel] and gemm_1x1 (whose "cols" is the channels-first pack of x)
        cols = _im2col(x, w.shape[2:], oh, ow, stride, padding, dilation)
        ck, npix = cols.shape
        w2 = np.ascontiguousarray(w).reshape(o, -1)
        res3 = ep.res3((n, o, oh * ow))
        pixel = algo == "im2col-pixel" or (algo in ("im2col", "gemm_1x1") and gemm_pixel_major(ck, npix, o))
        if pixel:
            y2 = scratch("y2", (npix, o), out.dtype)
            np.matmul(cols.T, w2.T, out=y2)  # (N*P, C*kh*kw) @ (C*kh*kw, O)
            unpack_pixel_major(y2, out.reshape(n, o, oh * ow), ep.flags, ep.bias, ep.scale, res3, ep.act, ep.alpha)
        elif gemm_supported(w2, cols, out):  # W @ cols straight into NCHW, the epilogue per block in cache
            gemm(w2[None], ck, cols[None], npix, out.reshape(n, o, oh * ow), oh * ow, o, npix, ck, ep=ep)
        else:
            yt = scratch("yt", (o, npix), out.dtype)
            np.matmul(w2, cols, out=yt)  # (O, C*kh*kw) @ (C*kh*kw, N*P)
            unpack_epilogue(yt, out.reshape(n, o, oh * ow), ep.flags, ep.bias, ep.scale, res3, ep.act, ep.alpha)


# Derived forms of immutable weights (read-only arrays that own their data: the BN-folded weights of a compiled
# graph): Winograd-transformed kernels and gemm-tables' packed W^T panels (1.1 ms per call for a 512-channel 3x3
# layer), keyed by id(w) and the form; an entry dies with its weight array. Writable weights (eager mode, where
# the optimizer updates them in place) are transformed on every call.
_DERIVED: dict[tuple[int, str], np.ndarray] = {}


def _derived(w: np.ndarray, form: str, make) -> np.ndarray | None:
    if w.flags.writeable or w.base is not None:
        return None
    key = (id(w), form)
    d = _DERIVED.get(key)
    if d is None:
        d = _DERIVED[key] = make(w)
        weakref.finalize(w, _DERIVED.pop, key, None)
    return d


def _winograd_weights(w: np.ndarray, m: int) -> np.ndarray | None:
    from .conv_winograd import winograd_weights

    return _derived(w, f"winograd-f{m}", lambda w: winograd_weights(w, m))


@backend.register("conv2d")
def conv2d(x: np.ndarray, w: np.ndarray, *b: np.ndarray, out: np.ndarray, stride, padding, dilation,
           groups: int) -> None:
    conv2d_forward(x, w, out, Epilogue(out.dtype, bias=b[0] if b else None), stride, padding, dilation, groups)


@backend.register("conv2d_input_grad")
def conv2d_input_grad(gy: np.ndarray, w: np.ndarray, out: np.ndarray, input_shape, stride, padding, dilation,
                      groups: int, algorithm: str | None = None) -> None:
    if out.size == 0:
        return
    if gy.size == 0:
        fill(out, 0)
        return
    attrs = _attrs(stride, padding, dilation, groups)
    gy = np.ascontiguousarray(gy)
    algo = _select("input_grad", tuple(input_shape), w.shape, attrs, out.dtype,
                   _unshared(lambda a: _input_grad(a, gy, w, np.empty_like(out), attrs)), algorithm)
    _input_grad(algo, gy, w, out, attrs)


def _input_grad(algo: str, gy: np.ndarray, w: np.ndarray, out: np.ndarray, attrs: dict[str, Any]) -> None:
    stride, padding, dilation, groups = attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"]
    n, c, h, wd = out.shape
    _, o, oh, ow = gy.shape
    if algo == "direct":
        direct_input_grad(gy, np.ascontiguousarray(w), out, *_geom(stride, padding, dilation), groups)
    elif algo == "gemm-tables" and gemm_supported(gy, w, out):  # per image, tiles scatter-added into gx
        conv_tables.input_grad(gy, w, out, _table_geom(stride, dilation), padding, scratch)
    elif algo == "gemm_1x1-nchw":  # gx[n] = W^T (C, O) @ gy[n] (O, H*W)
        np.matmul(np.ascontiguousarray(w).reshape(o, c).T, gy.reshape(n, o, oh * ow), out=out.reshape(n, c, h * wd))
    elif algo.startswith("winograd"):
        from .conv_winograd import winograd_input_grad

        winograd_input_grad(gy, w, out, padding, m=int(algo[-1]))
    else:  # im2col and gemm_1x1: gcols (C*kh*kw, N*P) = W^T @ gy, then col2im (1x1: just back to NCHW)
        kh, kw = w.shape[2:]
        wt = np.ascontiguousarray(w).reshape(o, -1).T  # (C*kh*kw, O)
        fast = gemm_supported(gy, w, out)  # the numba GEMM reads gy in NCHW (no packing) and W^T in place
        pointwise = _pointwise(w.shape, stride, (oh, ow), (h, wd))
        if fast and pointwise:  # gx (C, N*P) = W^T @ gy written straight into NCHW
            gemm(wt[None], o, gy.reshape(n, o, oh * ow), oh * ow, out.reshape(n, c, h * wd), h * wd, c, n * oh * ow, o)
            return
        gcols = scratch("cols", (c * kh * kw, n * oh * ow), gy.dtype)
        _COLS_OF[:] = [None, None]  # overwritten below
        if fast:
            gemm(wt[None], o, gy.reshape(n, o, oh * ow), oh * ow, gcols[None], n * oh * ow, c * kh * kw,
                 n * oh * ow, o)
        else:
            np.matmul(wt, _pack_gy(gy), out=gcols)
        if pointwise:  # (C, N*P) -> (N, C, P)
            ep = Epilogue(out.dtype)  # empty: unpack only
            unpack_epilogue(gcols, out.reshape(n, c, h * wd), 0, ep.bias, ep.scale, ep.res3((n, c, h * wd)),
                            NO_ACT, 0.0)
        else:
            col2im(gcols, out, kh, kw, *_geom(stride, padding, dilation), oh, ow)


@backend.register("conv2d_weight_grad")
def conv2d_weight_grad(x: np.ndarray, gy: np.ndarray, out: np.ndarray, weight_shape, stride, padding, dilation,
                       groups: int, algorithm: str | None = None) -> None:
    if out.size == 0:
        return
    if gy.size == 0:
        fill(out, 0)
        return
    attrs = _attrs(stride, padding, dilation, groups)
    gy = np.ascontiguousarray(gy)
    algo = _select("weight_grad", x.shape, tuple(weight_shape), attrs, out.dtype,
                   _unshared(lambda a: _weight_grad(a, x, gy, np.empty_like(out), attrs)), algorithm)
    _weight_grad(algo, x, gy, out, attrs)


def _weight_grad(algo: str, x: np.ndarray, gy: np.ndarray, out: np.ndarray, attrs: dict[str, Any]) -> None:
    stride, padding, dilation, groups = attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"]
    n, o, oh, ow = gy.shape
    if algo == "direct" and stride == (1, 1):
        sh, sw, pt, pl, dh, dw = _geom(stride, padding, dilation)
        direct_weight_grad_s1(np.ascontiguousarray(x), gy, out, pt, pl, dh, dw, groups)
    elif algo == "direct":
        direct_weight_grad(np.ascontiguousarray(x), gy, out, *_geom(stride, padding, dilation), groups)
    elif algo == "gemm-tables" and gemm_supported(x, gy, out):
        conv_tables.weight_grad(x, gy, out, _table_geom(stride, dilation), padding, scratch)
    elif algo == "gemm_1x1-nchw":  # gW = sum over n of gy[n] (O, H*W) @ x[n]^T (H*W, C): long-K GEMMs per image
        x3 = np.ascontiguousarray(x).reshape(n, -1, oh * ow)
        per_image = scratch("gw_images", (n, o, x3.shape[1]), out.dtype)
        np.matmul(gy.reshape(n, o, oh * ow), x3.transpose(0, 2, 1), out=per_image)
        np.sum(per_image, axis=0, out=out.reshape(o, -1))
    elif algo.startswith("winograd"):  # winograd-f2 / winograd-f4: the output tile size
        from .conv_winograd import winograd_weight_grad

        winograd_weight_grad(x, gy, out, padding, m=int(algo[-1]))
    else:  # im2col and gemm_1x1 (for 1x1, im2col is the channels-first pack): one GEMM over the batch
        cols = _im2col(x, out.shape[2:], oh, ow, stride, padding, dilation, reuse=True)
        # gW (O, C*kh*kw) = gy (O, N*P; read in NCHW) @ cols^T with the numba GEMM only for wide outputs: its
        # threads split the output, not K, so a few output blocks with K = N*P each lose to BLAS (ms, ours vs BLAS
        # path: 3x3/2 at b32 512x256 5.6 vs 8.2, 256x128 6.8 vs 7.1, 128x64 10.5 vs 8.4; LeNet conv2 2.9 vs 2.2)
        if o >= 256 and gemm_supported(cols, gy, out):
            ck, npix = cols.shape
            gemm(gy.reshape(n, o, oh * ow), oh * ow, cols.T[None], ck, out.reshape(1, o, ck), ck, o, ck, npix)
            return
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
def _note(role: str, specs, x_shape, w_shape, attrs: dict[str, Any], run_role) -> str:
    """The selected algorithm and how it was chosen. Under the "measure" policy this measures now, on random
    data of the node's shapes, so the compile report shows the winner and every candidate's time."""
    attrs = _attrs(attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"])
    dtype = np.dtype(getattr(specs[0], "dtype", np.float32))
    hit = cached(role, x_shape, w_shape, attrs, dtype)
    if hit is None:
        rng = np.random.default_rng(0)
        arrays = [rng.standard_normal(_shape(s)).astype(dtype) for s in specs[:2]]
        if role == "forward":  # a compiled graph's (BN-folded) weights are read-only: Winograd reuses their transform
            arrays[1].setflags(write=False)
        hit = choose(role, x_shape, w_shape, attrs, dtype, _unshared(lambda a: run_role(a, *arrays, attrs)))
    return hit.describe()


def _forward_note(x_shape, w_shape, attrs, dtype=np.float32) -> str:
    def run(a, x, w, at):
        n, o = x.shape[0], w.shape[0]
        _forward(a, x, w, np.empty((n, o, *out_hw(x.shape, w.shape, at)), x.dtype), Epilogue(x.dtype), at)

    return _note("forward", [_Spec(x_shape, dtype), _Spec(w_shape, dtype)], x_shape, w_shape, attrs, run)


class _Spec:
    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)


def _input_grad_note(specs, input_shape, **attrs) -> str:
    return _note("input_grad", specs, tuple(input_shape), _shape(specs[1]), attrs,
                 lambda a, gy, w, at: _input_grad(a, gy, w, np.empty(tuple(input_shape), gy.dtype), at))


def _weight_grad_note(specs, weight_shape, **attrs) -> str:
    return _note("weight_grad", specs, _shape(specs[0]), tuple(weight_shape), attrs,
                 lambda a, x, gy, at: _weight_grad(a, x, gy, np.empty(tuple(weight_shape), x.dtype), at))


conv2d.algorithm = lambda specs, **attrs: _forward_note(_shape(specs[0]), _shape(specs[1]), attrs,
                                                        getattr(specs[0], "dtype", np.float32))
conv2d_input_grad.algorithm = _input_grad_note
conv2d_weight_grad.algorithm = _weight_grad_note
