"""Where Winograd applies and which output tile it uses (pure shape arithmetic: the selection reads it without
loading the transform kernels)."""

from __future__ import annotations

from typing import Any

MAX_TILE = 4  # set 2 to keep every layer on F(2x2) (its float32 error is ~20x smaller, see .driver)


def winograd_applicable(x_shape: Any, w_shape: Any, attrs: dict[str, Any]) -> bool:
    """3x3 kernel, stride 1, dilation 1, groups 1, padding 0..2 per side (so the input gradient, padded by
    2 - p, is one too)."""
    w_shape = tuple(getattr(w_shape, "shape", w_shape))
    if len(w_shape) != 4 or w_shape[2:] != (3, 3):
        return False
    if tuple(attrs["stride"]) != (1, 1) or tuple(attrs["dilation"]) != (1, 1) or attrs["groups"] != 1:
        return False
    return all(0 <= p <= 2 for side in attrs["padding"] for p in side)


def winograd_tile(oh: int, ow: int, o: int, n: int) -> int:
    """Output tile size m (2 or 4). F(4x4) needs 36 multiplies per 16 outputs against F(2x2)'s 16 per 4, but its
    transforms cost more per element, its weights U are 36*O*C (re-read by the GEMMs, re-made per call) and the
    junk tile per tile row (see :mod:`.planes`) wastes more of a small plane. So F(4x4) only where it does
    under 70% of F(2x2)'s multiplies and has at least as many tiles per GEMM as output channels (its U is then no
    bigger than its V). Measured at batch 8 on 2 cores (ResNet-18 layers, float32, F4 vs F2): 56x56x64 5.8 vs
    7.5 ms, 28x28x128 5.9 vs 6.8, 14x14x256 8.5 vs 7.0, 7x7x512 13.1 vs 11.3."""
    th2, tw2, th4, tw4 = (oh + 1) // 2, (ow + 1) // 2, (oh + 3) // 4, (ow + 3) // 4
    mul2, mul4 = 16 * th2 * (tw2 + 1), 36 * th4 * (tw4 + 1)
    return 4 if MAX_TILE >= 4 and mul4 < 0.7 * mul2 and n * th4 * (tw4 + 1) >= o else 2


def winograd_weight_grad_tile(oh: int, ow: int) -> int:
    """Output tile size m for the weight gradient: 4 where F(4x4) needs under 70% of F(2x2)'s GEMM work (36
    per 4x4 tile against 16 per 2x2 tile; no junk tiles here), else 2. Measured on ResNet-18 CIFAR at batch 32
    (2 cores, float32, F4 vs F2): 32x32x64 7.0 vs 10.2 ms, 16x16x128 5.0 vs 7.2, 8x8x256 4.6 vs 6.5, 4x4x512
    6.6 vs 7.3."""
    th2, tw2, th4, tw4 = (oh + 1) // 2, (ow + 1) // 2, (oh + 3) // 4, (ow + 3) // 4
    return 4 if MAX_TILE >= 4 and 36 * th4 * tw4 < 0.7 * 16 * th2 * tw2 else 2
