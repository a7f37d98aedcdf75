"""The numba kernels of conv2d, conv2d_input_grad and conv2d_weight_grad: each picks an algorithm per call
(:mod:`.select`) and dispatches to it; the package docstring (:mod:`backends.numba.conv`) describes them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from .._layout import nothing
from ..elementwise import COPY, run_unary
from ..gemm import gemm
from ..gemm import supported as gemm_supported
from ..shape import fill
from ..table import backend
from . import planes, tables
from .direct import (
    direct_forward,
    direct_forward_s1,
    direct_input_grad,
    direct_weight_grad,
    direct_weight_grad_s1,
    pad_planes,
)
from .epilogue import NO_ACT, Epilogue, epilogue_keeps_references, unpack_epilogue, unpack_pixel_major
from .geometry import conv_attrs, geom, is_pointwise, table_geom
from .im2col import col2im, im2col_matrix, pack_gy
from .nchwc import ALGORITHMS as NCHWC
from .nchwc import conv3x3 as nchwc_conv3x3
from .nchwc import input_grad3x3 as nchwc_input_grad3x3
from .nchwc import supported as nchwc_supported
from .nchwc_wgrad import weight_grad_nchw as nchwc_weight_grad
from .select import choose, gemm_pixel_major
from .winograd import u_panels, winograd_forward, winograd_input_grad, winograd_weight_grad, winograd_weights
from .workspace import current_workspace, derived, scratch


def _select(role: str, x_shape, w_shape, attrs: dict[str, Any], dtype, run, algorithm: str | None) -> str:
    if algorithm is not None:
        return algorithm
    return choose(role, x_shape, w_shape, attrs, dtype, run).algorithm


def conv2d_forward(x: np.ndarray, w: np.ndarray, out: np.ndarray, ep: Epilogue, stride, padding, dilation,
                   groups: int, algorithm: str | None = None) -> None:
    """out = epilogue(conv2d(x, w)); the driver behind conv2d and fused_conv2d. ``algorithm``: one of
    :func:`.select.candidates` (``"im2col"`` = the heuristic GEMM orientation); None: the selected one."""
    forward_call(x, w, out, ep, stride, padding, dilation, groups, algorithm)()


def forward_call(x: np.ndarray, w: np.ndarray, out: np.ndarray, ep: Epilogue, stride, padding, dilation,
                 groups: int, algorithm: str | None = None) -> Callable[[], None]:
    """:func:`conv2d_forward` as a call on these arrays, its attrs and algorithm chosen once (what the conv
    kernels' ``specialize`` returns; an executor's arena keeps the arrays, and the choice depends on shapes only)."""
    if out.size == 0:
        return nothing
    attrs = conv_attrs(stride, padding, dilation, groups)
    algo = _select("forward", x.shape, w.shape, attrs, out.dtype,
                   lambda a: run_forward(a, x, w, np.empty_like(out), ep, attrs), algorithm)
    return functools.partial(run_forward, algo, x, w, out, ep, attrs)


def run_forward(algo: str, x: np.ndarray, w: np.ndarray, out: np.ndarray, ep: Epilogue, attrs: dict[str, Any]
                ) -> None:
    stride, padding, dilation, groups = attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"]
    n, o, oh, ow = out.shape
    if algo == "direct" and stride == (1, 1):
        sh, sw, pt, pl, dh, dw = geom(stride, padding, dilation)
        kh, kw = w.shape[2:]
        wp = ow + (kw - 1) * dw
        xp = scratch("xpad", (n, x.shape[1], (oh + (kh - 1) * dh) * wp + (kw - 1) * dw), out.dtype)
        pad_planes(np.ascontiguousarray(x), xp, pt, pl, wp)
        direct_forward_s1(xp, np.ascontiguousarray(w), out, scratch("acc", (n * o, oh * wp), out.dtype), wp, dh, dw,
                          groups, ep.flags, ep.bias, ep.scale, ep.res3((n, o, oh * ow)), ep.act, ep.alpha)
    elif algo == "direct":
        direct_forward(np.ascontiguousarray(x), np.ascontiguousarray(w), out, *geom(stride, padding, dilation),
                       groups, ep.flags, ep.bias, ep.scale, ep.res3((n, o, oh * ow)), ep.act, ep.alpha)
    elif algo == "gemm-planes" and gemm_supported(x, w, out) and stride == (1, 1) and groups == 1:
        planes.forward(x, w, out, ep, dilation, padding, current_workspace())  # channel-major on padded planes
    elif algo == "gemm-tables" and gemm_supported(x, w, out):  # implicit GEMM over offset tables, no im2col
        tables.forward(x, w, out, ep, table_geom(stride, dilation), padding, current_workspace(),
                       derived(w, "tables", tables.weight_panels))
    elif algo == "gemm_1x1-nchw":  # per-image GEMMs straight into NCHW: out[n] = W (O, C) @ x[n] (C, H*W)
        np.matmul(np.ascontiguousarray(w).reshape(o, -1), np.ascontiguousarray(x).reshape(n, -1, oh * ow),
                  out=out.reshape(n, o, oh * ow))
        ep.apply_inplace(out.reshape(n, o, oh * ow))
    elif algo in NCHWC and nchwc_supported(x, w, out):  # the blocked Winograd kernel between two reorders
        nchwc_conv3x3(x, w, out, ep, padding, NCHWC[algo])
    elif algo.startswith("winograd") or algo in NCHWC:  # winograd-f2 / winograd-f4: the output tile size
        m = int(algo[-1])
        nr = u_panels(out.shape, m, out.dtype)
        winograd_forward(x, w, out, ep, padding, u=derived(w, f"{algo}/{nr}", lambda w: winograd_weights(w, m, nr=nr)),
                         m=m)
    else:  # im2col[-pixel|-channel] and gemm_1x1 (whose "cols" is the channels-first pack of x)
        cols = im2col_matrix(x, w.shape[2:], oh, ow, stride, padding, dilation)
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


@backend.register("conv2d")
def conv2d(x: np.ndarray, w: np.ndarray, *b: np.ndarray, out: np.ndarray, stride, padding, dilation,
           groups: int) -> None:
    conv2d_forward(x, w, out, Epilogue(out.dtype, bias=b[0] if b else None), stride, padding, dilation, groups)


def _specialize_conv2d(x: np.ndarray, w: np.ndarray, *b: np.ndarray, out: np.ndarray, stride, padding, dilation,
                       groups: int) -> Callable[[], None] | None:
    if not epilogue_keeps_references(out.dtype, *b):
        return None
    return forward_call(x, w, out, Epilogue(out.dtype, bias=b[0] if b else None), stride, padding, dilation, groups)


conv2d.specialize = _specialize_conv2d


@backend.register("conv2d_input_grad")
def conv2d_input_grad(gy: np.ndarray, w: np.ndarray, out: np.ndarray, input_shape, stride, padding, dilation,
                      groups: int, algorithm: str | None = None) -> None:
    _gradient_call("input_grad", run_input_grad, gy, w, out, tuple(input_shape), w.shape,
                   conv_attrs(stride, padding, dilation, groups), algorithm)()


def _gradient_call(role: str, run, a: np.ndarray, b: np.ndarray, out: np.ndarray, x_shape, w_shape,
                   attrs: dict[str, Any], algorithm: str | None) -> Callable[[], None]:
    """Both gradient kernels as a call, ``run(algo, a, b, out, attrs)`` with (a, b) = (gy, w) or (x, gy): nothing
    for an empty output, zeros for an empty gy, else the selected algorithm on a contiguous gy."""
    if out.size == 0:
        return nothing
    gy = np.ascontiguousarray(a if role == "input_grad" else b)
    if gy.size == 0:
        return functools.partial(fill, out, 0)
    a, b = (gy, b) if role == "input_grad" else (a, gy)
    algo = _select(role, x_shape, w_shape, attrs, out.dtype, lambda al: run(al, a, b, np.empty_like(out), attrs),
                   algorithm)
    return functools.partial(run, algo, a, b, out, attrs)


def _specialize_gradient(role: str, run, a: np.ndarray, b: np.ndarray, out: np.ndarray, x_shape, w_shape,
                         stride, padding, dilation, groups: int, algorithm: str | None) -> Callable[[], None] | None:
    """A compiled graph's gradient node: the algorithm chosen once per binding (the choice depends on shapes
    only). Not for a strided gy, whose contiguous copy would be made once and then go stale."""
    gy = a if role == "input_grad" else b
    if not gy.flags.c_contiguous:
        return None
    return _gradient_call(role, run, a, b, out, x_shape, w_shape, conv_attrs(stride, padding, dilation, groups),
                          algorithm)


conv2d_input_grad.specialize = lambda gy, w, out, input_shape, stride, padding, dilation, groups, algorithm=None: (
    _specialize_gradient("input_grad", run_input_grad, gy, w, out, tuple(input_shape), w.shape, stride, padding,
                         dilation, groups, algorithm))


def run_input_grad(algo: str, gy: np.ndarray, w: np.ndarray, out: np.ndarray, attrs: dict[str, Any]) -> None:
    stride, padding, dilation, groups = attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"]
    n, c, h, wd = out.shape
    _, o, oh, ow = gy.shape
    if algo == "direct":
        direct_input_grad(gy, np.ascontiguousarray(w), out, *geom(stride, padding, dilation), groups)
    elif algo == "gemm-tables" and gemm_supported(gy, w, out):  # per image, tiles scatter-added into gx
        tables.input_grad(gy, w, out, table_geom(stride, dilation), padding, current_workspace())
    elif algo == "gemm_1x1-nchw":  # gx[n] = W^T (C, O) @ gy[n] (O, H*W)
        np.matmul(np.ascontiguousarray(w).reshape(o, c).T, gy.reshape(n, o, oh * ow), out=out.reshape(n, c, h * wd))
    elif algo in NCHWC and nchwc_supported(gy, w, out):
        nchwc_input_grad3x3(gy, w, out, padding, NCHWC[algo])
    elif algo.startswith("winograd") or algo in NCHWC:
        winograd_input_grad(gy, w, out, padding, m=int(algo[-1]))
    else:  # im2col and gemm_1x1: gcols (C*kh*kw, N*P) = W^T @ gy, then col2im (1x1: just back to NCHW)
        kh, kw = w.shape[2:]
        wt = np.ascontiguousarray(w).reshape(o, -1).T  # (C*kh*kw, O)
        fast = gemm_supported(gy, w, out)  # the numba GEMM reads gy in NCHW (no packing) and W^T in place
        pointwise = is_pointwise(w.shape, stride, (oh, ow), (h, wd))
        if fast and pointwise:  # gx (C, N*P) = W^T @ gy written straight into NCHW
            gemm(wt[None], o, gy.reshape(n, o, oh * ow), oh * ow, out.reshape(n, c, h * wd), h * wd, c, n * oh * ow, o)
            return
        gcols = scratch("cols", (c * kh * kw, n * oh * ow), gy.dtype)
        if fast:
            gemm(wt[None], o, gy.reshape(n, o, oh * ow), oh * ow, gcols[None], n * oh * ow, c * kh * kw,
                 n * oh * ow, o)
        else:
            np.matmul(wt, pack_gy(gy), out=gcols)
        if pointwise:  # (C, N*P) -> (N, C, P)
            ep = Epilogue(out.dtype)  # empty: unpack only
            unpack_epilogue(gcols, out.reshape(n, c, h * wd), 0, ep.bias, ep.scale, ep.res3((n, c, h * wd)),
                            NO_ACT, 0.0)
        else:
            col2im(gcols, out, kh, kw, *geom(stride, padding, dilation), oh, ow)


@backend.register("conv2d_weight_grad")
def conv2d_weight_grad(x: np.ndarray, gy: np.ndarray, out: np.ndarray, weight_shape, stride, padding, dilation,
                       groups: int, algorithm: str | None = None) -> None:
    _gradient_call("weight_grad", run_weight_grad, x, gy, out, x.shape, tuple(weight_shape),
                   conv_attrs(stride, padding, dilation, groups), algorithm)()


conv2d_weight_grad.specialize = lambda x, gy, out, weight_shape, stride, padding, dilation, groups, algorithm=None: (
    _specialize_gradient("weight_grad", run_weight_grad, x, gy, out, x.shape, tuple(weight_shape), stride, padding,
                         dilation, groups, algorithm))


def run_weight_grad(algo: str, x: np.ndarray, gy: np.ndarray, out: np.ndarray, attrs: dict[str, Any]) -> None:
    stride, padding, dilation, groups = attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"]
    n, o, oh, ow = gy.shape
    if algo == "direct" and stride == (1, 1):
        sh, sw, pt, pl, dh, dw = geom(stride, padding, dilation)
        direct_weight_grad_s1(np.ascontiguousarray(x), gy, out, pt, pl, dh, dw, groups)
    elif algo == "direct":
        direct_weight_grad(np.ascontiguousarray(x), gy, out, *geom(stride, padding, dilation), groups)
    elif algo == "gemm-tables" and gemm_supported(x, gy, out):
        tables.weight_grad(x, gy, out, table_geom(stride, dilation), padding, current_workspace())
    elif algo == "gemm_1x1-nchw":  # gW = sum over n of gy[n] (O, H*W) @ x[n]^T (H*W, C): long-K GEMMs per image
        x3 = np.ascontiguousarray(x).reshape(n, -1, oh * ow)
        per_image = scratch("gw_images", (n, o, x3.shape[1]), out.dtype)
        np.matmul(gy.reshape(n, o, oh * ow), x3.transpose(0, 2, 1), out=per_image)
        np.sum(per_image, axis=0, out=out.reshape(o, -1))
    elif algo in NCHWC and nchwc_supported(x, gy, out):  # blocked transforms, GEMMs on in-place panels (.nchwc_wgrad)
        nchwc_weight_grad(x, gy, out, padding, NCHWC[algo])
    elif algo.startswith("winograd") or algo in NCHWC:  # winograd-f2 / winograd-f4: the output tile size
        winograd_weight_grad(x, gy, out, padding, m=int(algo[-1]))
    else:  # im2col and gemm_1x1 (for 1x1, im2col is the channels-first pack): one GEMM over the batch
        cols = im2col_matrix(x, out.shape[2:], oh, ow, stride, padding, dilation)
        # gW (O, C*kh*kw) = gy (O, N*P; read in NCHW) @ cols^T with the numba GEMM only for wide outputs: its
        # threads split the output, not K, so a few output blocks with K = N*P each lose to BLAS (ms, ours vs BLAS
        # path: 3x3/2 at b32 512x256 5.6 vs 8.2, 256x128 6.8 vs 7.1, 128x64 10.5 vs 8.4; LeNet conv2 2.9 vs 2.2)
        if o >= 256 and gemm_supported(cols, gy, out):
            ck, npix = cols.shape
            gemm(gy.reshape(n, o, oh * ow), oh * ow, cols.T[None], ck, out.reshape(1, o, ck), ck, o, ck, npix)
            return
        gyt = pack_gy(gy)
        # One GEMM with K = N*P. BLAS (OpenBLAS here) runs these long-K products several times faster when the
        # larger of (C*kh*kw, O) is the output's row count (measured 52 vs 245 ms for 3x3 64->64 at 56x56 b8, and
        # 43 vs 178 ms for 1x1 64->256), so pick the orientation by shape.
        if cols.shape[0] >= o:
            gwt = scratch("gwt", (cols.shape[0], o), gy.dtype)
            np.matmul(cols, gyt.T, out=gwt)
            run_unary(COPY, gwt.T, out.reshape(o, -1))
        else:
            np.matmul(gyt, cols.T, out=out.reshape(o, -1))
