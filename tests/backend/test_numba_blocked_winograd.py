"""Winograd F(2x2, 3x3) and F(4x4, 3x3) on the blocked layout (backends/numba/blocked/winograd.py) against the numpy
reference, their matrices (backends/numba/blocked/toom.py), and the blocked direct / Winograd choice
(backends/numba/blocked/select.py)."""

from __future__ import annotations

import numpy as np
import pytest

import backends.numba  # noqa: F401 - registers the kernels
import engine
import graph
import zoo
from backends.numba.blocked import select as bselect
from backends.numba.blocked import transforms as btrans
from backends.numba.blocked import winograd as bwino
from backends.numba.blocked.toom import toom_cook
from backends.numba.conv import select as conv_select
from backends.numba.gemm import VL
from engine import Spec
from engine.autograd import no_grad
from engine.backend import get_backend
from engine.primitive import PRIMITIVES
from engine.tensor import Tensor
from tests.null.graph_models import randomize_bn

NB, NP = get_backend("numba"), get_backend("numpy")


def _run(b, name, *ins, **attrs):
    spec = PRIMITIVES[name].abstract_eval(*(Spec(a.shape, a.dtype) for a in ins), **attrs)[0]
    out = np.full(spec.shape, np.nan, spec.dtype)  # every element, pad lanes included, must be written
    b.kernel(name)(*ins, out=out, **attrs)
    return out


@pytest.fixture
def policy():
    def set_to(name: str) -> None:
        conv_select.set_conv_policy(name)

    prev = conv_select.set_conv_policy("heuristic")
    yield set_to
    conv_select.set_conv_policy(prev)


