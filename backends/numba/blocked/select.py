"""Which algorithm a dense ``blocked_conv2d`` runs: ``blocked-direct`` (the register-tiled direct kernel),
``blocked-winograd-f2`` or ``blocked-winograd-f4`` (:mod:`.winograd`, F(2x2, 3x3) / F(4x4, 3x3), 3x3 stride 1
dilation 1 only). The policy is the conv policy of the numba backend (:func:`..conv.select.conv_policy`): the
heuristic by default, the candidates measured per shape under ``"measure"`` (``CONVGRAPH_CONV_ALGO=measure`` or
``compile(..., autotune=True)``), or a forced name.

F(4x4) does 2.25 multiplies per output where F(2x2) does 4, on the points 0, +-1, 1/2, -2 (:mod:`.toom`): float32
errors of 2-7e-6 of the output's scale per layer on 64-512 channels with He-initialized weights against float64
(F(2x2) 3-9e-7, direct 1-3e-6; the classic points 0, +-1, +-2 left 5e-6 to 1.8e-5), well inside the rtol 1e-4
that compiled results promise against eager ones."""

from __future__ import annotations

from collections.abc import Callable

from ...conv_policy import Choice
from ..conv.select import _best_ms, conv_policy
from ..conv.workspace import throwaway

DIRECT, WINOGRAD = "blocked-direct", "blocked-winograd-f2"
WINOGRAD4 = "blocked-winograd-f4"
WINOGRADS = {WINOGRAD: 2, WINOGRAD4: 4}  # name -> output tile size m of F(m x m, 3x3)
_CACHE: dict[tuple, Choice] = {}


# Winograd from this many 2x2 output tiles per layer: below, the transformed weights (16/9 of the direct kernel's
# bytes) are streamed for too little work (CPU ms on one core, direct vs Winograd, 512 -> 512 channels at batch 1:
# 2x2 output (1 tile) 0.51 vs 1.00, 4x4 (4) 1.08 vs 1.20, 6x6 (9) 1.91 vs 1.14; batch 2 at 4x4 (8) 1.88 vs 1.25)
MIN_TILES = 8
# F(4x4) from this many 4x4 output tiles: it reads 36/16 of F(2x2)'s transformed weights for a quarter of the tiles,
# so it pays where many tiles share them (CPU ms on one core, F(2x2) vs F(4x4), ResNet-50 batch 1: 64 channels at
# 56x56 (196 tiles) 1.08 vs 0.75, 128 at 28x28 (49) 1.10 vs 0.66, 512 at 7x7 (4) 1.35 vs 1.53; ResNet-18 batch 8:
# 512 at 7x7 (32 tiles) 11.3 vs 8.5, 256 at 14x14 (128) 9.5 vs 8.0). 16 tiles fill two of the multiply's 8-row
# register tiles (winograd.SHORT_MR) with no padding: ResNet-50's 256 at 14x14, hot 0.99 vs 0.78, after a 64 MB
# cache flush (its 9.4 MB of U from memory) 1.06-1.08 vs 0.83-0.86 (bench/winograd_cold.py); DenseNet-121's 128 ->
# 32 at 14x14 0.08 either way
MIN_TILES4 = 16


def candidates(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride, padding, dilation) -> list[str]:
    """The algorithms that can run this dense blocked layer, the heuristic's pick first: Winograd where it applies
    (3x3, stride 1, dilation 1), F(4x4) on at least :data:`MIN_TILES4` 4x4 tiles, else F(2x2) on at least
    :data:`MIN_TILES` 2x2 tiles. Measured on one core (2-core Zen 4, bias + ReLU, CPU ms direct vs F(2x2)):
    ResNet-18 batch 8 56x56x64 18.8 vs 9.3, 28x28x128 17.9 vs 10.7, 14x14x256 17.5 vs 8.5, 7x7x512 17.2 vs 11.0;
    ResNet-50 batch 1 56x56x64 2.28 vs 1.13 .. 7x7x512 2.23 vs 1.92; small layers (3 -> 64 channels at 32x32,
    8 -> 8, 16 -> 32, 64 -> 64 at 4x4) 0.57-0.91x."""
    kh, kw = w_shape[2:]
    if (kh, kw) != (3, 3) or tuple(stride) != (1, 1) or tuple(dilation) != (1, 1):
        return [DIRECT]
    (pt, pb), (pl, pr) = padding
    oh, ow = x_shape[2] + pt + pb - 2, x_shape[3] + pl + pr - 2

    def tiles(m: int) -> int:
        return x_shape[0] * -(-oh // m) * -(-ow // m)

    if tiles(4) >= MIN_TILES4:
        return [WINOGRAD4, WINOGRAD, DIRECT]
    return [WINOGRAD, DIRECT] if tiles(2) >= MIN_TILES else [DIRECT, WINOGRAD]


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
