"""Which algorithm a dense ``blocked_conv2d`` runs: ``blocked-direct`` (the register-tiled direct kernel) or
``blocked-winograd-f2`` (:mod:`.winograd`, 3x3 stride 1 dilation 1 only). The policy is the conv policy of the
numba backend (:func:`..conv.select.conv_policy`): the heuristic by default, both measured per shape under
``"measure"`` (``CONVGRAPH_CONV_ALGO=measure`` or ``compile(..., autotune=True)``), or a forced name.

``blocked-winograd-f4`` (F(4x4, 3x3): 2.25 multiplies per output where F(2x2) does 4) runs only where forced: its
transforms (coefficients up to 8 and 1/24) leave float32 errors of up to 7e-5 relative on 256- and 512-channel
layers with He-initialized weights (F(2x2): 6e-6, direct: 1e-5), too close to the rtol 1e-4 that compiled results
promise against eager ones to be a default or a timing's pick."""

from __future__ import annotations

from collections.abc import Callable

from ...conv_policy import Choice
from ..conv.select import _best_ms, conv_policy
from ..conv.workspace import throwaway

DIRECT, WINOGRAD = "blocked-direct", "blocked-winograd-f2"
WINOGRAD4 = "blocked-winograd-f4"  # forced only (CONVGRAPH_CONV_ALGO): see the module docstring
WINOGRADS = {WINOGRAD: 2, WINOGRAD4: 4}  # name -> output tile size m of F(m x m, 3x3)
_CACHE: dict[tuple, Choice] = {}


# Winograd from this many 2x2 output tiles per layer: below, the transformed weights (16/9 of the direct kernel's
# bytes) are streamed for too little work (CPU ms on one core, direct vs Winograd, 512 -> 512 channels at batch 1:
# 2x2 output (1 tile) 0.51 vs 1.00, 4x4 (4) 1.08 vs 1.20, 6x6 (9) 1.91 vs 1.14; batch 2 at 4x4 (8) 1.88 vs 1.25)
MIN_TILES = 8


def candidates(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride, padding, dilation) -> list[str]:
    """The algorithms that can run this dense blocked layer, the heuristic's pick first: Winograd where it applies
    (3x3, stride 1, dilation 1) on at least :data:`MIN_TILES` tiles. Measured on one core (2-core Zen 4, bias +
    ReLU, CPU ms direct vs Winograd): ResNet-18 batch 8 56x56x64 18.8 vs 9.3, 28x28x128 17.9 vs 10.7, 14x14x256
    17.5 vs 8.5, 7x7x512 17.2 vs 11.0; ResNet-50 batch 1 56x56x64 2.28 vs 1.13 .. 7x7x512 2.23 vs 1.92; small
    layers (3 -> 64 channels at 32x32, 8 -> 8, 16 -> 32, 64 -> 64 at 4x4) 0.57-0.91x."""
    kh, kw = w_shape[2:]
    if (kh, kw) != (3, 3) or tuple(stride) != (1, 1) or tuple(dilation) != (1, 1):
        return [DIRECT]
    (pt, pb), (pl, pr) = padding
    tiles = x_shape[0] * -(-(x_shape[2] + pt + pb - 2) // 2) * -(-(x_shape[3] + pl + pr - 2) // 2)
    return [WINOGRAD, DIRECT] if tiles >= MIN_TILES else [DIRECT, WINOGRAD]


def _key(x_shape, w_shape, stride, padding, dilation) -> tuple:
    return tuple(x_shape), tuple(w_shape), tuple(stride), tuple(map(tuple, padding)), tuple(dilation)


def choose(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride, padding, dilation,
           run: Callable[[str], None] | None = None) -> Choice:
    """The algorithm under the current policy; ``run(algorithm)`` runs the layer into scratch memory (needed only
    to measure: the best of 3 timed runs after an untimed one, cached per shape for the process)."""
    cands = candidates(x_shape, w_shape, stride, padding, dilation)
    policy = conv_policy()
    if len(cands) == 1:
        return Choice(cands[0], "only")
    if policy in cands or (policy == WINOGRAD4 and WINOGRAD in cands):
        return Choice(policy, "forced")
    key = _key(x_shape, w_shape, stride, padding, dilation)
    hit = _CACHE.get(key)
    if policy != "measure" or (hit is None and run is None):
        return Choice(cands[0], "heuristic")
    if hit is None:
        with throwaway():
            times = {a: _best_ms(run, a) for a in cands}
        hit = _CACHE[key] = Choice(min(times, key=times.get), "measured", times)
    return hit


def clear_cache() -> None:
    _CACHE.clear()
