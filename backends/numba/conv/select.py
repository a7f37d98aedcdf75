"""Which algorithm a conv layer runs, per role (forward, input gradient, weight gradient): the candidates that
apply to its shape, a documented heuristic (the default), and an opt-in measured choice cached per shape.

Policy (``CONVGRAPH_CONV_ALGO``, :func:`set_conv_policy`, or ``compile(..., autotune=True)`` per compiled module):

- ``"heuristic"`` (default): :func:`heuristic`, no measurement, so results never depend on machine load.
- ``"measure"``: the first time a (role, input shape, weight shape, attrs, dtype) key is seen, every candidate
  runs once untimed (JIT, first touch) and 3 times timed into a scratch output, in a throwaway workspace; the
  fastest (by its best time) is cached for the process. Keys with one candidate are not measured. A compiled
  module measures while its executor is prepared, so its report shows the winner and every candidate's time.
  ``compile(..., autotune=True)`` turns this on for one compiled module. ``engine.use_deterministic_algorithms(True)``
  turns measuring off everywhere (the heuristic runs instead).
- an algorithm name (one of :data:`ALGORITHMS`): forced wherever it can run (a candidate, or :func:`forcible`),
  else the heuristic (tests, benches). In the variable, the cuda backend's names mean the heuristic here.

Any other name is an error (backends/conv_policy.py). Why measure at all: the winner depends on shape and machine
state. On the 2-core Zen 5 test machine LeNet conv1 (1->20 5x5 on 28x28, batch 64, forward) measured gemm-tables
0.36 ms, direct 0.83 ms; at batch 2 direct won (0.79 vs 1.01 ms); on ResNet-18's 3x3 layers gemm-tables and
Winograd F(2x2) / F(4x4) trade places by shape and role.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ... import conv_policy as conv_policy_names
from ...conv_policy import Choice as Choice
from .geometry import out_hw, shape_of
from .winograd.tiles import winograd_applicable, winograd_weight_grad_tile
from .workspace import autotuning, throwaway

ROLES = ("forward", "input_grad", "weight_grad")
MEASURE_REPEATS = 3  # timed runs per candidate; the minimum counts (robust to another process's bursts)
DIRECT_MAX_TAPS = 32  # C/g * kh * kw at or below which a groups=1 layer also tries the direct kernel

ALGORITHMS = conv_policy_names.ALGORITHMS["numba"]
POLICIES = (*conv_policy_names.MODES, *ALGORITHMS)


def check_policy(policy: str, source: str = "conv algorithm policy", shared: bool = False) -> str:
    return conv_policy_names.check_policy(policy, "numba", source, shared)


# checked where it is read (conv_policy), not at import: an import error would make the backend look unavailable
_policy: list[str] = [os.environ.get("CONVGRAPH_CONV_ALGO", "heuristic")]


def set_conv_policy(policy: str) -> str:
    """Set the policy (see module docstring); returns the previous one. Clears nothing: cached choices stay."""
    prev = _policy[0]
    _policy[0] = check_policy(policy)
    return prev


def conv_policy() -> str:
    """The policy in force here: the process's, ``"measure"`` inside a module compiled with ``autotune=True``
    (unless an algorithm is forced), ``"heuristic"`` instead of ``"measure"`` under deterministic algorithms."""
    return conv_policy_names.in_force(check_policy(_policy[0], "CONVGRAPH_CONV_ALGO", shared=True), autotuning())




_CACHE: dict[tuple, Choice] = {}


def _is_1x1(w_shape: tuple[int, ...], attrs: dict[str, Any]) -> bool:
    (pt, pb), (pl, pr) = attrs["padding"]
    return w_shape[2] == w_shape[3] == 1 and pt == pb == pl == pr == 0


def candidates(role: str, x_shape: Any, w_shape: Any, attrs: dict[str, Any], dtype: Any = np.float32) -> list[str]:
    """The algorithms that can run this layer in this role, heuristic's pick first. float32 layers run the SIMD
    implicit GEMM (``gemm-tables``) where other dtypes run im2col + GEMM: im2col lost to it on every float32 layer
    measured (1.2-4x), so it is not measured (nor compiled) there."""
    w_shape = shape_of(w_shape)
    _, cg, kh, kw = w_shape
    if attrs["groups"] > 1:
        return ["direct"]  # per-group GEMMs would be tiny
    simd = np.dtype(dtype) == np.float32
    if _is_1x1(w_shape, attrs):
        # x itself is the GEMM operand: per image in NCHW (stride 1), or re-laid out channels-first; strided, the
        # offset-table GEMM reads the subsampled x in place (ResNet-18 CIFAR shortcuts, ms vs gemm_1x1: forward
        # 0.71 vs 0.63, input grad 0.53 vs 1.16, weight grad 0.60 vs 1.24)
        if tuple(attrs["stride"]) == (1, 1):
            return ["gemm_1x1-nchw", "gemm_1x1"] + (["gemm-tables"] if simd else [])
        return ["gemm-tables"] if simd else ["gemm_1x1"]
    if simd:
        out = ["gemm-tables"]
        if role == "forward" and tuple(attrs["stride"]) == (1, 1) and attrs["groups"] == 1:
            out.insert(0 if _planes_first(w_shape) else 1, "gemm-planes")
        if role == "input_grad" and _small_strided_gy(x_shape, w_shape, attrs):
            out.insert(0, "im2col")
    elif role == "forward":
        out = ["im2col-pixel", "im2col-channel"]
        if _pixel_major_first(x_shape, w_shape, attrs) is False:
            out.reverse()
    else:
        out = ["im2col"]
    if winograd_applicable(x_shape, w_shape, attrs):
        wino = ["winograd-f2", "winograd-f4"]  # output tiles 2x2 / 4x4 (see .winograd)
        if simd:  # the blocked kernels between reorders (.nchwc, .nchwc_wgrad)
            wino += ["nchwc-winograd-f2", "nchwc-winograd-f4"]
        pick = _winograd_pick(x_shape, w_shape, attrs, role, simd)
        out = ([pick] + [a for a in wino if a != pick] + out) if pick else out + wino
    if cg * kh * kw <= DIRECT_MAX_TAPS:
        out.append("direct")
    return out


SCATTER_MIN_PIXELS = 64  # gy planes smaller than this: a strided input gradient runs im2col + one GEMM


def _small_strided_gy(x_shape: Any, w_shape: tuple[int, ...], attrs: dict[str, Any]) -> bool:
    """A strided float32 input gradient with gy planes under :data:`SCATTER_MIN_PIXELS`: the tables' scatter form
    runs one GEMM per image on panels of 32 gy pixels (a 4x4 plane fills half of one), where im2col's one GEMM
    spans the batch. Measured (one core, CPU ms, 3x3 stride 2, 256 -> 512 channels, tables vs im2col): 8x8 input
    batch 32 31.1 vs 25.2, 14x14 batch 8 21.4 vs 18.5, batch 1 2.72 vs 2.18; but 128 -> 256 at 16x16 (8x8 gy)
    batch 32 17.9 vs 24.2."""
    if tuple(attrs["stride"]) == (1, 1):
        return False
    oh, ow = out_hw(shape_of(x_shape), w_shape, attrs)
    return oh * ow < SCATTER_MIN_PIXELS


PLANES_MAX_OUT, PLANES_MAX_TAPS = 32, 160


def _planes_first(w_shape: tuple[int, ...]) -> bool:
    """The stride-1 forward on padded planes (:mod:`.planes`) where few output channels and few taps make the
    tables forward's pixels-by-channels tile spend its time moving the result to NCHW. Measured (one thread,
    float32, ms, planes vs tables, bias + ReLU): LeNet conv1 1->20 5x5 28x28 b64 1.00 vs 1.23; 3->16 5x5 pad 2
    32x32 b8 0.37 vs 0.49; 16->16 3x3 16x16 b32 0.65 vs 0.84; but 20->50 5x5 12x12 b64 3.2 vs 2.7 and 3->64 3x3
    32x32 b32 4.4-5.8 vs 3.5-5.3."""
    o, cg, kh, kw = w_shape
    return o <= PLANES_MAX_OUT and cg * kh * kw <= PLANES_MAX_TAPS


def forcible(role: str, x_shape: Any, w_shape: Any, attrs: dict[str, Any], dtype: Any = np.float32) -> list[str]:
    """What a forced policy may pick: the candidates plus, on float32 layers, the im2col + GEMM forms that are
    not measured there (the other dtypes' candidates)."""
    out = candidates(role, x_shape, w_shape, attrs, dtype)
    return out + [a for a in candidates(role, x_shape, w_shape, attrs, np.float64) if a not in out]


def _winograd_pick(x_shape: Any, w_shape: tuple[int, ...], attrs: dict[str, Any], role: str, simd: bool = False
                   ) -> str | None:
    """The heuristic's Winograd pick: at least 16 channels on both sides and 4M multiply-adds. Forward and input
    grad (the channels-last path for planes up to 28 wide): F(4x4) faster than im2col on every ResNet-18 3x3
    layer measured, 56x56 at batch 8 down to 4x4x512 at batch 32 (1.5-2.8x forward; the 7x7x512 input grad only
    ties). Weight grad: 1.8-2.3x faster on ResNet-18 CIFAR at batch 32, 32x32x64 .. 4x4x512; float32 on the
    blocked transforms (``nchwc-winograd-f*``)."""
    n, c, h, w = shape_of(x_shape)
    o = w_shape[0]
    if role == "weight_grad":
        # measured (2 cores, float32): 1.8-2.3x faster than im2col on ResNet-18 CIFAR at batch 32 (32x32x64 ..
        # 4x4x512) and ImageNet shapes at batch 8; slower below 16 channels or on tiny layers. float32: on the
        # blocked transforms (.nchwc_wgrad), faster than the NCHW Winograd of the same tile on all eight of those
        # layers (one thread, ms, nchwc vs NCHW F(4x4), reorders included: CIFAR 64@32 14.7 vs 21.8, 128@16 11.3
        # vs 15.2, 256@8 8.1 vs 13.6, 512@4 9.3 vs 21.2; ImageNet b8 64@56 10.8 vs 17.0, 128@28 8.5 vs 11.4,
        # 256@14 7.9 vs 12.4, 512@7 8.5 vs 20.4; two threads too, bench/wgrad_layers.py)
        (pt, pb), (pl, pr) = attrs["padding"]
        oh, ow = h + pt + pb - 2, w + pl + pr - 2
        if min(c, o) < 16 or n * oh * ow * c * o < 1 << 22:
            return None
        return f"{'nchwc-' if simd else ''}winograd-f{winograd_weight_grad_tile(oh, ow)}"
    if min(c, o) < 16 or n * h * w * c * o < 1 << 22:
        return None
    return _nchwc_pick(n, h, w) if simd else "winograd-f4"


# F(4x4) from this many 4x4 output tiles: its U (36*O*C, made per call where the weights change every step) costs
# twice F(2x2)'s, which the tiles must pay for (the blocked kernel's own threshold, with U made once, is 32)
NCHWC_MIN_TILES4 = 64


def _nchwc_pick(n: int, h: int, w: int) -> str:
    """float32 forward and input gradient: the blocked Winograd kernel between reorders (:mod:`.nchwc`), F(4x4) on
    at least :data:`NCHWC_MIN_TILES4` 4x4 tiles, else F(2x2). Measured (ResNet-18 CIFAR batch 32, reorders and
    the per-call U included, one core CPU ms, forward / input grad, F(4x4) / F(2x2) / the NCHW F(4x4)): 64
    channels at 32x32 13.8 / 16.8 / 28.5 and 14.1 / 16.6 / 25.0; 128 at 16x16 11.4 / 14.8 / 15.5 and 11.2 / 14.3 /
    18.7; 256 at 8x8 10.4 / 13.5 / 19.0 and 10.4 / 13.8 / 16.0; 512 at 4x4 (32 tiles) 16.9 / 15.8 / 17.8 and
    16.9 / 16.4 / 19.5."""
    return "nchwc-winograd-f4" if n * -(-h // 4) * -(-w // 4) >= NCHWC_MIN_TILES4 else "nchwc-winograd-f2"


def gemm_pixel_major(ck: int, npix: int, o: int) -> bool:
    """GEMM orientation of the im2col forward: ``cols^T @ W^T`` (pixel-major output, then a tiled transpose) when
    both the pixel count N*P and the inner size C*kh*kw are at least 4x the output channels, else ``W @ cols``.
    Measured with OpenBLAS on the ResNet-18 shapes (2-core Zen3, GFLOP/s pixel-major vs channel-major):
    56x56x64 51 vs 46, 28x28x128 58 vs 39, 14x14x256 58 vs 33, 7x7x512 18 vs 58, 1x1 64->256 equal (and its
    cheaper channel-major unpack wins)."""
    return npix >= 4 * o and ck >= 4 * o


def _pixel_major_first(x_shape: Any, w_shape: tuple[int, ...], attrs: dict[str, Any]) -> bool:
    n = shape_of(x_shape)[0]
    oh, ow = out_hw(shape_of(x_shape), w_shape, attrs)
    o, cg, kh, kw = w_shape
    return gemm_pixel_major(cg * kh * kw, n * oh * ow, o)


def heuristic(role: str, x_shape: Any, w_shape: Any, attrs: dict[str, Any], dtype: Any = np.float32) -> str:
    """groups > 1 -> direct; 1x1 stride 1 without padding -> gemm_1x1-nchw; 3x3 stride 1 with enough channels and
    pixels (see :func:`_winograd_pick`) -> Winograd (float32: on the blocked kernels, forward and input gradient
    by :func:`_nchwc_pick`); a stride-1 forward with few output channels and taps (see
    :func:`_planes_first`) -> gemm-planes; else gemm-tables (float32) or im2col + one batch-wide GEMM (other
    dtypes; forward GEMM orientation by :func:`gemm_pixel_major`)."""
    return candidates(role, x_shape, w_shape, attrs, dtype)[0]


def choose_conv_algorithm(x_spec: Any, w_spec: Any, attrs: dict[str, Any]) -> str:
    """The heuristic algorithm family of a conv2d layer's forward: ``"direct"``, ``"gemm_1x1"``, ``"gemm-tables"``,
    ``"winograd"`` or ``"im2col"``."""
    algo = heuristic("forward", shape_of(x_spec), shape_of(w_spec), attrs, getattr(x_spec, "dtype", np.float32))
    return algo if algo.startswith("gemm-") else algo.removeprefix("nchwc-").split("-")[0]


def _key(role: str, x_shape: Any, w_shape: Any, attrs: dict[str, Any], dtype: Any) -> tuple:
    return (role, shape_of(x_shape), shape_of(w_shape), tuple(sorted((k, str(v)) for k, v in attrs.items())),
            np.dtype(dtype).str)


def cached(role: str, x_shape: Any, w_shape: Any, attrs: dict[str, Any], dtype: Any) -> Choice | None:
    return _CACHE.get(_key(role, x_shape, w_shape, attrs, dtype))


def choose(role: str, x_shape: Any, w_shape: Any, attrs: dict[str, Any], dtype: Any,
           run: Callable[[str], None] | None) -> Choice:
    """The algorithm for this key under the current policy (:func:`conv_policy`). ``run(algorithm)`` executes the
    layer with that algorithm into a scratch output (needed only to measure; None: fall back to the heuristic
    uncached)."""
    cands = candidates(role, x_shape, w_shape, attrs, dtype)
    policy = conv_policy()
    if len(cands) == 1 and policy in (cands[0], "measure", "heuristic"):
        return Choice(cands[0], "only")
    if policy in forcible(role, x_shape, w_shape, attrs, dtype):
        return Choice(policy, "forced")
    if policy != "measure":
        return Choice(cands[0], "heuristic")
    key = _key(role, x_shape, w_shape, attrs, dtype)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    if run is None:
        return Choice(cands[0], "heuristic")
    with throwaway():  # the candidates' scratch memory is not the executor's
        times = {algo: _best_ms(run, algo) for algo in cands}
    choice = _CACHE[key] = Choice(min(times, key=times.get), "measured", times)
    return choice


def _best_ms(run: Callable[[str], None], algo: str) -> float:
    run(algo)  # untimed: JIT compile, first touch of workspaces
    best = float("inf")
    for _ in range(MEASURE_REPEATS):
        t0 = time.perf_counter()
        run(algo)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def clear_cache() -> None:
    _CACHE.clear()
