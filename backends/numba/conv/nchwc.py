"""``nchwc-winograd-f2`` / ``nchwc-winograd-f4``: an NCHW 3x3 stride-1 conv (forward or input gradient) run on the
channel-blocked Winograd kernel of ``blocked_conv2d`` (:mod:`..blocked.winograd`): x reordered to NCHW16c in
scratch, the blocked F(m x m) kernel, the result reordered back to NCHW (the epilogue, if any, applied there).

Why: the blocked kernel's multiply stage is one register tile over (tiles x C) @ (C x O) with every transform a
vector op over the 16 lanes of a channel block, several times faster than the NCHW Winograd's on the deep layers
(one core, ResNet-18 CIFAR batch 32, blocked kernel alone vs NCHW F(4x4) forward, ms: 64 channels at 32x32 13.5
vs 41, 128 at 16x16 11.3 vs 22, 256 at 8x8 7.5 vs 16.6, 512 at 4x4 8.2 vs 25), so even with two reorders it
wins. The training graph (NCHW, weights changing every step) thus gets the inference path's kernel per conv.

The transformed weights U are made per call (or once per constant inside an executor, :func:`.workspace.derived`)
by the NCHW path's panel transform (:func:`.winograd.math.weight_transform_panels`), whose (a*a, O/32, C, 32)
panels of 32 output channels are exactly the blocked kernel's packing (NV = 2 blocks of VL = 16 lanes), with the
blocked F(4x4)'s own G (its points 0, +-1, 1/2, -2). ``flip`` makes U of the input gradient's kernel (w transposed
to (C, O) and turned 180 degrees) in the same pass, so the input gradient is the same call on gy.
"""

from __future__ import annotations

import numpy as np

from engine.ops.blocked import blocks

from ..gemm import VL
from .epilogue import Epilogue
from .winograd.math import weight_transform_panels
from .workspace import derived, scratch

ALGORITHMS = {"nchwc-winograd-f2": 2, "nchwc-winograd-f4": 4}  # name -> output tile m of F(m x m, 3x3)


def supported(x: np.ndarray, w: np.ndarray, out: np.ndarray) -> bool:
    return x.dtype == w.dtype == out.dtype == np.float32


def _panel() -> int:
    from ..blocked.conv import NV  # imported late: the blocked package builds on this one

    return NV * VL  # output channels per U panel


def packed_u(w: np.ndarray, m: int, flip: bool, out: np.ndarray | None = None) -> np.ndarray:
    """U of w (O, C, 3, 3) in the blocked kernel's panels of NV*VL output channels, (a*a, panels, C', NV*VL) for
    (O', C') = (O, C), or (C, O) for ``flip`` (the input gradient's kernel); into ``out`` when given."""
    o, c = w.shape[:2]
    if flip:
        o, c = c, o
    if out is None:
        out = np.empty(((m + 2) ** 2, blocks(o, _panel()), c, _panel()), np.float32)
    weight_transform_panels(np.ascontiguousarray(w), out, 0 if m == 2 else 2, flip)  # F(4x4): the blocked points
    return out


def conv3x3(x: np.ndarray, w: np.ndarray, out: np.ndarray, ep: Epilogue, padding, m: int, flip: bool = False
            ) -> None:
    """out (N, O, Ho, Wo) = epilogue(conv2d(x, w, stride 1, padding)) for a 3x3 kernel, by the blocked F(m x m)
    kernel between two reorders. ``flip``: w is (C_out, C_in)-swapped and turned, as :func:`packed_u`."""
    from ..blocked.conv import SERIAL_MACS
    from ..blocked.reorder import from_blocked, to_blocked
    from ..blocked.winograd import winograd_step

    n, c = x.shape[:2]
    o, oh, ow = out.shape[1:]
    (pt, _), (pl, _) = padding
    xb = scratch("nchwc_x", (n, blocks(c, VL), x.shape[2], x.shape[3], VL), np.float32)
    to_blocked(np.ascontiguousarray(x), xb, VL)
    form = f"nchwc-f{m}{'-flip' if flip else ''}"
    u = derived(w, form, lambda w: packed_u(w, m, flip))
    if u is None:
        u = packed_u(w, m, flip, scratch("nchwc_u", ((m + 2) ** 2, blocks(o, _panel()), c, _panel()), np.float32))
    yb = scratch("nchwc_y", (n, blocks(o, VL), oh, ow, VL), np.float32)
    bias = scratch("nchwc_bias", (u.shape[1] * u.shape[3],), np.float32)
    bias[:] = 0.0
    serial = n * oh * ow * o * c * 9 < SERIAL_MACS
    winograd_step(xb, u, c, bias, yb, yb, False, pt, pl, -np.inf, np.inf, serial)()
    dst = out if out.flags.c_contiguous else np.empty(out.shape, np.float32)
    from_blocked(yb, dst, o)
    ep.apply_inplace(dst.reshape(n, o, oh * ow))
    if dst is not out:
        out[...] = dst


def input_grad3x3(gy: np.ndarray, w: np.ndarray, out: np.ndarray, padding, m: int) -> None:
    """out (N, C, H, W) = the input gradient of a 3x3 stride-1 conv: gy convolved with the turned, transposed w,
    padded by 2 - p per side."""
    (pt, _), (pl, _) = padding
    conv3x3(gy, w, out, Epilogue(out.dtype), ((2 - pt, 0), (2 - pl, 0)), m, flip=True)
