"""Which algorithm a dense ``blocked_conv2d`` runs: ``blocked-direct`` (the register-tiled direct kernel) or
``blocked-winograd-f2`` (:mod:`.winograd`, 3x3 stride 1 dilation 1 only). The policy is the conv policy of the
numba backend (:func:`..conv.select.conv_policy`): the heuristic by default, both measured per shape under
``"measure"`` (``CONVGRAPH_CONV_ALGO=measure`` or ``compile(..., autotune=True)``), or a forced name."""

from __future__ import annotations

from collections.abc import Callable

from ...conv_policy import Choice
from ..conv.select import _best_ms, conv_policy
from ..conv.workspace import throwaway

DIRECT, WINOGRAD = "blocked-direct", "blocked-winograd-f2"
# Winograd from this many channels on both sides: below, the GEMMs' reduction (C) is too short for the transforms'
# cost (every tile's 16 V and M vectors go through memory) to be repaid
WINOGRAD_MIN_CHANNELS = 32

_CACHE: dict[tuple, Choice] = {}


def candidates(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride, dilation) -> list[str]:
    """The algorithms that can run this dense blocked layer, the heuristic's pick first: Winograd for 3x3 stride 1
    layers with at least :data:`WINOGRAD_MIN_CHANNELS` input and output channels."""
    o, c, kh, kw = w_shape
    if (kh, kw) != (3, 3) or tuple(stride) != (1, 1) or tuple(dilation) != (1, 1):
        return [DIRECT]
    if min(c, o) >= WINOGRAD_MIN_CHANNELS:
        return [WINOGRAD, DIRECT]
    return [DIRECT, WINOGRAD]


def _key(x_shape, w_shape, stride, padding, dilation) -> tuple:
    return tuple(x_shape), tuple(w_shape), tuple(stride), tuple(map(tuple, padding)), tuple(dilation)


def choose(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride, padding, dilation,
           run: Callable[[str], None] | None = None) -> Choice:
    """The algorithm under the current policy; ``run(algorithm)`` runs the layer into scratch memory (needed only
    to measure: the best of 3 timed runs after an untimed one, cached per shape for the process)."""
    cands = candidates(x_shape, w_shape, stride, dilation)
    policy = conv_policy()
    if len(cands) == 1:
        return Choice(cands[0], "only")
    if policy in cands:
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
