"""The registered cuda conv kernels: pick an algorithm per layer and role (:mod:`.select`), then launch it.
Launches are asynchronous; nothing here copies to or from the host."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from engine.ops.fused import split_inputs

from ..epilogue import HAS_RES, Epilogue
from ..table import backend
from ..tiling import launch, scratch, tiles
from . import select
from .direct import MAX_BLOCKS, blocks_for, direct_forward_kernel, direct_input_grad_kernel, direct_weight_grad_kernel
from .igemm import conv_geo, conv_kernel, sum_splits
from .select import Choice, choose, gemm_dims, weight_grad_splits


def _planes(a):
    """(N, C, H*W) view of a contiguous NCHW device array."""
    n, c, h, w = a.shape
    return a.reshape(n, c, h * w)


def out_hw(x_shape, w_shape, attrs: dict[str, Any]) -> tuple[int, int]:
    (_, _, h, w), (_, _, kh, kw) = x_shape, w_shape
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    return (h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1


def _geo(x_shape, w_shape, attrs: dict[str, Any]) -> tuple[int, ...]:
    return conv_geo(x_shape, w_shape, out_hw(x_shape, w_shape, attrs), attrs["stride"], attrs["padding"],
                    attrs["dilation"], attrs["groups"])


def run_forward(algo: str, x, w, out, ep: Epilogue, attrs: dict[str, Any]) -> None:
    geo, dt = _geo(x.shape, w.shape, attrs), np.dtype(out.dtype)
    if algo == "direct":
        kernel = direct_forward_kernel(dt)
        threads = select.DIRECT_THREADS
        kernel[blocks_for(out.size, threads), threads](x, w, out, ep.bias, ep.res, geo, ep.flags, ep.act, ep.alpha)
        return
    tile = tiles(dt)[algo.removeprefix("igemm-")]
    m, n, k = gemm_dims("forward", x.shape, w.shape, out.shape[2:], attrs["groups"])
    res3 = _planes(ep.res) if ep.flags & HAS_RES else Epilogue.of(dt, res_ndim=3).res
    launch(conv_kernel("forward", tile, dt), tile, attrs["groups"], w.reshape(w.shape[0], k), x, _planes(out),
           ep.bias, res3, geo, m, n, k, 1, ep.flags, ep.act, ep.alpha)


def run_input_grad(algo: str, gy, w, out, attrs: dict[str, Any]) -> None:
    geo, dt = _geo(out.shape, w.shape, attrs), np.dtype(out.dtype)
    if algo == "direct":
        threads = select.DIRECT_THREADS
        direct_input_grad_kernel(dt)[blocks_for(out.size, threads), threads](gy, w, out, geo)
        return
    tile = tiles(dt)[algo.removeprefix("igemm-")]
    m, n, k = gemm_dims("input_grad", out.shape, w.shape, gy.shape[2:], attrs["groups"])
    w3 = w.reshape(w.shape[0], w.shape[1], w.shape[2] * w.shape[3])
    ep = Epilogue.of(dt, res_ndim=3)
    launch(conv_kernel("input_grad", tile, dt), tile, attrs["groups"], w3, gy, _planes(out), ep.bias, ep.res, geo,
           m, n, k)


def weight_grad_split(algo: str, x_shape, w_shape, gy_hw, groups: int, dtype: Any) -> int:
    """How many K slices the weight gradient of this layer adds (1 for the direct kernel)."""
    if algo == "direct":
        return 1
    m, n, k = gemm_dims("weight_grad", x_shape, w_shape, gy_hw, groups)
    return weight_grad_splits(tiles(dtype)[algo.removeprefix("igemm-")], m, n, k, groups)


def run_weight_grad(algo: str, x, gy, out, attrs: dict[str, Any]) -> None:
    geo, dt = _geo(x.shape, out.shape, attrs), np.dtype(out.dtype)
    if algo == "direct":
        n = out.shape[0] * out.shape[1] * out.shape[2] * out.shape[3]
        threads = select.REDUCE_THREADS
        direct_weight_grad_kernel(threads, dt)[min(n, MAX_BLOCKS), threads](x, gy, out, geo)
        return
    tile, groups = tiles(dt)[algo.removeprefix("igemm-")], attrs["groups"]
    m, n, k = gemm_dims("weight_grad", x.shape, out.shape, gy.shape[2:], groups)
    ksplit = weight_grad_splits(tile, m, n, k, groups)
    out2 = out.reshape(out.shape[0], n)
    dest = out2.reshape(1, out.shape[0], n) if ksplit == 1 else scratch((ksplit, out.shape[0], n), dt)
    ep = Epilogue.of(dt, res_ndim=3)
    launch(conv_kernel("weight_grad", tile, dt), tile, groups, _planes(gy), x, dest, ep.bias, ep.res, geo, m, n, k,
           ksplit)
    if ksplit > 1:
        sum_splits(dest, out2)


def conv_attrs(stride, padding, dilation, groups) -> dict[str, Any]:
    return {"stride": tuple(stride), "padding": tuple(tuple(p) for p in padding), "dilation": tuple(dilation),
            "groups": int(groups)}


def _scratch_run(run_role, shape, dtype):
    """``run(algorithm)`` for measuring: runs the role into one output allocated on first use (not per timed run)."""
    out: list = []

    def run(algorithm: str) -> None:
        if not out:
            out.append(cuda.device_array(tuple(shape), dtype))
        run_role(algorithm, out[0])

    return run


def forward_choice(x, w, attrs: dict[str, Any]) -> Choice:
    hw = out_hw(x.shape, w.shape, attrs)
    run = _scratch_run(lambda a, o: run_forward(a, x, w, o, Epilogue.of(x.dtype), attrs),
                       (x.shape[0], w.shape[0], *hw), x.dtype)
    return choose("forward", x.shape, w.shape, hw, attrs, x.dtype, run)


def input_grad_choice(gy, w, input_shape, attrs: dict[str, Any]) -> Choice:
    run = _scratch_run(lambda a, o: run_input_grad(a, gy, w, o, attrs), input_shape, gy.dtype)
    return choose("input_grad", tuple(input_shape), w.shape, gy.shape[2:], attrs, gy.dtype, run)


def weight_grad_choice(x, gy, weight_shape, attrs: dict[str, Any]) -> Choice:
    run = _scratch_run(lambda a, o: run_weight_grad(a, x, gy, o, attrs), weight_shape, x.dtype)
    return choose("weight_grad", x.shape, tuple(weight_shape), gy.shape[2:], attrs, x.dtype, run)


@backend.register("conv2d")
def conv2d(x, w, *b, out, stride, padding, dilation, groups: int) -> None:
    attrs = conv_attrs(stride, padding, dilation, groups)
    ep = Epilogue.of(out.dtype, b[0] if b else None)
    run_forward(forward_choice(x, w, attrs).algorithm, x, w, out, ep, attrs)


@backend.register("fused_conv2d")
def fused_conv2d(*ins, out, stride, padding, dilation, groups: int, has_bias: bool, has_residual: bool,
                 activation: str, act_attrs: tuple = ()) -> None:
    x, w, b, r = split_inputs(ins, has_bias, has_residual)
    attrs = conv_attrs(stride, padding, dilation, groups)
    ep = Epilogue.of(out.dtype, b, r, activation, act_attrs)
    run_forward(forward_choice(x, w, attrs).algorithm, x, w, out, ep, attrs)


@backend.register("conv2d_input_grad")
def conv2d_input_grad(gy, w, out, input_shape, stride, padding, dilation, groups: int) -> None:
    attrs = conv_attrs(stride, padding, dilation, groups)
    run_input_grad(input_grad_choice(gy, w, input_shape, attrs).algorithm, gy, w, out, attrs)


@backend.register("conv2d_weight_grad")
def conv2d_weight_grad(x, gy, out, weight_shape, stride, padding, dilation, groups: int) -> None:
    attrs = conv_attrs(stride, padding, dilation, groups)
    run_weight_grad(weight_grad_choice(x, gy, weight_shape, attrs).algorithm, x, gy, out, attrs)
