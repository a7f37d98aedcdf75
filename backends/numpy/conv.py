"""numpy reference kernels: conv2d and its gradients, as im2col + one batched matmul per call.

Layout used throughout (``g`` groups, ``K = C/g * kh * kw`` weight taps per output channel, ``P = N * Ho * Wo``
output pixels): ``cols`` is the im2col matrix of shape ``(g, K, P)``, ``W`` is the weight as ``(g, O/g, K)`` and
``GY`` the output gradient as ``(g, O/g, P)``, so

    conv2d:              y     = W @ cols                 (g, O/g, P)
    conv2d_weight_grad:  gw    = GY @ cols^T              (g, O/g, K)
    conv2d_input_grad:   dcols = W^T @ GY, then col2im    (g, K, P) -> (N, C, H, W)

Pixels are the last (fastest) axis, which keeps the im2col copy and the col2im adds mostly contiguous.
The only Python loops run over the kh*kw kernel taps (col2im), never over pixels.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .table import backend


def _pad(x: np.ndarray, padding) -> np.ndarray:
    (pt, pb), (pl, pr) = padding
    if pt == pb == pl == pr == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))


def _tap(a: int, b: int, out_hw, stride, dilation) -> tuple[slice, slice]:
    """Rows and columns of the padded input that kernel tap (a, b) reads for every output pixel."""
    (ho, wo), (sh, sw), (dh, dw) = out_hw, stride, dilation
    return slice(a * dh, a * dh + (ho - 1) * sh + 1, sh), slice(b * dw, b * dw + (wo - 1) * sw + 1, sw)


def _im2col(x: np.ndarray, kernel, out_hw, stride, padding, dilation, groups: int) -> np.ndarray:
    """(g, C/g*kh*kw, N*Ho*Wo): column p holds the input patch under output pixel p (a copy)."""
    n, c = x.shape[:2]
    (kh, kw), (ho, wo), (sh, sw), (dh, dw) = kernel, out_hw, stride, dilation
    win = sliding_window_view(_pad(x, padding), (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw, ::dh, ::dw]  # (N, C, Ho, Wo, kh, kw) view
    win = win.reshape(n, groups, c // groups, ho, wo, kh, kw).transpose(1, 2, 5, 6, 0, 3, 4)
    return win.reshape(groups, (c // groups) * kh * kw, n * ho * wo)


def _gy_matrix(gy: np.ndarray, groups: int) -> np.ndarray:
    """(N, O, Ho, Wo) -> (g, O/g, N*Ho*Wo)."""
    n, o, ho, wo = gy.shape
    return gy.transpose(1, 0, 2, 3).reshape(groups, o // groups, n * ho * wo)


@backend.register("conv2d")
def conv2d(x: np.ndarray, w: np.ndarray, *b: np.ndarray, out: np.ndarray, stride, padding, dilation,
           groups: int) -> None:
    n, o, ho, wo = out.shape
    cols = _im2col(x, w.shape[2:], (ho, wo), stride, padding, dilation, groups)
    y = np.matmul(w.reshape(groups, o // groups, -1), cols)  # (g, O/g, N*Ho*Wo)
    out[...] = y.reshape(o, n, ho, wo).transpose(1, 0, 2, 3)
    if b:
        out += b[0].reshape(1, o, 1, 1)


@backend.register("conv2d_weight_grad")
def conv2d_weight_grad(x: np.ndarray, gy: np.ndarray, out: np.ndarray, weight_shape, stride, padding, dilation,
                       groups: int) -> None:
    cols = _im2col(x, weight_shape[2:], gy.shape[2:], stride, padding, dilation, groups)
    out[...] = np.matmul(_gy_matrix(gy, groups), cols.transpose(0, 2, 1)).reshape(weight_shape)


@backend.register("conv2d_input_grad")
def conv2d_input_grad(gy: np.ndarray, w: np.ndarray, out: np.ndarray, input_shape, stride, padding, dilation,
                      groups: int) -> None:
    n, c, h, wd = input_shape
    o, cg, kh, kw = w.shape
    ho, wo = gy.shape[2:]
    (pt, pb), (pl, pr) = padding
    dcols = np.matmul(w.reshape(groups, o // groups, -1).transpose(0, 2, 1), _gy_matrix(gy, groups))
    dcols = dcols.reshape(groups, cg, kh, kw, n, ho, wo)
    gxp = np.zeros((n, groups, cg, h + pt + pb, wd + pl + pr), dtype=out.dtype)
    for a in range(kh):  # col2im: each tap adds its (N, g, C/g, Ho, Wo) block into a strided window of gxp
        for b in range(kw):
            rows, cols = _tap(a, b, (ho, wo), stride, dilation)
            gxp[:, :, :, rows, cols] += dcols[:, :, a, b].transpose(2, 0, 1, 3, 4)
    out[...] = gxp.reshape(n, c, h + pt + pb, wd + pl + pr)[:, :, pt : pt + h, pl : pl + wd]
