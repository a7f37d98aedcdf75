"""Batch transforms over numpy arrays (N, C, H, W): every one is vectorized over the whole batch.

A transform is a callable ``t(x, rng=None) -> x``; ``rng`` is a ``numpy.random.Generator`` (the
DataLoader passes one seeded per batch; ``None`` uses ``engine.random``'s generator). A single image
(C, H, W) is accepted too and treated as a batch of one.

Geometric augmentations are affine warps: each output pixel is mapped to input coordinates by a
per-sample 2x3 matrix and sampled (bilinear or nearest) with a constant fill outside the image. Pixel
centres are integer coordinates and rotation/scaling act about the image centre ((W-1)/2, (H-1)/2), so a
translation by an integer shift equals ``np.roll`` with zero fill.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..random import generator

__all__ = ["Compose", "ToFloat", "Normalize", "RandomHorizontalFlip", "RandomCrop", "RandomAffine",
           "RandomTranslation", "RandomRotation", "RandomScale", "affine", "translate", "hflip"]


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    if rng is not None:
        return rng
    return generator()


def _batched(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Let a batch transform also take a single (C, H, W) image."""

    def call(self: Any, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 3:
            return fn(self, x[None], rng)[0]
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__}: expected (N, C, H, W) or (C, H, W), got shape {x.shape}")
        return fn(self, x, rng)

    call.__doc__ = fn.__doc__
    return call


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Callable[..., np.ndarray]]):
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = _rng(rng)
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __repr__(self) -> str:
        return "Compose(\n" + "".join(f"    {t!r},\n" for t in self.transforms) + ")"


class ToFloat:
    """uint8 [0, 255] -> float32 [0, 1] (any other dtype is only cast to float32)."""

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype == np.uint8:
            return x.astype(np.float32) * np.float32(1 / 255)
        return x.astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return "ToFloat()"


class Normalize:
    """(x - mean[c]) / std[c] per channel."""

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]):
        self.mean = np.atleast_1d(np.asarray(mean, np.float32))
        self.std = np.atleast_1d(np.asarray(std, np.float32))
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {self.std.tolist()}")

    @_batched
    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        c = x.shape[1]
        if len(self.mean) not in (1, c) or len(self.std) not in (1, c):
            raise ValueError(f"Normalize: {len(self.mean)} means / {len(self.std)} stds for {c} channels")
        shape = (1, -1, 1, 1)
        return ((x - self.mean.reshape(shape)) / self.std.reshape(shape)).astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def hflip(x: np.ndarray) -> np.ndarray:
    return x[..., ::-1].copy()


class RandomHorizontalFlip:
    """Mirror each sample left-right with probability p."""

    def __init__(self, p: float = 0.5):
        self.p = p

    @_batched
    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        flip = _rng(rng).random(len(x)) < self.p
        out = x.copy()
        out[flip] = x[flip][..., ::-1]
        return out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """Pad every side by ``padding`` (constant ``fill``), then crop a random size=(h, w) window per sample."""

    def __init__(self, size: int | tuple[int, int], padding: int = 0, fill: float = 0.0):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.padding = int(padding)
        self.fill = fill

    @_batched
    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = _rng(rng)
        p, (h, w) = self.padding, self.size
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=self.fill) if p else x
        n, _, hp, wp = xp.shape
        if h > hp or w > wp:
            raise ValueError(f"RandomCrop: crop {h}x{w} larger than the padded image {hp}x{wp}")
        oy = rng.integers(0, hp - h + 1, n)
        ox = rng.integers(0, wp - w + 1, n)
        rows = (oy[:, None] + np.arange(h))[:, :, None]  # (N, h, 1)
        cols = (ox[:, None] + np.arange(w))[:, None, :]  # (N, 1, w)
        out = xp[np.arange(n)[:, None, None], :, rows, cols]  # advanced indices first: (N, h, w, C)
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


