"""Border padding modes and resampling, as composites of data-movement and matmul primitives.

- ``pad_modes(x, pads, mode)``: ``"reflect"``, ``"replicate"`` and ``"circular"`` padding, one axis at a time, as a
  ``concat`` of slices of ``x`` (reflect: one single-row slice per padded row; replicate: the edge row broadcast;
  circular: the opposite end). Gradients flow back through slice/concat, so border rows collect the gradients of
  their copies, as torch's ``reflection_pad`` backward does.
- ``interpolate``: separable, one spatial axis at a time. Each axis maps output index ``o`` to source index
  ``src(o)`` with torch's float arithmetic (``opmath`` is float32 for float32 input). Nearest modes use a
  reshape + broadcast where ``src(o) = o // r`` (integer upsampling), a strided slice where ``src(o) = k o``, and
  otherwise a one-hot matrix product; linear modes multiply by the (out, in) interpolation matrix (two non-zeros
  per row: ``1 - lambda`` and ``lambda``), so the gradient is that matrix's transpose, exactly torch's backward.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..primitive import fail
from ..tensor import Tensor
from .linalg import matmul
from .shape import broadcast_to, concat, constant_pad, pad_pairs, reshape, transpose
from .shape import slice as _slice

__all__ = ["pad", "interpolate", "upsample", "upsample_nearest", "upsample_bilinear"]

PAD_MODES = ("reflect", "replicate", "circular")


# --- padding modes ---------------------------------------------------------------------------------------
def _pad_axis(x: Tensor, axis: int, before: int, after: int, mode: str) -> Tensor:
    n = x.shape[axis]
    if mode == "reflect":
        if before >= n or after >= n:
            fail("pad", "reflect padding must be smaller than the padded dimension", axis=axis, size=n,
                 padding=(before, after))
        left = [_slice(x, axis, i, i + 1) for i in range(before, 0, -1)]
        right = [_slice(x, axis, n - 2 - i, n - 1 - i) for i in range(after)]
    elif mode == "replicate":
        if n == 0:
            fail("pad", "replicate padding needs a non-empty dimension", axis=axis, size=n)

        def edge(i: int, k: int) -> list[Tensor]:
            row = _slice(x, axis, i, i + 1)
            return [broadcast_to(row, x.shape[:axis] + (k,) + x.shape[axis + 1:])] if k else []

        left, right = edge(0, before), edge(n - 1, after)
    else:  # circular
        if before > n or after > n:
            fail("pad", "circular padding must not exceed the padded dimension", axis=axis, size=n,
                 padding=(before, after))
        left = [_slice(x, axis, n - before, n)] if before else []
        right = [_slice(x, axis, 0, after)] if after else []
    return concat(left + [x] + right, axis)


def pad(x: Tensor, pad: tuple[int, ...], mode: str = "constant", value: float = 0.0) -> Tensor:
    """torch.nn.functional.pad: ``pad`` lists (left, right) pairs starting from the LAST axis. ``mode`` is
    ``"constant"`` (the pad primitive) or ``"reflect"``, ``"replicate"``, ``"circular"`` (composites)."""
    pads = pad_pairs("pad", x, pad)
    return constant_pad(x, pads, value) if mode == "constant" else pad_modes(x, pads, mode)


def pad_modes(x: Tensor, pads: tuple[tuple[int, int], ...], mode: str) -> Tensor:
    """Pad every axis by its ``(before, after)`` pair with a border mode (see the module docstring)."""
    if mode not in PAD_MODES:
        raise ValueError(f"pad: mode must be 'constant' or one of {PAD_MODES} (got {mode!r})")
    if any(b < 0 or a < 0 for b, a in pads):
        fail("pad", f"{mode} padding must be non-negative", pads=pads)
    for axis, (before, after) in enumerate(pads):
        if before or after:
            x = _pad_axis(x, axis, before, after, mode)
    return x


# --- interpolate -------------------------------------------------------------------------------------------
_LINEAR_MODES = {"linear": 1, "bilinear": 2}
_MODES = ("nearest", "nearest-exact", "linear", "bilinear")


def _opmath(dtype: np.dtype) -> type:
    return np.float64 if dtype == np.float64 else np.float32


def _scale(n_in: int, n_out: int, scale: float | None, dt: type) -> Any:
    """torch's compute_scales_value: 1 / scale_factor when one was given, else in / out."""
    return dt(1.0 / scale) if scale is not None and scale > 0 else dt(n_in) / dt(n_out)


def _nearest_index(n_in: int, n_out: int, scale: float | None, exact: bool, dt: type) -> np.ndarray:
    o = np.arange(n_out)
    if not exact and n_out == n_in:
        return o
    if not exact and n_out == 2 * n_in:
        return o >> 1
    s = _scale(n_in, n_out, scale, dt)
    src = np.floor((o.astype(dt) + dt(0.5)) * s if exact else o.astype(dt) * s).astype(np.int64)
    return np.minimum(src, n_in - 1)


def _linear_matrix(n_in: int, n_out: int, scale: float | None, align_corners: bool, dt: type) -> np.ndarray:
    o = np.arange(n_out).astype(dt)
    if align_corners:
        s = dt(n_in - 1) / dt(n_out - 1) if n_out > 1 else dt(0)
        src = s * o
    else:
        src = np.maximum(_scale(n_in, n_out, scale, dt) * (o + dt(0.5)) - dt(0.5), dt(0))
    i0 = src.astype(np.int64)
    i1 = i0 + (i0 < n_in - 1)
    lam1 = src - i0.astype(dt)
    m = np.zeros((n_out, n_in), dt)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), dt(1) - lam1)
    np.add.at(m, (rows, i1), lam1)
    return m


