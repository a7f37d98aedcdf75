"""Convolution + ReLU + 2x2 max pooling as one node of a joint (forward + backward) graph, keeping each window's
winner for the backward pass instead of the convolution's output; created by a graph pass, never by user code.

- ``conv2d_relu_pool(x, w, [b]; stride, padding, dilation, groups, has_bias)`` -> ``(p, tap)``:
  ``y = relu(conv2d(x, w, b))``, ``p = max_pool2d(y; kernel 2, stride 2)`` and ``tap`` (int8, p's shape) the
  winning position of each window, 0..3 in row-major order (the first maximum; a NaN wins, the first NaN) -- the
  tap ``max_pool2d_grad`` picks -- or ``NO_GRAD`` (4) where the window's max is <= 0, so that the ReLU passes
  no gradient there. Rows and columns past the last whole window are dropped, as the pool does.
- ``max_pool2d_tap_relu_grad(gp, tap; y_shape, bias_grad)`` -> ``(gy,)`` or ``(gy, gb)``: the gradient through
  that pool and ReLU, ``relu_grad(max_pool2d_grad(gp, y), y)``, from the winners alone: gp where ``tap``
  points, zeros elsewhere; with ``bias_grad`` also ``gb = sum(gy, axes=(0, 2, 3))``, the conv's bias gradient.

Why: the backward of ``max_pool2d(relu(conv))`` needs only which tap won, not the convolution's output (LeNet-5's
conv1 at batch 64: 2.9 MB written, read by the pool and read again by the backward). A backend computes the pool
while the convolution's rows are in cache and never stores them.

There is no decomposition into other primitives (no primitive computes a window's argmax): the pass that creates
these nodes (``fuse_conv_relu_pool``) only runs for backends with kernels for both; no vjp either (backward graphs
only).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..primitive import FUSED, PRIMITIVES, Cost, Spec, fail, primitive

__all__: list[str] = []

conv2d_relu_pool_p = primitive("conv2d_relu_pool", FUSED, multiple_results=True)
max_pool2d_tap_relu_grad_p = primitive("max_pool2d_tap_relu_grad", FUSED, multiple_results=True)

CONV_ATTRS = ("stride", "padding", "dilation", "groups")
TAP_DTYPE = np.dtype(np.int8)
NO_GRAD = 4  # the tap of a window whose max is <= 0: the ReLU in front of the pool passes no gradient


def conv_shape(*ins: Spec, has_bias: bool, **conv: Any) -> Spec:
    """The ReLU'd convolution's output spec (what the pool reads)."""
    return PRIMITIVES["fused_conv2d"].shape_rule(*ins, has_bias=has_bias, has_residual=False, activation="relu",
                                                 **conv)


@conv2d_relu_pool_p.def_shape
def _shape(*ins: Spec, has_bias: bool, **conv: Any) -> tuple[Spec, Spec]:
    y = conv_shape(*ins, has_bias=has_bias, **conv)
    n, o, h, w = y.shape
    if h < 2 or w < 2:
        fail("conv2d_relu_pool", "the convolution's output must hold one 2x2 window", output=y.shape)
    shape = (n, o, h // 2, w // 2)
    return Spec(shape, y.dtype), Spec(shape, TAP_DTYPE)


@conv2d_relu_pool_p.def_cost
def _cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], *, has_bias: bool, **conv: Any) -> Cost:
    y = conv_shape(*ins, has_bias=has_bias, **conv)
    core = PRIMITIVES["conv2d"].cost(ins, (y,), **conv)
    # the ReLU and the window compare run on the rows in cache: only the pooled values and taps are written
    return Cost(core.macs, core.flops + 2 * y.size, core.bytes_read, sum(s.nbytes for s in outs))


@max_pool2d_tap_relu_grad_p.def_shape
def _grad_shape(gp: Spec, tap: Spec, *, y_shape: tuple[int, ...], bias_grad: bool) -> tuple[Spec, ...]:
    n, o, h, w = y_shape
    if gp.shape != tap.shape or tap.dtype != TAP_DTYPE or gp.shape != (n, o, h // 2, w // 2):
        fail("max_pool2d_tap_relu_grad", "gp and tap (int8) must have the pooled shape of y_shape",
             gp=gp.shape, tap=(tap.shape, str(tap.dtype)), y_shape=tuple(y_shape))
    gy = Spec(tuple(y_shape), gp.dtype)
    return (gy, Spec((o,), gp.dtype)) if bias_grad else (gy,)


@max_pool2d_tap_relu_grad_p.def_cost
def _grad_cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], *, y_shape: tuple[int, ...], bias_grad: bool) -> Cost:
    return Cost(0, ins[0].size + (outs[0].size if bias_grad else 0), sum(s.nbytes for s in ins),
                sum(s.nbytes for s in outs))
