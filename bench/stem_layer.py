"""The first convolution of a network reading its NCHW image (``blocked_conv2d`` with ``block`` set): the stem
kernel (backends/numba/blocked/stem.py: the image read in place, borders apart) against the way it ran before (a
zero-padded copy of the image, then the generic blocked direct kernel of blocked/conv.py through NCHW offset
tables), in one process, rounds interleaved (the order alternating):
``python bench/stem_layer.py [--rounds 15] [--reps 20] [--batch 1] [--layers mobilenet_v2,resnet] [--gap MS]
[--cold]``. ``--gap``: an untimed sleep before each call, so that numba's workers are asleep when it starts (as at a
network's first layer after the caller's own work); ``--cold``: 64 MiB written before each call (untimed), so that
the image and the output come from memory, as in a network.

Prints per layer each variant's median of per-round medians (us; CPU time of the calling thread with
``NUMBA_NUM_THREADS=1``, wall time otherwise), the median of the per-round ratios stem / padded and the load
average."""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

import numba
import numpy as np

import backends.numba  # noqa: F401 - registers the kernels
from backends.numba.blocked import conv as bconv
from backends.numba.blocked import steal
from backends.numba.blocked.stem import stem_call
from backends.numba.gemm import VL
from engine.ops.blocked import blocks

# name -> (C, O, H, W, k, stride, pad): MobileNetV2's features.0 (ReLU6) and ResNet's conv1 (ReLU)
LAYERS = {"mobilenet_v2": (3, 32, 224, 224, 3, 2, 1, 0.0, 6.0), "resnet": (3, 64, 224, 224, 7, 2, 3, 0.0, np.inf)}


def _nchw_tables(c, hp, wp, k, s, oh, ow):
    """The offset tables of the generic direct kernel over a padded NCHW image (dilation 1), in the reduction order
    of ``conv.pack_dense``: rows[y*ow + x] = y*s*wp + x*s (whole MR tiles), channel b*VL + q at (b*VL + q)*hp*wp
    (what conv.offset_tables built for this path before the stem kernel replaced it)."""
    pix = (np.arange(oh)[:, None] * (s * wp) + np.arange(ow)[None, :] * s).ravel()
    rows = np.zeros(blocks(pix.size, bconv.MR) * bconv.MR, np.int64)
    rows[:pix.size] = pix
    chan = (np.arange(blocks(c, VL))[:, None, None, None] * VL + np.arange(VL)[None, None, None, :]) * (hp * wp)
    taps = ((np.arange(k)[None, :, None, None] * wp + np.arange(k)[None, None, :, None]) + chan).ravel()
    return rows, taps[bconv._valid_lanes(c, k, k)].astype(np.int64)


def _padded(x, w, b, out, s, p, lo, hi):
    """The call as blocked/conv.py built it for an NCHW image before the stem kernel: pad, then ``_conv_dense``."""
    n, c, h, wd = x.shape
    k = w.shape[2]
    _, ob, oh, ow, _ = out.shape
    hp, wp = h + 2 * p, wd + 2 * p
    xp = np.empty((n, c, hp, wp, 1), np.float32)
    rows, taps = _nchw_tables(c, hp, wp, k, s, oh, ow)
    wpk = bconv.pack_dense(w)
    bias = bconv._pad_bias(b, wpk.shape[0] * bconv.NV * VL)
    sbuf = np.zeros((numba.config.NUMBA_NUM_THREADS, 2 * bconv.NV * bconv.MR * VL), np.float32)
    ntiles = blocks(oh * ow, bconv.MR)
    segs, starts = bconv.dense_schedule(n, ob, ntiles, bconv.GROUP, wpk.nbytes <= bconv.PIX_MAJOR_BYTES,
                                        numba.get_num_threads())
    out4 = out.reshape(n, ob, oh * ow, VL)
    pad = functools.partial(bconv.pad_blocked, x.reshape(n, c, h, wd, 1), xp, p, p)
    conv = functools.partial(bconv._conv_dense, xp.reshape(n, -1), rows, taps, wpk, bias, out4, out4, False, lo, hi,
                             False, sbuf, steal.flags_for(segs.shape[0]), segs, starts, bconv.KC)
    return lambda: (pad(), conv())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--layers", default=",".join(LAYERS))
    ap.add_argument("--gap", type=float, default=0.0, help="ms of sleep before each call")
    ap.add_argument("--cold", action="store_true", help="evict the caches before each call")
    args = ap.parse_args()
    clock = time.thread_time if os.environ.get("NUMBA_NUM_THREADS") == "1" else time.perf_counter
    rng = np.random.default_rng(0)
    junk = np.zeros(16 << 20, np.float32) if args.cold else None
    for name in args.layers.split(","):
        c, o, h, wd, k, s, p, lo, hi = LAYERS[name]
        x = rng.standard_normal((args.batch, c, h, wd), dtype=np.float32)
        w = rng.standard_normal((o, c, k, k), dtype=np.float32)
        b = rng.standard_normal(o, dtype=np.float32)
        oh, ow = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
        outs = {v: np.empty((args.batch, blocks(o, VL), oh, ow, VL), np.float32) for v in ("padded", "stem")}
        stem, fill = stem_call(x, w, b, outs["stem"], outs["stem"], False, (s, s, p, p, 1, 1), lo, hi, True)
        fns = {"padded": _padded(x, w, b, outs["padded"], s, p, lo, hi), "stem": stem}
        for f in fns.values():
            f()
        np.testing.assert_allclose(outs["stem"], outs["padded"], rtol=1e-4, atol=1e-4)
        res: dict[str, list[float]] = {v: [] for v in fns}
        for r in range(args.rounds):
            for v in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                ts = []
                for _ in range(args.reps):
                    if args.gap:
                        time.sleep(args.gap / 1e3)
                    if junk is not None:
                        junk += 1.0
                    t0 = clock()
                    fns[v]()
                    ts.append(clock() - t0)
                res[v].append(statistics.median(ts) * 1e6)
        ratio = statistics.median(a / b for a, b in zip(res["stem"], res["padded"]))
        print(f"{name} b{args.batch}: " + ", ".join(f"{v} {statistics.median(t):.1f} us" for v, t in res.items()) +
              f", stem/padded {ratio:.3f}, load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