def _along(x: Tensor, axis: int, m: np.ndarray) -> Tensor:
    """Apply the (out, in) matrix ``m`` along ``axis`` (the last or the second to last)."""
    mt = x.new_tensor(np.ascontiguousarray(m, dtype=x.dtype))
    if axis == x.ndim - 1:
        return matmul(x, transpose(mt, 0, 1))
    return matmul(mt, x)


def _nearest_along(x: Tensor, axis: int, idx: np.ndarray) -> Tensor:
    n_in, n_out = x.shape[axis], idx.shape[0]
    if np.array_equal(idx, np.arange(n_out)) and n_out == n_in:
        return x
    r = n_out // n_in if n_in else 0
    if r >= 1 and n_out == r * n_in and np.array_equal(idx, np.arange(n_out) // r):  # integer upsampling
        shape = x.shape[:axis + 1] + (1,) + x.shape[axis + 1:]
        wide = broadcast_to(reshape(x, shape), x.shape[:axis + 1] + (r,) + x.shape[axis + 1:])
        return reshape(wide, x.shape[:axis] + (n_out,) + x.shape[axis + 1:])
    k = int(idx[1]) if n_out > 1 else 1
    if k >= 1 and np.array_equal(idx, np.arange(n_out) * k):  # integer downsampling
        return _slice(x, axis, 0, (n_out - 1) * k + 1, k)
    onehot = np.zeros((n_out, n_in))
    onehot[np.arange(n_out), idx] = 1.0
    return _along(x, axis, onehot)


def _output_size(op: str, x: Tensor, size: Any, scale_factor: Any, recompute: bool | None
                 ) -> tuple[tuple[int, ...], tuple[float | None, ...]]:
    dims = x.ndim - 2
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: give exactly one of size and scale_factor (got size={size!r}, "
                         f"scale_factor={scale_factor!r})")
    if size is not None:
        out = (int(size),) * dims if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
        if len(out) != dims:
            raise ValueError(f"{op}: size must be an int or {dims} ints for {x.ndim}-D input (got {size!r})")
        return out, (None,) * dims
    sf = (float(scale_factor),) * dims if np.isscalar(scale_factor) else tuple(float(s) for s in scale_factor)
    if len(sf) != dims:
        raise ValueError(f"{op}: scale_factor must be a number or {dims} numbers for {x.ndim}-D input "
                         f"(got {scale_factor!r})")
    if any(not (s > 0 and math.isfinite(s)) for s in sf):
        raise ValueError(f"{op}: scale_factor must be positive and finite (got {scale_factor!r})")
    out = tuple(math.floor(n * s) for n, s in zip(x.shape[2:], sf))
    return out, ((None,) * dims if recompute else sf)


def interpolate(input: Tensor, size: int | tuple[int, ...] | None = None,  # noqa: A002
                scale_factor: float | tuple[float, ...] | None = None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:
    """torch.nn.functional.interpolate for (N, C, L) and (N, C, H, W) input: ``mode`` ``"nearest"``,
    ``"nearest-exact"``, ``"linear"`` (3-D) or ``"bilinear"`` (4-D, ``align_corners`` True/False)."""
    op = "interpolate"
    x = input
    if mode not in _MODES:
        raise ValueError(f"{op}: mode must be one of {_MODES} (got {mode!r})")
    if x.ndim not in (3, 4):
        fail(op, "input must be 3-D (N, C, L) or 4-D (N, C, H, W)", input=list(x.shape))
    if mode in _LINEAR_MODES and x.ndim - 2 != _LINEAR_MODES[mode]:
        fail(op, f"mode '{mode}' needs {_LINEAR_MODES[mode] + 2}-D input", input=list(x.shape))
    if mode not in _LINEAR_MODES and align_corners is not None:
        raise ValueError(f"{op}: align_corners can only be set with the linear modes (linear, bilinear); "
                         f"got mode={mode!r}")
    if antialias:
        raise ValueError(f"{op}: antialias=True is not supported")
    if x.dtype.kind != "f":
        fail(op, "input must be floating point", dtype=x.dtype.name)
    out, scales = _output_size(op, x, size, scale_factor, recompute_scale_factor)
    if min(out) < 1:
        fail(op, "output size must be >= 1", input=list(x.shape), output=list(out))
    dt = _opmath(x.dtype)
    for i, (n_out, s) in enumerate(zip(out, scales)):
        axis, n_in = 2 + i, x.shape[2 + i]
        if mode in _LINEAR_MODES:
            if n_out != n_in or align_corners or s not in (None, 1.0):
                x = _along(x, axis, _linear_matrix(n_in, n_out, s, bool(align_corners), dt))
        else:
            x = _nearest_along(x, axis, _nearest_index(n_in, n_out, s, mode == "nearest-exact", dt))
    return x


def upsample(input: Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",  # noqa: A002
             align_corners: bool | None = None) -> Tensor:
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input: Tensor, size: Any = None, scale_factor: Any = None) -> Tensor:  # noqa: A002
    return interpolate(input, size, scale_factor, "nearest")


def upsample_bilinear(input: Tensor, size: Any = None, scale_factor: Any = None) -> Tensor:  # noqa: A002
    """torch.nn.functional.upsample_bilinear: bilinear with ``align_corners=True``."""
    return interpolate(input, size, scale_factor, "bilinear", align_corners=True)
