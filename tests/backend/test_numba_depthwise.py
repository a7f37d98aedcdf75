"""The depthwise blocked convolution (backends/numba/blocked/depthwise.py) against the numpy reference: odd and
non-square sizes, strides 1 and 2, symmetric, asymmetric and wider-than-the-kernel padding (output pixels no tap
reaches), dilation, channel counts that are not multiples of the block, residual and clamp epilogues; and its
parallel kernel (row bands) against its serial twin, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import backends.numba  # noqa: F401 - registers the kernels
from backends.numba.blocked import conv as bconv
from backends.numba.gemm import VL
from engine import Spec
from engine.backend import get_backend
from engine.primitive import PRIMITIVES

NB, NP = get_backend("numba"), get_backend("numpy")
RELU6 = ("clamp", (("max", 6.0), ("min", 0.0)))

# (C, H, W, k, stride, ((pt, pb), (pl, pr)), dilation, residual, (activation, act_attrs))
CASES = [
    (40, 13, 11, 3, 1, ((1, 1), (1, 1)), 1, True, RELU6),
    (24, 15, 17, 3, 2, ((1, 1), (1, 1)), 1, False, RELU6),  # MobileNetV2's stride-2 layers, odd size
    (96, 28, 30, 3, 2, ((0, 1), (0, 1)), 1, False, ("none", ())),  # asymmetric ("same" padding of TF)
    (16, 7, 9, 5, 1, ((2, 2), (2, 2)), 1, True, ("relu", ())),  # EfficientNet's 5x5
    (8, 6, 5, 3, 1, ((3, 2), (4, 3)), 1, True, RELU6),  # padding past the kernel's reach: bias-only pixels
    (20, 11, 13, 3, 2, ((2, 2), (2, 2)), 2, True, ("none", ())),  # dilation
    (33, 30, 50, 3, 1, ((1, 1), (1, 1)), 1, False, ("sigmoid", ())),  # several whole tiles a row; act(0) != 0
    (17, 9, 8, 1, 2, ((0, 0), (0, 0)), 1, False, ("none", ())),  # 1x1 depthwise, no border
]


def _run(b, name, *ins, **attrs):
    spec = PRIMITIVES[name].abstract_eval(*(Spec(a.shape, a.dtype) for a in ins), **attrs)[0]
    out = np.empty(spec.shape, spec.dtype)
    b.kernel(name)(*ins, out=out, **attrs)
    return out


def _case(case, rng):
    c, h, w, k, s, pad, d, res, (act, act_attrs) = case
    x = rng.standard_normal((2, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((c, 1, k, k), dtype=np.float32)
    b = rng.standard_normal(c, dtype=np.float32)
    attrs = dict(stride=(s, s), padding=pad, dilation=(d, d), groups=c, has_bias=True, has_residual=res,
                 activation=act, act_attrs=act_attrs)
    ins = [_run(NB, "to_blocked", x, block=VL), wt, b]
    if res:
        y = PRIMITIVES["blocked_conv2d"].abstract_eval(*(Spec(a.shape, a.dtype) for a in ins),
                                                       **dict(attrs, has_residual=False))[0]
        ins.append((3 * rng.standard_normal(y.shape)).astype(np.float32))
    return ins, attrs


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:5])) + f"-p{c[5]}-d{c[6]}-{c[8][0]}")
def test_depthwise_matches_reference(case, rng):
    ins, attrs = _case(case, rng)
    c = case[0]
    keep = _run(NP, "from_blocked", _run(NP, "blocked_conv2d", *ins, **attrs), channels=c)
    got = _run(NB, "blocked_conv2d", *ins, **attrs)
    np.testing.assert_allclose(_run(NB, "from_blocked", got, channels=c), keep, rtol=1e-4,
                               atol=1e-4 * np.abs(keep).max())
    if attrs["activation"] == "clamp":
        assert keep.min() == 0.0 and keep.max() == 6.0  # the clamp bites on both sides


@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[6]], ids=["res", "bias-only", "tiles"])
def test_depthwise_parallel_equals_serial(case, rng, monkeypatch):
    ins, attrs = _case(case, rng)
    monkeypatch.setattr(bconv, "SERIAL_MACS", 1 << 62)
    serial = _run(NB, "blocked_conv2d", *ins, **attrs)
    monkeypatch.setattr(bconv, "SERIAL_MACS", 0)  # the parallel kernel: row bands as prange items
    np.testing.assert_array_equal(_run(NB, "blocked_conv2d", *ins, **attrs), serial)


# (C, H, W, stride, O, residual on the 1x1, batch): channel counts off the block, odd sizes, a K of two K blocks,
# a K of 700 in one block on a 7x7 plane (conv.k_block)
CHAINS = [(40, 13, 11, 1, 24, True, 2), (24, 15, 9, 2, 36, False, 1), (600, 9, 9, 1, 20, True, 1),
          (700, 7, 7, 1, 40, False, 1)]


@pytest.mark.parametrize("case", CHAINS, ids=lambda c: "x".join(map(str, c[:5])) + ("-res" if c[5] else ""))
@pytest.mark.parametrize("serial", [False, True])
def test_depthwise_then_pointwise_in_one_call(case, serial, rng, monkeypatch):
    """The depthwise -> 1x1 pair as one call (backends/numba/blocked/chain.py: row bands per thread, the 1x1 tiles
    starting at any pixel) writes both layers' outputs equal to the numpy reference and bit-equal to the two
    layers run one after the other (the same tiles over the same sums); a 1x1 output that overlaps the
    depthwise input is declined."""
    from backends.numba.blocked import chain

    c, h, w, s, o, res, n = case
    monkeypatch.setattr(bconv, "SERIAL_MACS", 1 << 62 if serial else 0)
    monkeypatch.setattr(chain, "CHAIN_TILE_WASTE", 10.0)  # small planes: bands of a few pixels, taken all the same
    monkeypatch.setattr(bconv, "PREFETCH_BYTES", 0)  # the tiles that prefetch the next group's weights, both ways
    x = _run(NB, "to_blocked", rng.standard_normal((n, c, h, w), dtype=np.float32), block=VL)
    a1 = dict(stride=(s, s), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=c, has_bias=True,
              has_residual=False, activation=RELU6[0], act_attrs=RELU6[1])
    ins1 = [x, rng.standard_normal((c, 1, 3, 3), dtype=np.float32), rng.standard_normal(c, dtype=np.float32)]
    a2 = dict(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, has_bias=True, has_residual=res,
              activation="none", act_attrs=())
    w2 = (rng.standard_normal((o, c, 1, 1)) / np.sqrt(c)).astype(np.float32)
    b2 = rng.standard_normal(o, dtype=np.float32)
    mid_ref = _run(NP, "blocked_conv2d", *ins1, **a1)
    r = [rng.standard_normal((n, -(-o // VL), mid_ref.shape[2], mid_ref.shape[3], VL), dtype=np.float32)] if res \
        else []
    ref = _run(NP, "blocked_conv2d", mid_ref, w2, b2, *r, **a2)
    mid, out = np.full_like(mid_ref, np.nan), np.full_like(ref, np.nan)
    call = chain.chain_call((ins1, mid, a1), ([mid, w2, b2, *r], out, a2))
    call()
    sep_mid = _run(NB, "blocked_conv2d", *ins1, **a1)
    sep = _run(NB, "blocked_conv2d", sep_mid, w2, b2, *r, **a2)
    np.testing.assert_array_equal(mid, sep_mid)
    np.testing.assert_array_equal(out, sep)
    keep, got = (_run(NP, "from_blocked", v, channels=o) for v in (ref, out))
    np.testing.assert_allclose(got, keep, rtol=1e-4, atol=1e-4 * np.abs(keep).max())
    if s == 1 and c <= o:  # the 1x1 output placed over the depthwise input: the pair runs as two layers
        over = x.reshape(-1)[:out.size].reshape(out.shape)
        assert chain.chain_call((ins1, mid, a1), ([mid, w2, b2, *r], over, a2)) is None


@pytest.mark.parametrize("h,w,whole_rows", [(7, 7, True), (3, 13, False)])
def test_pair_bands_whole_rows_unless_a_thread_gets_more_tiles(h, w, whole_rows, rng, monkeypatch):
    """blocked/chain.py on two threads keeps whole-row bands where they give no thread more 1x1 tiles than its
    share (7x7: 4 / 3 rows, 3 tiles each; a row cut would make both threads write row 2), and cuts inside a row
    where they do (3x13: 2 / 1 rows, 3 / 2 tiles of 4): the chained call equal, bit for bit, to the layers apart.
    (Both planes split their rows unevenly, so by default they run in two phases instead: chain.PHASED "never"
    keeps the bands under test.)"""
    import functools

    import numba

    from backends.numba.blocked import chain

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two numba threads")
    monkeypatch.setattr(bconv, "SERIAL_MACS", 0)
    monkeypatch.setattr(chain, "PHASED", "never")
    c, o = 40, 150  # off the block; the 1x1's 10 output blocks in 5 groups
    x = _run(NB, "to_blocked", rng.standard_normal((1, c, h, w), dtype=np.float32), block=VL)
    a1 = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=c, has_bias=True,
              has_residual=False, activation=RELU6[0], act_attrs=RELU6[1])
    ins1 = [x, rng.standard_normal((c, 1, 3, 3), dtype=np.float32), rng.standard_normal(c, dtype=np.float32)]
    a2 = dict(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, has_bias=True,
              has_residual=False, activation="none", act_attrs=())
    w2 = (rng.standard_normal((o, c, 1, 1)) / np.sqrt(c)).astype(np.float32)
    b2 = rng.standard_normal(o, dtype=np.float32)
    mid = np.full_like(x, np.nan)
    out = np.full((1, -(-o // VL), h, w, VL), np.nan, np.float32)
    threads = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        call = chain.chain_call((ins1, mid, a1), ([mid, w2, b2], out, a2))
        step = call if isinstance(call, functools.partial) else \
            [f for f in call.__closure__[0].cell_contents if isinstance(f, functools.partial)][-1]
        segs, starts = step.args[-3], step.args[-2]
        assert len(starts) == 3 and (segs[starts[1], 3] % w == 0) == whole_rows
        call()
        sep_mid = _run(NB, "blocked_conv2d", *ins1, **a1)
        sep = _run(NB, "blocked_conv2d", sep_mid, w2, b2, **a2)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(mid, sep_mid)
    np.testing.assert_array_equal(out, sep)
    keep = _run(NP, "from_blocked", _run(NP, "blocked_conv2d", _run(NP, "blocked_conv2d", *ins1, **a1), w2, b2,
                                         **a2), channels=o)
    np.testing.assert_allclose(_run(NP, "from_blocked", out, channels=o), keep, rtol=1e-4,
                               atol=1e-4 * np.abs(keep).max())
