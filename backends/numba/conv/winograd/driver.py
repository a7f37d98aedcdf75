"""Winograd conv2d F(m x m, 3x3), m = 2 or 4, for 3x3 / stride 1 / dilation 1 / groups 1 layers (padding 0..2
per side).

Each m x m output tile is ``A^T [(G g G^T) * (B^T d B)] A`` for the a x a input tile ``d`` (a = m + 2) at stride
m. The elementwise product over the a*a transform positions is, summed over input channels, a*a independent GEMMs
``M[k] (O, T) = U[k] (O, C) @ V[k] (C, T)`` (T = tiles): a^2/m^2 multiply-adds per output pixel and channel pair
instead of im2col's 9 (F(2x2): 4, F(4x4): 2.25). Steps:

1. weights ``U[a*a, O, C]`` (:func:`winograd_weights`; a caller may transform once and pass ``u=``),
2. input transform into ``V[a*a, C, T]`` (T contiguous): one prange item per (image, channel) plane, each pass
   one flat vectorizable loop over the plane's tiles per output (tile layout: see :mod:`.planes`),
3. ``M[k] = U[k] @ V[k]``: a*a GEMMs (float32 on :mod:`...gemm`, else BLAS),
4. output transform of ``M[a*a, O, T]`` fused with the conv epilogue (:mod:`..epilogue`), writing only the
   valid pixels (odd sizes: 7x7 is covered by 4x4 tiles of F(2x2) or 2x2 of F(4x4)).

The batch runs in chunks of whole images so V and M of one chunk stay in L3 between the transforms and the GEMMs.
Output planes up to :data:`ROWS_MAX_OW` wide instead run channels-last (V[a*a, T, C], M = V @ U^T; see
:mod:`.rows`): no junk tiles, and long transform loops on planes of a few tiles per row.
:func:`winograd_tile` picks m per layer.

Float32 accuracy (max |error| / max |y| vs a float64 conv; ReLU inputs, He-initialised weights, the ResNet-18
3x3 layers at batch 8): F(2x2) 3e-7..6e-7 (torch's float32 conv: 2.5e-7), F(4x4) 7e-6..1.2e-5 (its transforms
have entries up to 8 and 1/24). The input gradient of the same conv is itself a
stride-1 3x3 conv (of gy with the flipped, transposed kernel, padded 2 - p), so it runs through the forward.

The weight gradient (:func:`winograd_weight_grad`) is a*a GEMMs ``dU[k] (O, C) = Gy[k] (O, T) @ V[k]^T`` over
the batch's tiles (Gy: the output-gradient tiles transformed by A), then ``dW = G^T dU G``; its transforms run
channels-last (:mod:`.rows`). Float32 error (max |error| / max |gw| vs float64,
ResNet-18 CIFAR 3x3 layers, batch 32, ReLU inputs): F(2x2) 4e-7..6e-7, F(4x4) 3e-6..9e-6 (im2col: 3e-7,
torch's float32: 6e-7..2.6e-6).
"""

from __future__ import annotations

import numpy as np

from ...gemm import batched_gemm, round_up, tile_kernel, tile_nr
from ...gemm import matmul as gemm_matmul
from ...gemm import supported as gemm_supported
from ...shape import fill
from ..epilogue import HAS_RES, Epilogue
from ..workspace import scratch
from .math import G2, G4, weight_transform, weight_transform_panels
from .planes import input_transform2, input_transform4, output_transform
from .rows import (
    fwd_rows_out,
    grad_rows2,
    grad_rows4,
    in_rows2,
    in_rows4,
    pack_phases,
    weight_grad_transform,
)
from .tiles import winograd_tile, winograd_weight_grad_tile

__all__ = ["winograd_weights", "winograd_forward", "winograd_input_grad", "winograd_weight_grad"]

CHUNK_BYTES = 16 << 20  # V + M of one batch chunk (half of L3), or 2x U where that is bigger
FORWARD_LAYOUT: str | None = None  # "planes" / "rows" forces the forward's layout; None: by ROWS_MAX_OW
# The forward runs channels-last ("rows", see .rows) for output planes at most this wide. Measured (2 cores,
# float32, rows vs planes, same m): 4x4x512 b32 F2 7.5 vs 14.5 ms, 8x8x256 b32 F4 5.4 vs 13.8, 16x16x128 b32
# F4 6.0 vs 11.0, 28x28x128 b8 F4 4.3 vs 5.4, but 32x32x64 b32 F4 10.2 vs 9.2, 56x56x64 b8 F4 6.0 vs 6.0.
ROWS_MAX_OW = 28
WGRAD_CHUNK_BYTES = CHUNK_BYTES  # the same for the weight gradient: V + Gy + packed planes, or 2x dU