def affine(x: np.ndarray, inverse: np.ndarray, fill: float = 0.0, interpolation: str = "bilinear") -> np.ndarray:
    """Warp a batch: ``inverse`` (N, 2, 3) maps output pixel (x, y, 1) to input coordinates (x', y').

    Sampling is bilinear or nearest; input coordinates outside the image read ``fill``.
    """
    n, c, h, w = x.shape
    inverse = np.broadcast_to(np.asarray(inverse, np.float64), (n, 2, 3))
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    grid = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)])  # (3, H*W)
    src = inverse @ grid  # (N, 2, H*W)
    sx, sy = src[:, 0], src[:, 1]
    batch = np.arange(n)[:, None]
    if interpolation == "nearest":
        corners = [(np.floor(sx + 0.5), np.floor(sy + 0.5), 1.0)]
    elif interpolation == "bilinear":
        x0, y0 = np.floor(sx), np.floor(sy)
        fx, fy = sx - x0, sy - y0
        corners = [(x0, y0, (1 - fx) * (1 - fy)), (x0 + 1, y0, fx * (1 - fy)),
                   (x0, y0 + 1, (1 - fx) * fy), (x0 + 1, y0 + 1, fx * fy)]
    else:
        raise ValueError(f"affine: interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
    out = np.zeros((n, h * w, c), np.float64)
    inside_weight = np.zeros((n, h * w), np.float64)
    for cx, cy, wgt in corners:
        valid = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
        wv = np.where(valid, wgt, 0.0)
        xi = np.clip(cx, 0, w - 1).astype(np.intp)
        yi = np.clip(cy, 0, h - 1).astype(np.intp)
        out += x[batch, :, yi, xi] * wv[..., None]  # gather (N, H*W, C)
        inside_weight += wv
    if fill != 0:
        out += (1.0 - inside_weight)[..., None] * fill
    return out.transpose(0, 2, 1).reshape(n, c, h, w).astype(x.dtype if x.dtype.kind == "f" else np.float32)


def _centered_inverse(angle_deg: np.ndarray, scale: np.ndarray, tx: np.ndarray, ty: np.ndarray, h: int, w: int,
                      ) -> np.ndarray:
    """Inverse matrices of p_out = c + s R(angle) (p_in - c) + t, per sample -> (N, 2, 3)."""
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a = -np.deg2rad(angle_deg)  # image y points down: negate so positive angles turn counter-clockwise
    cos, sin = np.cos(a) / scale, np.sin(a) / scale
    # R^-1 / s applied to (p_out - c - t), then + c
    m = np.empty((len(a), 2, 3))
    m[:, 0, 0], m[:, 0, 1] = cos, sin
    m[:, 1, 0], m[:, 1, 1] = -sin, cos
    ux, uy = cx + tx, cy + ty
    m[:, 0, 2] = cx - (cos * ux + sin * uy)
    m[:, 1, 2] = cy - (-sin * ux + cos * uy)
    return m


def translate(x: np.ndarray, dx: float | np.ndarray, dy: float | np.ndarray, fill: float = 0.0,
              interpolation: str = "bilinear") -> np.ndarray:
    """Shift a batch right by dx and down by dy pixels (per sample if arrays)."""
    n, _, h, w = x.shape
    dx, dy = np.broadcast_to(dx, (n,)).astype(np.float64), np.broadcast_to(dy, (n,)).astype(np.float64)
    return affine(x, _centered_inverse(np.zeros(n), np.ones(n), dx, dy, h, w), fill, interpolation)


class RandomAffine:
    """Random rotation (uniform in +-degrees, positive = counter-clockwise), translation (up to
    translate=(fx, fy) of the width/height) and scaling (uniform in scale=(lo, hi)), one draw per sample,
    applied as one warp."""

    def __init__(self, degrees: float = 0.0, translate: tuple[float, float] | None = None,
                 scale: tuple[float, float] | None = None, fill: float = 0.0, interpolation: str = "bilinear"):
        self.degrees = float(degrees)
        self.translate = translate
        self.scale = scale
        self.fill = fill
        self.interpolation = interpolation

    @_batched
    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = _rng(rng)
        n, _, h, w = x.shape
        angle = rng.uniform(-self.degrees, self.degrees, n) if self.degrees else np.zeros(n)
        if self.translate is not None:
            tx = np.round(rng.uniform(-1, 1, n) * self.translate[0] * w)
            ty = np.round(rng.uniform(-1, 1, n) * self.translate[1] * h)
        else:
            tx = ty = np.zeros(n)
        s = rng.uniform(self.scale[0], self.scale[1], n) if self.scale is not None else np.ones(n)
        return affine(x, _centered_inverse(angle, s, tx, ty, h, w), self.fill, self.interpolation)

    def __repr__(self) -> str:
        return f"RandomAffine(degrees={self.degrees}, translate={self.translate}, scale={self.scale})"


def RandomTranslation(fraction: float | tuple[float, float], fill: float = 0.0) -> RandomAffine:
    """Integer shifts of up to ``fraction`` of the width (and height)."""
    fx, fy = (fraction, fraction) if isinstance(fraction, (int, float)) else fraction
    return RandomAffine(translate=(fx, fy), fill=fill)


def RandomRotation(degrees: float, fill: float = 0.0) -> RandomAffine:
    return RandomAffine(degrees=degrees, fill=fill)


def RandomScale(scale: tuple[float, float], fill: float = 0.0) -> RandomAffine:
    return RandomAffine(scale=scale, fill=fill)
