"""The conv/GEMM epilogue: ``act(y * scale[o] + bias[o] + residual)`` (bias, folded-BN scale/shift, residual add,
activation), applied in the same pass that moves a GEMM result into NCHW or that leaves a direct kernel's
accumulator, never as separate sweeps over the output."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..elementwise import RELU, unary_scalar

# epilogue flag bits
HAS_BIAS, HAS_SCALE, HAS_RES = 1, 2, 4
NO_ACT = -1


@njit(cache=True, error_model="numpy")
def epilogue_value(v, o, flags, bias, scale, res_v, act, alpha):
    if flags & HAS_SCALE:
        v = v * scale[o]
    if flags & HAS_BIAS:
        v = v + bias[o]
    if flags & HAS_RES:
        v = v + res_v
    if act != NO_ACT:
        v = unary_scalar(act, v, alpha)
    return v


@njit(cache=True, error_model="numpy")
def epilogue_row(dst, src, o, flags, bias, scale, res_row, act, alpha):
    """dst[k] = epilogue(src[k]) for one output channel. The per-channel scale/bias are hoisted and the common
    identity/ReLU cases get branch-free loops: calling the generic per-element dispatch cost ~1.5x the conv."""
    so = scale[o] if flags & HAS_SCALE else 1.0
    bo = bias[o] if flags & HAS_BIAS else 0.0
    has_res = (flags & HAS_RES) != 0
    if act == NO_ACT or act == RELU:
        lo = 0.0 if act == RELU else -np.inf
        if has_res:
            for k in range(dst.shape[0]):
                v = src[k] * so + bo + res_row[k]
                dst[k] = lo if v < lo else v  # NaN stays NaN, as np.maximum(v, 0) does
        else:
            for k in range(dst.shape[0]):
                v = src[k] * so + bo
                dst[k] = lo if v < lo else v
    else:
        for k in range(dst.shape[0]):
            r = res_row[k] if has_res else 0.0
            dst[k] = epilogue_value(src[k], o, flags, bias, scale, r, act, alpha)


@njit(parallel=True, cache=True, error_model="numpy")
def epilogue_inplace(y, flags, bias, scale, res, act, alpha):
    """y[n, o, p] = act(y * scale[o] + bias[o] + res[n, o, p]) for a (N, O, P) array, in one pass."""
    nn, no, npix = y.shape
    for t in prange(nn * no):
        n, o = t // no, t % no
        res_row = res[n, o] if flags & HAS_RES else res[0, 0]
        epilogue_row(y[n, o], y[n, o], o, flags, bias, scale, res_row, act, alpha)  # elementwise: in place is fine


@njit(parallel=True, cache=True, error_model="numpy")
def unpack_epilogue(yt, out, flags, bias, scale, res, act, alpha):
    """out[n, o, p] = epilogue(yt[o, n*P + p]): the (O, N*P) GEMM result moved to NCHW in the same pass."""
    nn, no, npix = out.shape
    for t in prange(nn * no):
        n, o = t // no, t % no
        base = n * npix
        if flags == 0 and act == NO_ACT:
            for p in range(npix):
                out[n, o, p] = yt[o, base + p]
        else:
            res_row = res[n, o] if flags & HAS_RES else res[0, 0]
            epilogue_row(out[n, o], yt[o, base:base + npix], o, flags, bias, scale, res_row, act, alpha)


@njit(parallel=True, cache=True, error_model="numpy")
def unpack_pixel_major(y2, out, flags, bias, scale, res, act, alpha):
    """out[n, o, p] = epilogue(y2[n*P + p, o]): the (N*P, O) GEMM result moved to NCHW in the same pass,
    in tiles of 64 pixels x all channels so both the strided reads and the row writes stay in cache."""
    nn, no, npix = out.shape
    nblk = (npix + 63) // 64
    for t in prange(nn * nblk):
        n, q = t // nblk, t % nblk
        p0 = q * 64
        p1 = min(npix, p0 + 64)
        tile = y2[n * npix + p0:n * npix + p1]
        for o in range(no):
            dst = out[n, o, p0:p1]
            if flags == 0 and act == NO_ACT:
                for k in range(p1 - p0):
                    dst[k] = tile[k, o]
            else:
                res_row = res[n, o, p0:p1] if flags & HAS_RES else res[0, 0]
                epilogue_row(dst, tile[:, o], o, flags, bias, scale, res_row, act, alpha)



def epilogue_keeps_references(dtype: np.dtype, *per_channel: np.ndarray | None) -> bool:
    """Whether an :class:`Epilogue` holds these bias/scale arrays themselves (C-contiguous, of ``dtype``) rather
    than copies: then one made once still sees their current values (a specialized kernel call)."""
    return all(a is None or (a.flags.c_contiguous and a.dtype == dtype) for a in per_channel)


class Epilogue:
    """What the conv/GEMM output pass applies: ``act(y * scale + bias + residual)`` (each part optional)."""

    def __init__(self, dtype: np.dtype, bias: np.ndarray | None = None, scale: np.ndarray | None = None,
                 residual: np.ndarray | None = None, act: int = NO_ACT, alpha: float = 0.0):
        dummy1 = np.zeros(1, dtype)
        self.flags = (HAS_BIAS if bias is not None else 0) | (HAS_SCALE if scale is not None else 0) | (
            HAS_RES if residual is not None else 0)
        self.bias = dummy1 if bias is None else np.ascontiguousarray(bias, dtype)
        self.scale = dummy1 if scale is None else np.ascontiguousarray(scale, dtype)
        self.residual = residual
        self.act, self.alpha = act, float(alpha)

    def res3(self, shape3: tuple[int, int, int]) -> np.ndarray:
        if self.residual is None:
            return np.zeros((1, 1, 1), self.bias.dtype)
        return np.ascontiguousarray(self.residual).reshape(shape3)

    def for_images(self, n0: int, n1: int, shape3: tuple[int, int, int]) -> Epilogue:
        """This epilogue for images n0:n1 of an output of shape3 (N, O, P): the residual sliced to match."""
        if self.residual is None:
            return self
        ep = Epilogue.__new__(Epilogue)
        ep.__dict__.update(self.__dict__)
        ep.residual = self.res3(shape3)[n0:n1]
        return ep

    @property
    def empty(self) -> bool:
        return self.flags == 0 and self.act == NO_ACT

    def apply_inplace(self, y3: np.ndarray) -> None:
        if not self.empty:
            epilogue_inplace(y3, self.flags, self.bias, self.scale, self.res3(y3.shape), self.act, self.alpha)