# --- host-side drivers -------------------------------------------------------------------------------------
SPLIT_GEMMS = True  # see _batched_matmul
_GEMM_POOL: list = []  # [threadpoolctl controller, executor, BLAS thread count], made on first use


def _batched_matmul(u: np.ndarray, v: np.ndarray, mm: np.ndarray) -> None:
    """mm[k] = u[k] @ v[k] for the a*a transform positions. These GEMMs are small (K = C), and a multi-threaded
    BLAS splits and re-synchronises each one; running them single-threaded, one group of k per BLAS thread,
    measured faster on 2 cores (GEMM phase: 56x56x64 F4 3.8 -> 2.9 ms, 28x28x128 F4 3.1 -> 2.6, 7x7x512 F2
    6.7 -> 6.4). BLAS's thread count is lowered to 1 only for the duration of the call."""
    if gemm_supported(u, v, mm):  # the numba GEMM (AVX-512 where the CPU has it; gemm.py), all threads
        gemm_matmul(u, v, mm)
        return
    if not SPLIT_GEMMS:
        np.matmul(u, v, out=mm)
        return
    if not _GEMM_POOL:
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import ThreadpoolController

        ctl = ThreadpoolController()
        nt = max([1] + [d["num_threads"] for d in ctl.info() if d["user_api"] == "blas"])
        _GEMM_POOL.extend([ctl, ThreadPoolExecutor(max(1, nt - 1), thread_name_prefix="winograd-gemm"), nt])
    ctl, pool, nt = _GEMM_POOL
    a2 = u.shape[0]
    groups = min(nt, a2)
    if groups == 1:
        np.matmul(u, v, out=mm)
        return
    bounds = [a2 * g // groups for g in range(groups + 1)]
    with ctl.limit(limits=1, user_api="blas"):
        futs = [pool.submit(np.matmul, u[b0:b1], v[b0:b1], out=mm[b0:b1]) for b0, b1 in zip(bounds[1:-1], bounds[2:])]
        np.matmul(u[:bounds[1]], v[:bounds[1]], out=mm[:bounds[1]])
        for f in futs:
            f.result()


def _streams(role: str, count: int, rows: int, cols: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(flat, view): a (count, rows*cols) scratch workspace as the kernels index it and as the GEMMs take it."""
    flat = scratch(role, (count, rows * cols), dtype)
    return flat, flat.reshape(count, rows, cols)


def winograd_weights(w: np.ndarray, m: int = 2, flip: bool = False, nr: int = 0) -> np.ndarray:
    """U as a new (a*a, O, C) array for w (O, C, 3, 3) (``flip``: (a*a, C, O), the kernel of the input
    gradient), to pass as ``u=`` to :func:`winograd_forward` while w is unchanged (same m). ``nr`` > 0 (see
    :func:`u_panels`): U^T in the GEMM's column panels, (a*a, ceil(O / nr), C, nr), zero-padded, float32."""
    o, c = w.shape[:2]
    if flip:
        o, c = c, o
    a2 = (m + 2) ** 2
    if nr:
        op = round_up(o, nr)
        u = np.empty((a2, op // nr, c, nr), np.float32)
        weight_transform_panels(np.ascontiguousarray(w, np.float32), u, 0 if m == 2 else 1, flip)
        return u
    u = np.empty((a2, o * c), w.dtype)
    weight_transform(np.ascontiguousarray(w), u, G2 if m == 2 else G4, flip)
    return u.reshape(-1, o, c)


def _rows_tile(out_shape, m: int) -> int:
    """The register tile of the channels-last forward's GEMMs M[k] (T, O) = V[k] @ U[k]^T, for the whole batch's
    tiles (every chunk uses it, so one packed U serves them all)."""
    n, o, oh, ow = out_shape
    return tile_kernel(n * -(-oh // m) * -(-ow // m), o)


def u_panels(out_shape, m: int, dtype) -> int:
    """The ``nr`` of the U that :func:`winograd_forward` wants for this output: the channels-last (rows) forward
    on float32 reads U^T already cut into its register tile's column panels (no per-call pack of the whole
    weight inside every GEMM; one thread, 4x4x512 at batch 32, forward with U given: F(2x2) 22.4 -> 17.3 ms,
    F(4x4) 21.3 -> 12.3 ms); else 0 (plain U)."""
    if np.dtype(dtype) != np.float32 or _layout(out_shape[3]) != "rows":
        return 0
    return tile_nr(_rows_tile(out_shape, m))


def _layout(ow: int) -> str:
    return FORWARD_LAYOUT or ("rows" if ow <= ROWS_MAX_OW else "planes")


def winograd_forward(x: np.ndarray, w: np.ndarray, out: np.ndarray, ep: Epilogue, padding,
                     u: np.ndarray | None = None, m: int | None = None, flip: bool = False) -> None:
    """out (N, O, Ho, Wo) = epilogue(conv2d(x, w, stride 1, padding)) for a 3x3 kernel; ``padding`` is
    ((top, bottom), (left, right)) or an int. ``m``: output tile (2, 4; None: :func:`winograd_tile`).
    ``u``: precomputed :func:`winograd_weights` for that m (and ``nr`` = :func:`u_panels`). ``flip``: w is
    (C, O, 3, 3) and the conv uses w.transpose(1, 0)[..., ::-1, ::-1] (the input gradient's kernel)."""
    n, o, oh, ow = out.shape
    if out.size == 0:
        return
    c = x.shape[1]
    if c == 0:  # empty sum: the epilogue of zeros
        y = np.zeros(out.shape, out.dtype)
        ep.apply_inplace(y.reshape(n, o, oh * ow))
        out[...] = y
        return
    (pt, _), (pl, _) = ((padding, padding), (padding, padding)) if np.isscalar(padding) else padding
    m = m or winograd_tile(oh, ow, o, n)
    a2 = (m + 2) ** 2
    x = np.ascontiguousarray(x)
    dt = out.dtype
    nr = u_panels(out.shape, m, dt)
    if u is None and nr:
        op = round_up(o, nr)
        u = scratch("wino_u", (a2, op // nr, c, nr), dt)
        weight_transform_panels(np.ascontiguousarray(w), u, 0 if m == 2 else 1, flip)
    elif u is None:
        uf, u = _streams("wino_u", a2, o, c, dt)
        weight_transform(np.ascontiguousarray(w), uf, G2 if m == 2 else G4, flip)
    th, tw = (oh + m - 1) // m, (ow + m - 1) // m
    res = ep.residual.reshape(out.shape) if ep.flags & HAS_RES else np.zeros((1, 1, 1, 1), dt)
    res = np.ascontiguousarray(res, dt)
    if _layout(ow) == "rows":
        _forward_rows(x, u, out, ep, res, m, pt, pl, th, tw)
        return
    ntile = th * (tw + 1)  # per image, with the junk tile per row (see _input_plane)
    # Chunks of images keep V and M in cache between the passes (1 thread, 56x56x64 F4: 10.5 vs 12.0 ms
    # unchunked), but every chunk's GEMMs re-read U: with 512x512 weights at 7x7 one chunk is best.
    budget = max(CHUNK_BYTES, 2 * u.nbytes)
    nb = max(1, min(n, budget // (a2 * (c + o) * ntile * dt.itemsize)))
    for n0 in range(0, n, nb):
        k = min(nb, n - n0)
        vf, v = _streams("wino_v", a2, c, k * ntile, dt)
        mf, mm = _streams("wino_m", a2, o, k * ntile, dt)
        (input_transform2 if m == 2 else input_transform4)(x, vf, n0, k, pt, pl, th, tw)
        _batched_matmul(u, v, mm)
        output_transform(mf, out, m, n0, k, th, tw, ep.flags, ep.bias, ep.scale, res, ep.act, ep.alpha)


def _forward_rows(x, u, out, ep, res, m, pt, pl, th, tw) -> None:
    """The channels-last forward (:mod:`.rows`), per batch chunk: pack x, V, the
    GEMMs M[k] = V[k] @ U[k]^T, the output transform with the epilogue. u: (a*a, O, C) or its panels."""
    n, o = out.shape[:2]
    c = x.shape[1]
    a2 = (m + 2) ** 2
    dt = out.dtype
    ntile = th * tw
    xrows = m * th + 2
    per_image = (a2 * ntile * (c + o) + xrows * m * (tw + 1) * c) * dt.itemsize
    budget = max(CHUNK_BYTES, 2 * u.nbytes)
    nq = -(-n // max(1, min(n, budget // per_image)))
    nb = -(-n // nq)  # even chunks
    kern = _rows_tile(out.shape, m)
    for n0 in range(0, n, nb):
        k = min(nb, n - n0)
        xs = scratch("wino_fxs", (k, xrows, m, tw + 1, c), dt)
        pack_phases(x, xs, n0, pt, pl, max(1, 512 // x.shape[3]))
        v = scratch("wino_v", (a2, k * ntile, c), dt)
        mm = scratch("wino_m", (a2, k * ntile, o), dt)
        (in_rows2 if m == 2 else in_rows4)(xs, v.reshape(a2, -1), th, tw)
        if u.ndim == 4:  # U^T in panels (u_panels): read in place by the tile
            batched_gemm(v[:, None], c, u, u.shape[3], mm[:, None], o, k * ntile, o, c, kern=kern)
        else:
            _batched_matmul(v, u.transpose(0, 2, 1), mm)
        fwd_rows_out(mm.reshape(a2, -1), out, m, n0, k, th, tw, ep.flags, ep.bias, ep.scale, res, ep.act, ep.alpha)


def winograd_input_grad(gy: np.ndarray, w: np.ndarray, out: np.ndarray, padding, m: int | None = None) -> None:
    """out (N, C, H, W) = the input gradient of y = conv2d(x, w, stride 1, padding) for a 3x3 kernel: the
    stride-1 conv of gy with w[:, :, ::-1, ::-1] transposed to (C, O), padded by 2 - p per side."""
    if out.size == 0:
        return
    if gy.size == 0:
        fill(out, 0)
        return
    (pt, pb), (pl, pr) = ((padding, padding), (padding, padding)) if np.isscalar(padding) else padding
    winograd_forward(gy, w, out, Epilogue(out.dtype), ((2 - pt, 2 - pb), (2 - pl, 2 - pr)), m=m, flip=True)


def winograd_weight_grad(x: np.ndarray, gy: np.ndarray, out: np.ndarray, padding, m: int | None = None) -> None:
    """out (O, C, 3, 3) = the weight gradient of y = conv2d(x, w, stride 1, padding) for a 3x3 kernel, given
    gy (N, O, Ho, Wo); ``padding`` is ((top, bottom), (left, right)) or an int. ``m``: output tile (2, 4; None:
    :func:`winograd_weight_grad_tile`). Per batch chunk: pack x and gy channels-last, transform them into V and
    Gy, dU[k] = Gy[k]^T @ V[k] (a*a GEMMs); then dW = G^T dU G summed over the chunks (see the "weight gradient"
    section of :mod:`.rows`). x and gy are cast to out's dtype."""
    o, c = out.shape[:2]
    if out.size == 0:
        return
    n, _, oh, ow = gy.shape
    if gy.size == 0:
        fill(out, 0)
        return
    (pt, _), (pl, _) = ((padding, padding), (padding, padding)) if np.isscalar(padding) else padding
    m = m or winograd_weight_grad_tile(oh, ow)
    a2 = (m + 2) ** 2
    dt = out.dtype
    x, gy = np.ascontiguousarray(x, dt), np.ascontiguousarray(gy, dt)
    h, w = x.shape[2:]
    th, tw = (oh + m - 1) // m, (ow + m - 1) // m
    ntile = th * tw
    xrows, grows = m * th + 2, m * th
    # Chunks of images keep V, Gy and the packed planes of one chunk in cache between the passes and the GEMMs;
    # every chunk adds one partial dU (summed by the final transform), so large weights take one chunk.
    per_image = (a2 * ntile * (c + o) + xrows * m * (tw + 1) * c + grows * m * tw * o) * dt.itemsize
    budget = max(WGRAD_CHUNK_BYTES, 2 * a2 * o * c * dt.itemsize)
    nq = -(-n // max(1, min(n, budget // per_image)))
    nb = -(-n // nq)  # even chunks
    duf = scratch("wino_du", (nq, a2, o * c), dt)
    du = duf.reshape(nq, a2, o, c)
    for q in range(nq):
        n0 = q * nb
        k = min(nb, n - n0)
        xs = scratch("wino_xs", (k, xrows, m, tw + 1, c), dt)
        gs = scratch("wino_gs", (k, grows, m, tw, o), dt)
        pack_phases(x, xs, n0, pt, pl, max(1, 512 // w))
        pack_phases(gy, gs, n0, 0, 0, max(1, 512 // ow))
        v = scratch("wino_v", (a2, k * ntile, c), dt)
        gm = scratch("wino_m", (a2, k * ntile, o), dt)
        (in_rows2 if m == 2 else in_rows4)(xs, v.reshape(a2, -1), th, tw)
        (grad_rows2 if m == 2 else grad_rows4)(gs, gm.reshape(a2, -1), th, tw)
        _batched_matmul(gm.transpose(0, 2, 1), v, du[q])  # dU[k] (O, C) = Gy[k]^T @ V[k], inner dimension T
    weight_grad_transform(duf, out, G2 if m == 2 else G4, max(1, min(4096 // c, o // 8)))
