"""Per-layer convolution timing: the numba NCHW path (heuristic algorithm, its fused epilogue) against the blocked
direct kernel on the same layer (reorders excluded), in one process, interleaved, inside an executor context
(constant weights packed once, as in a compiled graph):
``python bench/blocked_layers.py [--rounds 5]``. GFLOP/s count 2 x MACs; the peak row is the blocked kernel on a
cache-resident layer (its register tile's practical peak on this machine)."""

from __future__ import annotations

import argparse
import functools
import statistics

import numpy as np
from _timing import best

import backends.numba  # noqa: F401 - registers the kernels
from engine import Spec
from engine.backend import get_backend
from engine.primitive import PRIMITIVES

# name, (N, C, H, W), (O, kh, stride, pad, groups)
LAYERS = [
    ("peak: 1x1 256->256 14x14 (L2-resident)", (1, 256, 14, 14), (256, 1, 1, 0, 1)),
    ("R50 stem 7x7/2 3->64 224", (1, 3, 224, 224), (64, 7, 2, 3, 1)),
    ("R50 1x1 64->256 56", (1, 64, 56, 56), (256, 1, 1, 0, 1)),
    ("R50 3x3 64->64 56", (1, 64, 56, 56), (64, 3, 1, 1, 1)),
    ("R50 3x3 128->128 28", (1, 128, 28, 28), (128, 3, 1, 1, 1)),
    ("R50 3x3 256->256 14", (1, 256, 14, 14), (256, 3, 1, 1, 1)),
    ("R50 1x1 1024->256 14", (1, 1024, 14, 14), (256, 1, 1, 0, 1)),
    ("R50 3x3 512->512 7", (1, 512, 7, 7), (512, 3, 1, 1, 1)),
    ("R50 1x1 512->2048 7", (1, 512, 7, 7), (2048, 1, 1, 0, 1)),
    ("R18 b8 3x3 64->64 56", (8, 64, 56, 56), (64, 3, 1, 1, 1)),
    ("R18 b8 3x3 512->512 7", (8, 512, 7, 7), (512, 3, 1, 1, 1)),
    ("MNv2 dw 3x3 144 56", (1, 144, 56, 56), (144, 3, 1, 1, 144)),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    nb = get_backend("numba")
    rng = np.random.default_rng(0)
    for name, xs, (o, k, s, p, g) in LAYERS:
        n, c, h, w = xs
        x = rng.standard_normal(xs, dtype=np.float32)
        wt = rng.standard_normal((o, c // g, k, k), dtype=np.float32)
        b = rng.standard_normal(o, dtype=np.float32)
        wt.setflags(write=False)  # a compiled graph's folded constant: both paths keep their packed weights
        ctx = nb.prepare([wt])
        attrs = dict(stride=(s, s), padding=((p, p), (p, p)), dilation=(1, 1), groups=g, has_bias=True,
                     has_residual=False, activation="relu", act_attrs=())
        y = np.empty(PRIMITIVES["fused_conv2d"].abstract_eval(Spec(xs, np.float32), Spec(wt.shape, np.float32),
                                                             Spec(b.shape, np.float32), **attrs)[0].shape, np.float32)
        xb = np.empty((n, -(-c // 16), h, w, 16), np.float32)
        nb.kernel("to_blocked")(x, out=xb, block=16)
        yb = np.empty((n, -(-o // 16)) + y.shape[2:] + (16,), np.float32)
        nchw = functools.partial(nb.kernel("fused_conv2d"), x, wt, b, out=y, **attrs)
        blocked = functools.partial(nb.kernel("blocked_conv2d"), xb, wt, b, out=yb, **attrs)
        t = {"nchw": [], "blocked": []}
        with ctx:
            nchw(), blocked()
            for _ in range(args.rounds):
                t["nchw"].append(best(nchw))
                t["blocked"].append(best(blocked))
        flops = 2 * y.size * (c // g) * k * k
        med = {key: statistics.median(v) for key, v in t.items()}
        print(f"{name:36s} nchw {med['nchw'] * 1e3:7.3f} ms ({flops / med['nchw'] / 1e9:6.1f} GFLOP/s)  "
              f"blocked {med['blocked'] * 1e3:7.3f} ms ({flops / med['blocked'] / 1e9:6.1f} GFLOP/s)  "
              f"blocked/nchw {med['blocked'] / med['nchw']:.2f}", flush=True)


if __name__ == "__main__":
    main()