# (N, C, O, H, W, padding, residual, activation, act_attrs): odd sizes (partial 2x2 tiles), channels that are not
# block multiples on both sides, batch 1 and 2, every epilogue
CASES = [
    (1, 64, 64, 12, 14, ((1, 1), (1, 1)), True, "relu", ()),
    (2, 20, 40, 9, 7, ((1, 1), (1, 1)), False, "none", ()),
    (2, 48, 33, 5, 11, ((1, 1), (1, 1)), True, "relu", ()),
    (1, 3, 24, 13, 6, ((0, 2), (1, 0)), True, "clamp", (("max", 6.0), ("min", 0.0))),  # uneven padding
    (2, 17, 18, 6, 6, ((0, 0), (0, 0)), False, "sigmoid", ()),  # act(0) != 0 in the pad lanes
    (1, 160, 144, 5, 5, ((1, 1), (1, 1)), True, "none", ()),  # U past L2: V transformed once, shared
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:5])) + f"-{c[7]}")
@pytest.mark.parametrize("serial", [False, True])
def test_blocked_winograd_matches_reference(case, serial, rng, policy, monkeypatch):
    n, c, o, h, w, pad, res, act, act_attrs = case
    monkeypatch.setattr(bselect, "conv_policy", lambda: "heuristic")  # the heuristic picks Winograd (checked)
    from backends.numba.blocked import conv as bconv

    monkeypatch.setattr(bconv, "SERIAL_MACS", 1 << 62 if serial else 0)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((o, c, 3, 3), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    attrs = dict(stride=(1, 1), padding=pad, dilation=(1, 1), groups=1, has_bias=True, has_residual=res,
                 activation=act, act_attrs=act_attrs)
    xb = _run(NB, "to_blocked", x, block=VL)
    xb[:, -1, :, :, c % VL or VL:] = np.nan  # pad lanes are never read (their weights are not even multiplied)
    ins = [xb, wt, b]
    if res:
        oh, ow = h + sum(pad[0]) - 2, w + sum(pad[1]) - 2
        ins.append(_run(NB, "to_blocked", rng.standard_normal((n, o, oh, ow), dtype=np.float32), block=VL))
    assert bselect.choose(xb.shape, wt.shape, (1, 1), pad, (1, 1)).algorithm == "blocked-winograd-f2"
    got = _run(NB, "from_blocked", _run(NB, "blocked_conv2d", *ins, **attrs), channels=o)
    # the reference: the decomposition on numpy kernels (unblock, fused conv, clamp, block)
    ref = _run(NP, "from_blocked", _run(NP, "blocked_conv2d", *ins, **attrs), channels=o)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_kernel_transform_is_exact_on_a_delta():
    """U = G w G^T: with w = 1 at one tap, F(2x2) reproduces the shifted input exactly (coefficients +-1/2)."""
    w = np.zeros((16, 16, 3, 3), np.float32)
    w[3, 5, 2, 0] = 1.0
    u = bwino.pack_winograd(w)
    assert u.shape == (16, 1, 16, 2 * VL)
    x = np.arange(2 * 16 * 6 * 6, dtype=np.float32).reshape(2, 16, 6, 6)
    got = _run(NB, "blocked_conv2d", _run(NB, "to_blocked", x, block=VL), w, stride=(1, 1),
               padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1, has_bias=False, has_residual=False,
               activation="none", act_attrs=())
    want = np.zeros((2, 6, 6), np.float32)
    want[:, :5, 1:] = x[:, 5, 1:, :5]  # out[y, x] = in[y + 1, x - 1]
    np.testing.assert_array_equal(got[:, 0, :, :, 3], want)


def test_heuristic_and_policy(policy):
    x, w = (1, 4, 10, 14, VL), (64, 64, 3, 3)  # 12 4x4 tiles: F(2x2)
    same = ((1, 1), (1, 1))
    assert bselect.candidates(x, w, (1, 1), same, (1, 1)) == ["blocked-winograd-f2", "blocked-direct"]
    # F(4x4) from 16 4x4 tiles: ResNet-50's 56x56, 28x28 and 14x14 layers (196, 49, 16 tiles), not its 7x7 (4) at
    # batch 1
    f4 = ["blocked-winograd-f4", "blocked-winograd-f2", "blocked-direct"]
    assert bselect.candidates((1, 4, 56, 56, VL), w, (1, 1), same, (1, 1)) == f4
    assert bselect.candidates((1, 8, 28, 28, VL), (128, 128, 3, 3), (1, 1), same, (1, 1)) == f4
    assert bselect.candidates((1, 16, 14, 14, VL), (256, 256, 3, 3), (1, 1), same, (1, 1)) == f4
    assert bselect.candidates((1, 32, 7, 7, VL), (512, 512, 3, 3), (1, 1), same, (1, 1))[0] == "blocked-winograd-f2"
    assert bselect.candidates((2, 4, 14, 14, VL), w, (1, 1), same, (1, 1)) == f4  # 2 x 16 tiles
    assert bselect.candidates((2, 4, 13, 13, VL), w, (1, 1), same, (1, 1)) == f4  # partial tiles count
    assert bselect.candidates((1, 4, 12, 20, VL), w, (1, 1), same, (1, 1))[0] == "blocked-winograd-f2"  # 3 x 5
    assert bselect.candidates(x, w, (2, 2), same, (1, 1)) == ["blocked-direct"]  # strided
    assert bselect.candidates(x, w, (1, 1), same, (2, 2)) == ["blocked-direct"]  # dilated
    assert bselect.candidates(x, (64, 64, 1, 1), (1, 1), same, (1, 1)) == ["blocked-direct"]
    # too few tiles: 2 images of 4x4 output (8 tiles) run Winograd, one of 5x5 (9 tiles) too, one of 4x4 does not
    assert bselect.candidates((2, 4, 4, 4, VL), w, (1, 1), same, (1, 1))[0] == "blocked-winograd-f2"
    assert bselect.candidates((1, 4, 5, 5, VL), w, (1, 1), same, (1, 1))[0] == "blocked-winograd-f2"
    assert bselect.candidates((1, 4, 4, 4, VL), w, (1, 1), same, (1, 1))[0] == "blocked-direct"
    assert bselect.choose(x, w, (1, 1), same, (1, 1)).describe() == "blocked-winograd-f2 (heuristic)"
    assert bselect.choose((1, 4, 56, 56, VL), w, (1, 1), same, (1, 1)).describe() == "blocked-winograd-f4 (heuristic)"
    policy("blocked-direct")
    assert bselect.choose(x, w, (1, 1), same, (1, 1)).describe() == "blocked-direct (forced)"
    policy("blocked-winograd-f2")
    assert bselect.choose((1, 4, 56, 56, VL), w, (1, 1), same, (1, 1)).describe() == "blocked-winograd-f2 (forced)"
    policy("winograd-f4")  # an NCHW algorithm: the heuristic here
    assert bselect.choose(x, w, (1, 1), same, (1, 1)).describe() == "blocked-winograd-f2 (heuristic)"
    assert bselect.choose(x, w, (2, 2), same, (1, 1)).describe() == "blocked-direct (only)"
    policy("measure")
    times = {"blocked-winograd-f2": 2.0, "blocked-direct": 1.0}
    ran = []
    got = bselect.choose(x, (64, 64, 3, 3), (1, 1), ((1, 0), (0, 1)), (1, 1),
                         lambda a: (ran.append(a), __import__("time").sleep(times[a] * 1e-3)))
    assert got.algorithm == "blocked-direct" and got.how == "measured" and set(ran) == set(times)


def _blocked_resnet18(shape, seed):
    """ResNet-18 (random BN statistics) in eval mode, an input, the numpy reference output, the blocked compiled
    module and its blocked convolutions' kernel notes."""
    m = randomize_bn(zoo.get("resnet18"))
    m.eval()
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    with engine.use_backend("numpy"), no_grad():
        ref = m(Tensor(x)).data
    cm = graph.compile(m, x, backend="numba", layout="blocked")
    return m, x, ref, cm, [str(v) for v in cm.report["kernels"].values() if "blocked_conv2d" in str(v)]


def test_compiled_resnet18_runs_winograd_and_equals_eager(policy):
    m, x, ref, cm, notes = _blocked_resnet18((1, 3, 40, 40), seed=0)
    # the 3x3 stride-1 layers of the first two stages (10x10, 5x5 outputs; the second stage's first conv has stride
    # 2): 4 + 3; the last two stages' 3x3 and 2x2 outputs are under 8 tiles: direct
    assert sum("blocked-winograd-f2 (heuristic)" in v for v in notes) == 7
    got = cm(x).data
    scale = np.abs(ref).max()
    assert np.all(np.abs(got - ref) <= 1e-4 * np.abs(ref) + 1e-4 * scale), np.abs(got - ref).max() / scale
    policy("blocked-direct")
    direct = graph.compile(m, x, backend="numba", layout="blocked")
    assert not any("winograd" in str(v) for v in direct.report["kernels"].values())
    np.testing.assert_allclose(direct(x).data, got, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("n,c,o,h,w", [(2, 20, 40, 9, 7), (1, 160, 144, 6, 5)])
def test_blocked_winograd_f4_when_forced(n, c, o, h, w, rng, policy):
    """F(4x4), forced on layers the heuristic gives F(2x2): partial 4x4 tiles, pad lanes, residual + ReLU, both V
    modes; its float32 error is larger than F(2x2)'s, so the reference is float64."""
    policy("blocked-winograd-f4")
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = (rng.standard_normal((o, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    r = _run(NB, "to_blocked", rng.standard_normal((n, o, h, w), dtype=np.float32), block=VL)
    xb = _run(NB, "to_blocked", x, block=VL)
    attrs = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1, has_bias=True,
                 has_residual=True, activation="relu", act_attrs=())
    assert bselect.choose(xb.shape, wt.shape, (1, 1), attrs["padding"], (1, 1)).describe() == \
        "blocked-winograd-f4 (forced)"
    got = _run(NB, "from_blocked", _run(NB, "blocked_conv2d", xb, wt, b, r, **attrs), channels=o)
    ref = _run(NP, "from_blocked", _run(NP, "blocked_conv2d", *(a.astype(np.float64) for a in (xb, wt, b, r)),
                                        **attrs), channels=o)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("points,m", [((0, 1, -1), 2), (btrans.F4_POINTS, 4), ((0, 1, -1, 2, -2), 4)])
def test_toom_cook_matrices_compute_the_correlation(points, m):
    at, g, bt = toom_cook(points, m)
    rng = np.random.default_rng(0)
    d, w = rng.standard_normal((m + 2, 50)), rng.standard_normal((3, 50))
    got = at @ ((g @ w) * (bt @ d))
    want = np.stack([np.correlate(d[:, k], w[:, k], "valid") for k in range(50)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_toom_cook_classic_points_and_bad_points():
    """0, +-1, +-2 give the NCHW path's (Lavin's) F(4x4) matrices; the blocked F(4x4) uses 0, +-1, 1/2, -2."""
    from backends.numba.conv.winograd.math import G4 as G4_NCHW

    at, g, bt = toom_cook((0, 1, -1, 2, -2), 4)
    np.testing.assert_array_equal(at, [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                                       [0, 1, -1, 8, -8, 1]])
    np.testing.assert_array_equal(bt[0], [4, 0, -5, 0, 1, 0])
    np.testing.assert_array_equal(bt[5], [0, 4, 0, -5, 0, 1])
    np.testing.assert_allclose(g, G4_NCHW, rtol=1e-15)
    assert np.abs(btrans.AT4).max() == 8 and np.abs(btrans.BT4).max() == 2.5 and btrans.G4 is not G4_NCHW
    with pytest.raises(ValueError, match=r"toom_cook: F\(4, 3\) needs 5 distinct finite points, got \[0, 1, 1, 2"):
        toom_cook((0, 1, 1, 2, -2), 4)


def test_blocked_winograd_f4_error_stays_near_direct(policy):
    """The float32 error of F(4x4) on a deep layer (512 channels, He-initialized weights, ReLU'd input) against a
    float64 reference: within 1e-5 of the output's scale (about 5e-6 measured; the classic points 0, +-1, +-2
    left 1.2-1.8e-5 here), against the direct kernel's 2-3e-6."""
    rng = np.random.default_rng(3)
    n, c, h = 1, 512, 7
    x = np.maximum(rng.standard_normal((n, c, h, h)), 0).astype(np.float32)
    wt = (rng.standard_normal((c, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32)
    attrs = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1, has_bias=False,
                 has_residual=False, activation="none", act_attrs=())
    xb = _run(NB, "to_blocked", x, block=VL)
    ref = _run(NP, "from_blocked", _run(NP, "blocked_conv2d", xb.astype(np.float64), wt.astype(np.float64), **attrs),
               channels=c)
    scale = np.abs(ref).max()
    errs = {}
    for algo in ("blocked-direct", "blocked-winograd-f4"):
        policy(algo)
        got = _run(NB, "from_blocked", _run(NB, "blocked_conv2d", xb, wt, **attrs), channels=c)
        errs[algo] = np.abs(got - ref).max() / scale
    assert errs["blocked-winograd-f4"] <= 1e-5, errs
    assert errs["blocked-winograd-f4"] <= 5 * errs["blocked-direct"], errs


def test_compiled_resnet18_runs_winograd_f4_and_equals_eager():
    """At batch 2 and 64x64 the first stage's 16x16 layers have 32 4x4 tiles: F(4x4) by the heuristic; the
    second and third stage's F(2x2); the whole network still equals the numpy reference."""
    _, x, ref, cm, notes = _blocked_resnet18((2, 3, 64, 64), seed=1)
    assert sum("blocked-winograd-f4 (heuristic)" in v for v in notes) == 4
    assert sum("blocked-winograd-f2 (heuristic)" in v for v in notes) == 6
    got = cm(x).data
    scale = np.abs(ref).max()
    assert np.all(np.abs(got - ref) <= 1e-4 * np.abs(ref) + 1e-4 * scale), np.abs(got - ref).max() / scale


def test_strip_plan_evens_out_the_threads():
    """Items are the threads' equal runs: 196 F(4x4) tiles in 5 strips of 40 would leave one of 2 threads 3
    strips; 10 strips of 20 give each 5. One thread keeps the L2-sized strips, and a deep layer (U past L2: V
    shared) keeps one strip per chunk of output groups where the chunks already even out. Where U takes much of
    L2, strips shorten so that the strip's V and M fit beside it (64 -> 64 F(4x4): U 576 KiB, 13.5 KiB a tile)."""
    assert bwino.strip_plan(16, 16, 196, 2, 36) == (20, 1, False)
    assert bwino.strip_plan(16, 16, 196, 1, 36) == (40, 1, False)
    assert bwino.strip_plan(64, 64, 196, 1, 36) == (10, 2, False)
    assert bwino.strip_plan(128, 32, 196, 2, 36) == (10, 1, False)  # DenseNet-121's 3x3 layers
    assert bwino.strip_plan(64, 64, 784, 2, 16) == (40, 2, False)  # F(2x2): 20 strips, already even
    assert bwino.strip_plan(128, 128, 49, 2, 36) == (50, 1, True)  # 4 chunks of one group
    for ntile, threads in [(196, 2), (49, 2), (100, 3), (361, 4), (7, 2)]:
        ssz, ocg, _ = bwino.strip_plan(64, 64, ntile, threads, 36)
        assert ssz % bwino.MR == 0 and ssz * -(-ntile // ssz) >= ntile


# (N, C, O, H, W, algorithm): V per strip (U in L2) and V shared (U past L2), F(2x2) and F(4x4), a one-block last
# output group (O = 144: 9 blocks), strips of 16 and 6 tiles (7x7: register tiles of SHORT_MR rows)
STEAL_CASES = [(2, 20, 40, 9, 7, "blocked-winograd-f2"), (1, 160, 144, 9, 9, "blocked-winograd-f2"),
               (2, 24, 40, 10, 9, "blocked-winograd-f4"), (1, 160, 144, 13, 11, "blocked-winograd-f4"),
               (1, 160, 144, 7, 7, "blocked-winograd-f2")]


@pytest.mark.parametrize("case", STEAL_CASES, ids=lambda c: "x".join(map(str, c[:5])) + c[5][-3:])
@pytest.mark.parametrize("runs", ["all-on-one", "more-runs-than-threads"])
@pytest.mark.parametrize("serial", [False, True])
def test_threads_steal_each_others_items_once(case, runs, serial, rng, policy, monkeypatch):
    """A thread that ends its own run of items (and of the shared V's transform items) takes the other runs' from
    their ends (blocked/steal.py): however the items are cut into runs (all in the first run, whose thread the
    others then help; more runs than threads), every item runs exactly once, with the same sums as the default
    split. In place on the residual (out = res, as an executor plans it), an item run twice would add the residual
    and bias twice, and a skipped one would leave the residual; without a residual, NaN."""
    n, c, o, h, w, algo = case
    from backends.numba.blocked import conv as bconv

    policy(algo)
    monkeypatch.setattr(bconv, "SERIAL_MACS", 1 << 62 if serial else 0)
    xb = _run(NB, "to_blocked", rng.standard_normal((n, c, h, w), dtype=np.float32), block=VL)
    wt = (rng.standard_normal((o, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    r = _run(NB, "to_blocked", rng.standard_normal((n, o, h, w), dtype=np.float32), block=VL)
    attrs = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1, has_bias=True,
                 has_residual=True, activation="none", act_attrs=())
    plain = dict(attrs, has_residual=False)
    want, want_plain = _run(NB, "blocked_conv2d", xb, wt, b, r, **attrs), _run(NB, "blocked_conv2d", xb, wt, b, **plain)
    runs_of = bwino.even_runs

    def cut(items, threads):
        return np.array([0] + [items] * 3 if runs == "all-on-one" else [items * i // 5 for i in range(6)], np.int64)

    monkeypatch.setattr(bwino, "even_runs", cut)
    got = r.copy()
    NB.kernel("blocked_conv2d")(xb, wt, b, got, out=got, **attrs)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_run(NB, "blocked_conv2d", xb, wt, b, **plain), want_plain)  # NaN where skipped
    monkeypatch.setattr(bwino, "even_runs", runs_of)
    ref = _run(NP, "blocked_conv2d", *(a.astype(np.float64) for a in (xb, wt, b, r)), **attrs)
    np.testing.assert_allclose(want, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("case", STEAL_CASES[:2], ids=lambda c: "x".join(map(str, c[:5])))
def test_u_prefetch_changes_no_sum(case, rng, policy, monkeypatch):
    """The register tile that prefetches the next U panel (the first of each panel, winograd.PREFETCH) writes the
    same bits as the plain tile: the prefetch only asks for cache lines."""
    n, c, o, h, w, algo = case
    policy(algo)
    xb = _run(NB, "to_blocked", rng.standard_normal((n, c, h, w), dtype=np.float32), block=VL)
    wt = rng.standard_normal((o, c, 3, 3), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    attrs = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1, has_bias=True,
                 has_residual=False, activation="relu", act_attrs=())
    got = {}
    for pf in (True, False):
        monkeypatch.setattr(bwino, "PREFETCH", pf)
        got[pf] = _run(NB, "blocked_conv2d", xb, wt, b, **attrs)
    np.testing.assert_array_equal(got[True], got[False])
