"""The 3x3 stride-1 weight gradient by Winograd F(m x m, 3x3), m = 2 or 4, on channel-blocked x and gy
(N, ceil(C/VL), H, W, VL): :func:`weight_grad3x3`, and :func:`weight_grad_nchw` for NCHW callers (algorithms
``nchwc-winograd-f2`` / ``-f4`` of the weight_grad role: both reordered into scratch first).

With the forward's tile y_t = A^T [U * V_t] A (U = G w G^T, V_t = B^T d_t B), dL/dU[k] (O, C) = sum over tiles t
of Gy_t[k][o] V_t[k][c] with Gy_t = A gy_t A^T, and dW = G^T dU G. Per batch chunk, two parallel passes transform
every (image, channel block) plane, first copied into a per-thread zero-padded plane (no border tiles), with one
16-lane vector op per tile and transform entry (the blocked forward's ``input_tile`` for V, ``grad_tile``
for Gy), straight into the layouts the register tile reads in place:

- V (a*a, C/NR, T, NR): the B operand in NR = 2*VL column panels (two input-channel blocks side by side),
- Gy (a*a, O/VL, T, VL): the A operand, A(o, t) at stride 1 along o and VL along t.

Then items of (MR-row groups of output channels, one column panel) run the a*a GEMMs dU[k] = Gy[k]^T V[k] over
the chunk's tiles (an MR x NR register tile, KC tiles per step so the B block stays in L1), accumulated over
the chunks in the item's own dU block, and after the last chunk transform that block into dW (:func:`taps`,
vectorized over the panel's lanes) and write the real (o, c) pairs of out. Each dU element is summed over the
tiles in one fixed order whatever the thread count (no cross-thread reduction): the result is deterministic.

F(4x4) uses the blocked kernel's points 0, +-1, 1/2, -2 (:mod:`..blocked.transforms`). Float32 error (max |err| /
max |gW| against a float64 reference, ReLU-like inputs): F(2x2) ~1e-6, F(4x4) ~1e-5 at 64-512 channels and batch
32 (the transforms' coefficients up to 8 and their sums over many tiles; the NCHW Winograd weight gradient's
F(4x4): 3e-6..9e-6).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .._layout import serial_twin
from ..blocked.transforms import AT2, AT4, G4, input_tile_m
from ..gemm import VL, make_tile
from .sandwich import make_sandwich
from .winograd.math import G2
from .workspace import current_workspace, scratch

MR, NR = 8, 2 * VL  # register tile: MR output channels (rows of a VL block, so Gy needs no padding) x 2 vectors
KC = 128  # tiles per tile call: the B block (KC x NR) and the A rows stay in L1
DU_BYTES = 256 << 10  # an item's dU block (a*a x rows x NR), in L2 while the item runs
CHUNK_BYTES = 16 << 20  # V + Gy of one batch chunk (half of L3)
_tile = make_tile(MR, 2)


# Gy = A g A^T of an m x m gradient tile (A = (A^T)^T, a x m); dW = G^T dU G of an a x a dU block (G: a x 3)
grad_tile2, grad_tile4 = make_sandwich(np.asarray(AT2).T), make_sandwich(np.asarray(AT4).T)
taps2, taps4 = make_sandwich(np.asarray(G2).T), make_sandwich(np.asarray(G4).T)
taps2_out, taps4_out = make_sandwich(np.asarray(G2).T, True), make_sandwich(np.asarray(G4).T, True)


@njit(cache=True)
def _pad_plane(src, dst, r0, c0):
    """dst (Hp, Wp*VL flat rows) = zeros with src (H, W, VL) placed at row r0, column c0."""
    hp, wrow = dst.shape
    h, w = src.shape[0], src.shape[1]
    lo, hi = c0 * VL, (c0 + w) * VL
    for r in range(hp):
        row = dst[r]
        y = r - r0
        if y < 0 or y >= h:
            row[:] = 0
            continue
        s = src[y].reshape(-1)
        row[:lo] = 0
        for e in range(hi - lo):
            row[lo + e] = s[e]
        row[hi:] = 0


@njit(cache=True)
def _pad_nchw(x, n, c0, dst, r0, cl):
    """dst (Hp, Wp*VL flat rows) = zeros with channels c0 .. c0 + VL - 1 of the NCHW image x[n] placed at row r0,
    column cl, lane by lane (channels past C: zero lanes)."""
    dst[:] = 0
    h, w = x.shape[2], x.shape[3]
    for q in range(min(VL, x.shape[1] - c0)):
        plane = x[n, c0 + q]
        for y in range(h):
            src, row = plane[y], dst[r0 + y]
            for z in range(w):
                row[(cl + z) * VL + q] = src[z]


@njit(cache=True, inline="always")
def _gy_tile(m, src, rs, dst, xs):
    if m == 2:
        grad_tile2(src, rs, VL, dst, xs)
    else:
        grad_tile4(src, rs, VL, dst, xs)


@njit(parallel=True, cache=True)
def _transforms(xb, gyb, x4, gy4, nchw, ncb, ob, n0, nimg, pt, pl, m, th, tw, v, gm, xpad, gpad):
    """V and Gy of images n0 .. n0 + nimg - 1: v[k] (CG, T, NR), gm[k] (OB, T, VL) flat in rows of v and gm
    (:func:`_pitch`), tile t = (i*th + ty)*tw + tx; xpad / gpad per-thread padded planes. An odd input block
    count leaves the last panel's upper half as it was: its dU columns are past C, never read. ``nchw``: read
    x4 / gy4 (N, C, H, W) straight into the padded planes instead of the blocked xb / gyb (no blocked copy)."""
    ntile = nimg * th * tw
    hp, wp = m * th + 2, m * tw + 2
    vx, gx = v.shape[1], gm.shape[1]  # element strides between transform positions
    v_addr, g_addr = v.ctypes.data, gm.ctypes.data
    for q in prange(nimg * ncb):
        i, cb = q // ncb, q % ncb
        panel, half = cb // 2, cb % 2
        t0 = i * th * tw
        pad = xpad[numba.get_thread_id()][:hp * wp * VL].reshape(hp, wp * VL)
        if nchw:
            _pad_nchw(x4, n0 + i, cb * VL, pad, pt, pl)
        else:
            _pad_plane(xb[n0 + i, cb], pad, pt, pl)
        p_addr = pad.ctypes.data
        for ty in range(th):
            for tx in range(tw):
                dst = v_addr + ((panel * ntile + t0 + ty * tw + tx) * NR + half * VL) * 4
                input_tile_m(m, p_addr + ((m * ty) * wp + m * tx) * VL * 4, wp * VL, dst, vx)
    gh, gw = m * th, m * tw
    whole = not nchw and gyb.shape[2] == gh and gyb.shape[3] == gw  # whole tiles: gy read in place
    for q in prange(nimg * ob):
        i, b = q // ob, q % ob
        t0 = i * th * tw
        if whole:
            p_addr = gyb[n0 + i, b].ctypes.data
        else:
            pad = gpad[numba.get_thread_id()][:gh * gw * VL].reshape(gh, gw * VL)
            if nchw:
                _pad_nchw(gy4, n0 + i, b * VL, pad, 0, 0)
            else:
                _pad_plane(gyb[n0 + i, b], pad, 0, 0)
            p_addr = pad.ctypes.data
        for ty in range(th):
            for tx in range(tw):
                dst = g_addr + ((b * ntile + t0 + ty * tw + tx) * VL) * 4
                _gy_tile(m, p_addr + ((m * ty) * gw + m * tx) * VL * 4, gw * VL, dst, gx)


@njit(cache=True, inline="always")
def _taps(m, src, ss, dst, ds):
    if m == 2:
        taps2(src, 4 * ss, ss, dst, ds)
    else:
        taps4(src, 6 * ss, ss, dst, ds)


@njit(cache=True, inline="always")
def _taps_out(m, src, ss, dst):
    if m == 2:
        taps2_out(src, 4 * ss, ss, dst, 0)
    else:
        taps4_out(src, 6 * ss, ss, dst, 0)


@njit(parallel=True, cache=True)
def _gemms(v, gm, cgn, ob, ntile, du, out, rows, first, last, per_item, m, tmp):
    """dU[k] (+)= Gy[k]^T V[k] over the chunk's tiles for items of (``rows`` output channels, one NR-column
    panel), into du[item] (``per_item``: kept over the chunks) or du[thread]: dU[k] (rows, NR) at k*kst; ``first``:
    start from zero; ``last``: then out[o, c] = G^T dU G for the item's real channels (tmp: per-thread 9 x VL)."""
    npos, vx, gx = v.shape[0], v.shape[1], gm.shape[1]
    kst = du.shape[1] // npos
    no, nc = out.shape[0], out.shape[1]
    nog = (ob * VL + rows - 1) // rows
    v_addr, g_addr = v.ctypes.data, gm.ctypes.data
    for it in prange(nog * cgn):
        og, cg = it // cgn, it % cgn
        o0 = og * rows
        nrow = min(rows, ob * VL - o0)
        buf = du[it] if per_item else du[numba.get_thread_id()]
        b_base = buf.ctypes.data
        for k in range(npos):
            for t0 in range(0, ntile, KC):
                kc = min(KC, ntile - t0)
                b_addr = v_addr + (k * vx + (cg * ntile + t0) * NR) * 4
                add = t0 > 0 or not first
                for r0 in range(0, nrow, MR):
                    o = o0 + r0
                    a_addr = g_addr + (k * gx + ((o // VL) * ntile + t0) * VL + o % VL) * 4
                    _tile(kc, a_addr, 1, VL, b_addr, NR, b_base + (k * kst + r0 * NR) * 4, NR, add)
        if not last:
            continue
        t = tmp[numba.get_thread_id()]
        for r in range(min(nrow, no - o0)):
            for h in range(2):
                c0 = cg * NR + h * VL
                if c0 >= nc:
                    break
                src = b_base + (r * NR + h * VL) * 4
                if c0 + VL <= nc:  # a whole block: its VL x 9 taps straight into out[o, c0:c0 + VL] (contiguous)
                    _taps_out(m, src, kst, out.ctypes.data + ((o0 + r) * nc + c0) * 9 * 4)
                    continue
                _taps(m, src, kst, t.ctypes.data, VL)
                dst = out[o0 + r]
                for c in range(nc - c0):
                    for rs in range(9):
                        dst[c0 + c, rs] = t[rs * VL + c]


_transforms_serial, _gemms_serial = serial_twin(_transforms), serial_twin(_gemms)
SERIAL_MACS = 1 << 21  # below this many multiply-adds (of the GEMMs), one thread: a parallel launch costs more


def _pitch(size: int) -> int:
    """The row length (floats) of V and Gy for ``size`` floats per transform position: 16 floats (a cache line)
    past a whole 4 KiB, so a tile's a*a stores fall into a*a different L1 sets (at a multiple of 4 KiB they all
    hit one set: one thread, 64 channels at 32x32, batch 32, F(4x4): transforms 7.5 -> 3.8 ms, GEMMs 8.6 -> 6.0)."""
    return -(-size // 1024) * 1024 + 16


def _rows_per_item(op: int, cgn: int, npos: int, threads: int) -> int:
    """Output channels per GEMM item: ``op`` (a multiple of MR) cut into equal groups of whole MR, the fewest that
    keep an item's dU block within :data:`DU_BYTES` and give at least 4 items per thread (groups of unequal size
    left a thread most of the work: 128 channels in groups of 56, 56, 16 on two threads)."""
    units, most = op // MR, max(1, DU_BYTES // (npos * NR * 4 * MR))
    groups = -(-units // most)
    while units % groups or (groups < units and groups * cgn < 4 * threads):
        groups += 1
    return units // groups * MR


def _check(xb: np.ndarray, gyb: np.ndarray, out: np.ndarray, pt: int, pb: int, pl: int, pr: int, m: int) -> None:
    if m not in (2, 4):
        raise ValueError(f"weight_grad3x3: m must be 2 or 4, got {m}")
    if not (xb.dtype == gyb.dtype == out.dtype == np.float32):
        raise TypeError(f"weight_grad3x3: float32 only, got x {xb.dtype}, gy {gyb.dtype}, out {out.dtype}")
    if xb.ndim != 5 or gyb.ndim != 5 or xb.shape[4] != VL or gyb.shape[4] != VL:
        raise ValueError(f"weight_grad3x3: x and gy must be blocked (N, CB, H, W, {VL}), got {xb.shape} and "
                         f"{gyb.shape}")
    o, c = out.shape[:2]
    n, _, h, w, _ = xb.shape
    want = (n, -(-o // VL), h + pt + pb - 2, w + pl + pr - 2, VL)
    if out.shape[2:] != (3, 3) or xb.shape[1] != -(-c // VL) or gyb.shape != want:
        raise ValueError(f"weight_grad3x3: out {out.shape} (O, C, 3, 3) needs x (N, {-(-c // VL)}, H, W, {VL}) and "
                         f"gy {want}, got x {xb.shape} and gy {gyb.shape}")


def weight_grad3x3(xb: np.ndarray, gyb: np.ndarray, out: np.ndarray, padding, m: int) -> None:
    """out (O, C, 3, 3) = the weight gradient of y = conv2d(x, w, stride 1, padding) for a 3x3 kernel by
    F(m x m, 3x3), from blocked x (N, ceil(C/VL), H, W, VL) and gy (N, ceil(O/VL), Ho, Wo, VL), float32, their
    pad lanes zero. ``padding``: ((top, bottom), (left, right)) or an int."""
    (pt, pb), (pl, pr) = ((padding, padding), (padding, padding)) if np.isscalar(padding) else padding
    _check(xb, gyb, out, pt, pb, pl, pr, m)
    _weight_grad(xb, gyb, _DUMMY4, _DUMMY4, False, xb.shape[1], gyb.shape[:4], out, pt, pl, m)


def weight_grad_nchw(x: np.ndarray, gy: np.ndarray, out: np.ndarray, padding, m: int) -> None:
    """:func:`weight_grad3x3` for NCHW x (N, C, H, W) and gy (N, O, Ho, Wo), float32: each (image, block of VL
    channels) is moved into the kernel's padded plane directly (one thread, R18 CIFAR b32 F(4x4), CPU ms, against
    reordering both to the blocked layout first: 64@32 11.8 vs 14.7, 128@16 8.1 vs 11.3)."""
    (pt, _), (pl, _) = ((padding, padding), (padding, padding)) if np.isscalar(padding) else padding
    x, gy = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(gy, np.float32)
    n, o, oh, ow = gy.shape
    _weight_grad(_DUMMY5, _DUMMY5, x, gy, True, -(-x.shape[1] // VL), (n, -(-o // VL), oh, ow), out, pt, pl, m)


_DUMMY4, _DUMMY5 = np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 1, 1, 1, VL), np.float32)


def _weight_grad(xb, gyb, x4, gy4, nchw: bool, ncb: int, gshape: tuple[int, ...], out: np.ndarray, pt: int, pl: int,
                 m: int) -> None:
    """The host side of both: chunks, items, scratch; gshape = (N, OB, Ho, Wo) of the gradient."""
    o, c = out.shape[:2]
    if out.size == 0:
        return
    n, ob, oh, ow = gshape
    if n == 0 or oh <= 0 or ow <= 0:
        out[...] = 0
        return
    npos = (m + 2) ** 2
    th, tw = -(-oh // m), -(-ow // m)
    cgn = -(-ncb // 2)
    op = ob * VL
    per_image = npos * th * tw * (cgn * NR + op) * 4
    nq = -(-n // max(1, min(n, CHUNK_BYTES // per_image)))
    nb = -(-n // nq)  # even chunks
    serial = n * oh * ow * o * c * 9 < SERIAL_MACS
    threads = 1 if serial else numba.get_num_threads()
    rows = _rows_per_item(op, cgn, npos, threads)
    nitem = -(-op // rows) * cgn
    ws = current_workspace()
    kst = rows * NR + VL  # dU[k] of an item, a cache line past rows*NR (as _pitch: a*a loads of one lane block)
    du = ws.get("nchwc_wg_du", (nitem, npos * kst), np.float32) if nq > 1 else \
        ws.per_thread("nchwc_wg_du", npos * kst)
    xpad = ws.per_thread("nchwc_wg_xpad", (m * th + 2) * (m * tw + 2) * VL)
    gpad = ws.per_thread("nchwc_wg_gpad", m * th * m * tw * VL)
    tmp = ws.per_thread("nchwc_wg_taps", 9 * VL)
    dst = out if out.flags.c_contiguous else np.empty(out.shape, np.float32)
    out9 = dst.reshape(o, c, 9)
    transforms, gemms = (_transforms_serial, _gemms_serial) if serial else (_transforms, _gemms)
    for q in range(nq):
        n0 = q * nb
        k = min(nb, n - n0)
        v = scratch("nchwc_wg_v", (npos, _pitch(cgn * k * th * tw * NR)), np.float32)
        gm = scratch("nchwc_wg_gy", (npos, _pitch(ob * k * th * tw * VL)), np.float32)
        transforms(xb, gyb, x4, gy4, nchw, ncb, ob, n0, k, pt, pl, m, th, tw, v, gm, xpad, gpad)
        gemms(v, gm, cgn, ob, k * th * tw, du, out9, rows, q == 0, q == nq - 1, nq > 1, m, tmp)
    if dst is not out:
        out[...] = dst
