"""Which kernel a cuda conv layer runs, per role: the candidates that apply to its shape, a heuristic (the
default) and an opt-in measured choice cached per shape, as the numba backend does (backends/numba/conv/select.py).

Algorithms: ``igemm-128x128`` / ``igemm-64x64`` (the implicit GEMM of :mod:`.igemm` with that block tile; float64
has only the 64x64 tile, whose 16 accumulators per thread stay in registers) and ``direct`` (:mod:`.direct`, for
grouped and depthwise layers).

Policy (``CONVGRAPH_CONV_ALGO``, :func:`set_conv_policy`, or ``compile(..., autotune=True)`` per compiled module):
``"heuristic"`` (default; never measures, so results never depend on timing), ``"measure"`` (each candidate runs
once untimed, then :data:`MEASURE_REPEATS` times between ``cuda.synchronize()`` calls; the fastest is cached for
the process; ``engine.use_deterministic_algorithms(True)`` turns measuring off), or an algorithm name (forced where
it applies). A name of another backend's algorithm (the variable is shared with numba) means the heuristic here;
a name no backend has is an error (backends/conv_policy.py).
Weight gradients of the implicit GEMM also pick a split of K (:func:`weight_grad_splits`); the split sums are added
in a fixed order, so it changes speed, not results run to run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import cuda

from engine.backend import current_context

from ... import conv_policy as conv_policy_names
from ...conv_policy import check_policy
from ..tiling import SMS, Tile, tile_order

MEASURE_REPEATS = 3
DIRECT_THREADS = 256  # threads per block of the direct kernels
REDUCE_THREADS = 128  # threads per block (one weight element) of the direct weight gradient
MIN_GEMM_ROWS = 16  # per-group GEMM rows (O/g forward, C/g input grad) below which a grouped layer runs direct

ALGORITHMS = conv_policy_names.ALGORITHMS["cuda"]
POLICIES = (*conv_policy_names.MODES, *ALGORITHMS)

_policy: list[str | None] = [None]  # None: read CONVGRAPH_CONV_ALGO


def set_conv_policy(policy: str) -> str:
    """Set the cuda conv policy (see module docstring); returns the previous one."""
    check_policy(policy, "cuda", "cuda conv algorithm policy")
    prev = conv_policy()
    _policy[0] = policy
    return prev


def conv_policy() -> str:
    policy = _policy[0] or check_policy(os.environ.get("CONVGRAPH_CONV_ALGO", "heuristic"), "cuda",
                                        "CONVGRAPH_CONV_ALGO", shared=True)
    ctx = current_context()
    return conv_policy_names.in_force(policy, ctx is not None and ctx.autotune)


def gemm_dims(role: str, x_shape, w_shape, out_hw, groups: int) -> tuple[int, int, int]:
    """(M, N, K) of one group's implicit GEMM in this role."""
    (n, _, h, w), (o, cg, kh, kw) = x_shape, w_shape
    pix = n * out_hw[0] * out_hw[1]
    if role == "forward":
        return o // groups, pix, cg * kh * kw
    if role == "input_grad":
        return cg, n * h * w, (o // groups) * kh * kw
    return o // groups, cg * kh * kw, pix


def candidates(role: str, x_shape, w_shape, out_hw, groups: int, dtype: Any) -> list[str]:
    """Every kernel that can run this layer in this role, the heuristic's pick first."""
    m, n, _ = gemm_dims(role, x_shape, w_shape, out_hw, groups)
    gemms = [f"igemm-{t}" for t in tile_order(m, n, groups, dtype)]
    if groups > 1 and (w_shape[1] == 1 or m < MIN_GEMM_ROWS):
        return ["direct"] + gemms
    return gemms + (["direct"] if groups > 1 else [])


def weight_grad_splits(tile: Tile, m: int, n: int, k: int, groups: int) -> int:
    """Split K of a weight-gradient GEMM (K = N*Ho*Wo is long, M x N small) until there are about two blocks per
    SM, keeping at least 32 k steps per split so the extra partial sums stay cheap."""
    blocks = -(-m // tile.bm) * -(-n // tile.bn) * groups
    ktiles = -(-k // tile.bk)
    return max(1, min(-(-2 * SMS // blocks), ktiles // 32, 64))



class Choice(conv_policy_names.Choice):
    ms_digits = 3


_CACHE: dict[tuple, Choice] = {}


def key(role: str, x_shape, w_shape, attrs: dict[str, Any], dtype: Any) -> tuple:
    return (role, tuple(x_shape), tuple(w_shape), tuple(sorted((k, str(v)) for k, v in attrs.items())),
            np.dtype(dtype).str)


def choose(role: str, x_shape, w_shape, out_hw, attrs: dict[str, Any], dtype: Any,
           run: Callable[[str], None] | None) -> Choice:
    """The kernel for this layer under the current policy; ``run(algorithm)`` runs it into scratch memory (only
    needed to measure)."""
    cands = candidates(role, x_shape, w_shape, out_hw, attrs["groups"], dtype)
    policy = conv_policy()
    if len(cands) == 1:
        return Choice(cands[0], "only")
    if policy in cands:
        return Choice(policy, "forced")
    if policy != "measure":
        return Choice(cands[0], "heuristic")
    k = key(role, x_shape, w_shape, attrs, dtype)
    if k in _CACHE:
        return _CACHE[k]
    if run is None:
        return Choice(cands[0], "heuristic")
    times = {a: _best_ms(run, a) for a in cands}
    _CACHE[k] = Choice(min(times, key=times.get), "measured", times)
    return _CACHE[k]


def _best_ms(run: Callable[[str], None], algo: str) -> float:
    run(algo)  # untimed: JIT compile
    cuda.synchronize()
    best = float("inf")
    for _ in range(MEASURE_REPEATS):
        t0 = time.perf_counter()
        run(algo)
        cuda.synchronize()  # launches are asynchronous: stop the clock only when the kernel is done
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def clear_cache() -> None:
    _CACHE.clear()
