"""Stride-1 convolution as a channel-major GEMM on padded planes (algorithm ``gemm-planes``, float32 forward).

With x zero-padded to planes of Hp x Wp, the output computed on a grid of row width Wp (columns Wo..Wp-1 are
junk and never stored) makes every row of the implicit im2col matrix a contiguous stretch of the padded input:

    im2col[k, y*Wp + z] = xp[boff[k] + y*Wp + z],   boff[(c*kh + i)*kw + j] = c*Hp*Wp + i*dh*Wp + j*dw

so per image ``out (O x Ho*Wp) = W (O x K) @ X``, where the register tile reads W in place (rows of K) and B
(32 consecutive grid pixels of each row k) straight from the padded input through the row table ``boff`` (the
``b_table`` tile of :mod:`..gemm`): nothing is packed, and the result comes out channel-major, so the epilogue
writes contiguous NCHW rows. The tables forward (:mod:`.tables`) instead makes pixels the tile's rows and moves
its (pixels x channels) result to NCHW through strided reads, which dominates layers with few taps and few
channels (LeNet-5's conv1, 1->20 5x5: K = 25). The cost here: (Wp - Wo) / Wp junk columns, and the output
channels padded to whole tiles of MR.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..elementwise import RELU
from ..gemm import KC, VL, make_tile
from .direct import pad_planes
from .epilogue import HAS_BIAS, HAS_RES, HAS_SCALE, NO_ACT, Epilogue, epilogue_row
from .workspace import Workspace

MR, NV = 10, 2  # register tile rows (output channels) x vectors (grid pixels)
NR = NV * VL
_tile = make_tile(MR, NV, b_table=True)


@njit(parallel=True, cache=True, error_model="numpy")
def _forward(xp, plane, w2, boff, out, oh, ow, wp, flags, bias, scale, res, act, alpha, ybuf):
    """out[n, o, y*Wo + z] = epilogue(sum_k W[o, k] * xp[n*plane + boff[k] + y*wp + z]) for z < Wo, one (image,
    panel of NR grid pixels) per item; w2 (O / MR row panels, K, MR): W packed so that each k reads MR
    consecutive weights; ybuf[thread] (O padded, NR)."""
    nn, no, _ = out.shape
    k = boff.shape[0]
    nrt = w2.shape[0]
    npx = oh * wp
    npan = (npx + NR - 1) // NR
    x_addr, w_addr, b_addr = xp.ctypes.data, w2.ctypes.data, boff.ctypes.data
    simple = (act == NO_ACT or act == RELU) and not flags & (HAS_SCALE | HAS_RES)
    lo = 0.0 if act == RELU else -np.inf
    for item in prange(nn * npan):
        n, pan = item // npan, item % npan
        q0 = pan * NR
        y = ybuf[numba.get_thread_id()]
        y_addr = y.ctypes.data
        for rt in range(nrt):
            for k0 in range(0, k, KC):
                _tile(min(KC, k - k0), w_addr + (rt * k + k0) * MR * 4, 1, MR, x_addr + (n * plane + q0) * 4,
                      b_addr + k0 * 8, y_addr + rt * MR * NR * 4, NR, k0 > 0)
        q, qend = q0, min(q0 + NR, npx)
        while q < qend:  # the panel's valid pixels, in runs inside one output row
            r, z = q // wp, q % wp
            if z >= ow:
                q = (r + 1) * wp
                continue
            run = min(ow - z, qend - q)
            d0, s0 = r * ow + z, q - q0
            for o in range(no):
                src = y[o * NR + s0:o * NR + s0 + run]
                dst = out[n, o, d0:d0 + run]
                if simple:  # inline: a call per short run cost more than the run
                    bo = bias[o] if flags & HAS_BIAS else 0.0
                    for e in range(run):
                        v = src[e] + bo
                        dst[e] = lo if v < lo else v
                else:
                    res_row = res[n, o, d0:d0 + run] if flags & HAS_RES else res[0, 0]
                    epilogue_row(dst, src, o, flags, bias, scale, res_row, act, alpha)
            q += run


def applicable(x_shape, w_shape, attrs) -> bool:
    """Stride 1, groups 1 (any padding and dilation)."""
    return tuple(attrs["stride"]) == (1, 1) and attrs["groups"] == 1 and len(w_shape) == 4


def prepare(x: np.ndarray, w: np.ndarray, dilation, padding, ws: Workspace, cols: int = NR
             ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, int, np.ndarray]:
    """The operands of :func:`_forward` in ``ws``: (x as flat padded planes with slack, plane size, W packed in
    MR-row panels, the row table, the padded row width Wp, a (O padded) x ``cols`` buffer per thread)."""
    (pt, pb), (pl, pr) = padding
    dh, dw = dilation
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    hp, wp = h + pt + pb, wd + pl + pr
    plane = c * hp * wp
    # slack past the last image: the last panel's junk columns read up to NR + (kw-1)*dw elements beyond it
    flat = ws.get("planes_x", (n * plane + NR + (kw - 1) * dw,), np.float32)
    flat[n * plane:] = 0
    pad_planes(np.ascontiguousarray(x), flat[:n * plane].reshape(n, c, hp * wp), pt, pl, wp)
    rows = -(-o // MR) * MR
    wr = np.zeros((rows, c * kh * kw), np.float32)
    wr[:o] = w.reshape(o, -1)
    w2 = ws.get("planes_w", (rows // MR, c * kh * kw, MR), np.float32)
    w2[...] = wr.reshape(rows // MR, MR, -1).transpose(0, 2, 1)
    boff = (np.arange(c)[:, None, None] * (hp * wp) + np.arange(kh)[None, :, None] * (dh * wp)
            + np.arange(kw)[None, None, :] * dw).ravel().astype(np.int64)
    return flat, plane, w2, boff, wp, ws.per_thread("planes_y", rows * cols)


def forward(x: np.ndarray, w: np.ndarray, out: np.ndarray, ep: Epilogue, dilation, padding, ws: Workspace) -> None:
    """out = epilogue(conv2d(x, w)) for float32, stride 1, groups 1."""
    flat, plane, w2, boff, wp, ybuf = prepare(x, w, dilation, padding, ws)
    n, o, oh, ow = out.shape
    _forward(flat, plane, w2, boff, out.reshape(n, o, oh * ow), oh, ow, wp, ep.flags, ep.bias, ep.scale,
             ep.res3((n, o, oh * ow)), ep.act, ep.alpha, ybuf)
