"""numba kernels of the channel-blocked primitives (backends/numba/blocked/) against the numpy reference: the
direct convolution over kernel sizes, strides, dilations, padding, depthwise, residual and activations (channel
counts that are not multiples of the block included), the pools, the reorders, the vector FMAs of the register
tile, and whole zoo models compiled with the layout pass against eager numpy."""

from __future__ import annotations

import re

import numba
import numpy as np
import pytest

import backends.numba  # noqa: F401 - registers the kernels
import engine
import graph
import zoo
from backends.numba.blocked import conv as bconv
from backends.numba.gemm import AVX512, VL
from engine import Spec
from engine.autograd import no_grad
from engine.backend import get_backend
from engine.primitive import PRIMITIVES
from engine.tensor import Tensor
from tests.null.graph_models import randomize_bn

NB, NP = get_backend("numba"), get_backend("numpy")


def _run(b, name, *ins, **attrs):
    spec = PRIMITIVES[name].abstract_eval(*(Spec(a.shape, a.dtype) for a in ins), **attrs)[0]
    out = np.empty(spec.shape, spec.dtype)
    b.kernel(name)(*ins, out=out, **attrs)
    return out


# (C, O, H, k, stride, pad, dilation, groups, residual, activation, act_attrs)
CONVS = [
    (3, 64, 17, 7, 2, 3, 1, 1, False, "relu", ()),  # stem: 3 of 16 lanes reduced
    (64, 64, 14, 3, 1, 1, 1, 1, True, "relu", ()),
    (20, 50, 12, 5, 1, 0, 1, 1, False, "none", ()),  # LeNet conv2: pad lanes in and out
    (256, 40, 7, 1, 1, 0, 1, 1, False, "sigmoid", ()),  # act(0) != 0 in the pad lanes: must not leak
    (64, 128, 9, 1, 2, 0, 1, 1, True, "none", ()),  # strided 1x1 shortcut
    (32, 32, 11, 3, 1, 2, 2, 1, False, "relu", ()),  # dilation
    (600, 48, 5, 3, 1, 1, 1, 1, False, "clamp", (("max", 6.0), ("min", 0.0))),  # K over several K blocks
    (600, 40, 9, 1, 1, 0, 1, 1, True, "none", ()),  # direct (3x3 above: Winograd), two K blocks: late bias, residual
    (40, 40, 9, 3, 2, 1, 1, 40, False, "clamp", (("max", 6.0), ("min", 0.0))),  # depthwise, strided
    (96, 96, 8, 3, 1, 1, 1, 96, True, "none", ()),
    # depthwise rows as one edge tile (depthwise.py: border columns and the leftover in one tile): 7x7 with a
    # residual and a clamp, a 3x3 plane, 12-wide rows, stride 2 with padding 2 (two zero columns)
    (96, 96, 7, 3, 1, 1, 1, 96, True, "clamp", (("max", 6.0), ("min", 0.0))),
    (48, 48, 3, 3, 1, 1, 1, 48, False, "relu", ()),
    (16, 16, 12, 3, 1, 1, 1, 16, False, "none", ()),
    (32, 32, 9, 3, 2, 2, 1, 32, True, "relu", ()),
    (700, 40, 7, 1, 1, 0, 1, 1, True, "none", ()),  # a 7x7 image: K of 700 in one block (conv.k_block)
]


@pytest.mark.parametrize("case", CONVS, ids=lambda c: "x".join(map(str, c[:8])) + f"-{c[9]}")
def test_blocked_conv_matches_reference(case, rng):
    c, o, h, k, s, p, d, g, res, act, act_attrs = case
    x = rng.standard_normal((2, c, h, h), dtype=np.float32)
    w = rng.standard_normal((o, c // g, k, k), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    attrs = dict(stride=(s, s), padding=((p, p), (p, p)), dilation=(d, d), groups=g, has_bias=True,
                 has_residual=res, activation=act, act_attrs=act_attrs)
    ref_attrs = dict(attrs, has_residual=False, activation="none", act_attrs=())
    y0 = _run(NP, "fused_conv2d", x, w, b, **ref_attrs)
    r = rng.standard_normal(y0.shape, dtype=np.float32) if res else None
    xb, rb = _run(NB, "to_blocked", x, block=VL), _run(NB, "to_blocked", r, block=VL) if res else None
    got = _run(NB, "blocked_conv2d", *([xb, w, b] + ([rb] if res else [])), **attrs)
    # the reference: the decomposition on numpy kernels (unblock, fused conv, clamp, block)
    keep = _run(NP, "from_blocked", _run(NP, "blocked_conv2d", *([xb, w, b] + ([rb] if res else [])), **attrs),
                channels=o)
    if act == "clamp":
        assert keep.min() == 0.0 and keep.max() == 6.0  # the clamp bites on both sides
    np.testing.assert_allclose(_run(NB, "from_blocked", got, channels=o), keep, rtol=1e-4,
                               atol=1e-4 * np.abs(keep).max())


@pytest.mark.parametrize("case", [CONVS[1], CONVS[4], CONVS[6]], ids=["3x3", "1x1-stride2", "k-blocks"])
@pytest.mark.parametrize("serial", [False, True])
def test_dense_item_orders_agree(case, serial, rng, monkeypatch):
    """Pixel-chunk-major and group-major items (``PIX_MAJOR_BYTES``) compute every output tile with the same sums:
    bit-equal results, both equal to the reference (batch 2, several output-block groups, partial tiles)."""
    c, o, h, k, s, p, d, g, res, act, act_attrs = case
    monkeypatch.setattr(bconv, "SERIAL_MACS", 1 << 62 if serial else 0)
    x = _run(NB, "to_blocked", rng.standard_normal((2, c, h, h), dtype=np.float32), block=VL)
    w = rng.standard_normal((o, c, k, k), dtype=np.float32)
    attrs = dict(stride=(s, s), padding=((p, p), (p, p)), dilation=(d, d), groups=1, has_bias=False,
                 has_residual=False, activation=act, act_attrs=act_attrs)
    got = {}
    for name, limit in (("pixel", 1 << 40), ("group", -1)):
        monkeypatch.setattr(bconv, "PIX_MAJOR_BYTES", limit)
        got[name] = _run(NB, "blocked_conv2d", x, w, **attrs)
    np.testing.assert_array_equal(got["pixel"], got["group"])
    keep = _run(NP, "blocked_conv2d", x, w, **attrs)
    np.testing.assert_allclose(got["pixel"], keep, rtol=1e-4, atol=1e-4 * np.abs(keep).max())


@pytest.mark.parametrize("runs", ["all-on-one", "more-runs-than-threads"])
@pytest.mark.parametrize("serial", [False, True])
def test_dense_threads_steal_each_others_segments(runs, serial, rng, monkeypatch):
    """A thread that ends its own run of segments takes the other runs' from their ends (blocked/steal.py): however
    the segments are cut into runs (all in the first run, whose thread the others then help; more runs than
    threads), every output tile is computed once, with the same sums as the default split."""
    monkeypatch.setattr(bconv, "SERIAL_MACS", 1 << 62 if serial else 0)
    x = _run(NB, "to_blocked", rng.standard_normal((2, 40, 9, 9), dtype=np.float32), block=VL)
    w, b = rng.standard_normal((200, 40, 1, 1), dtype=np.float32), rng.standard_normal(200, dtype=np.float32)
    attrs = dict(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, has_bias=True,
                 has_residual=False, activation="relu", act_attrs=())
    want = _run(NB, "blocked_conv2d", x, w, b, **attrs)
    schedule = bconv.dense_schedule

    def cut(*args):
        segs, _ = schedule(*args)
        n = segs.shape[0]
        starts = [0, n, n, n] if runs == "all-on-one" else [n * i // 5 for i in range(6)]
        return segs, np.array(starts, np.int64)

    monkeypatch.setattr(bconv, "dense_schedule", cut)
    got = np.full(want.shape, np.nan, np.float32)
    NB.kernel("blocked_conv2d")(x, w, b, out=got, **attrs)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(want, _run(NP, "blocked_conv2d", x, w, b, **attrs), rtol=1e-4, atol=1e-4)


# (C, O, H, stride, residual, batch): many output-block groups with a one-block last one (200 = 12.5 blocks), a
# pixel count off the tile (7x7 = 49), two K blocks (600 > KC on 81 pixels), one K block of 700 (a 7x7 image), a
# strided 1x1
PREFETCH_CASES = [(48, 200, 7, 1, True, 1), (600, 40, 9, 1, True, 2), (700, 72, 7, 1, False, 1),
                  (64, 128, 9, 2, False, 2), (24, 36, 11, 1, False, 1)]


@pytest.mark.parametrize("case", PREFETCH_CASES, ids=lambda c: "x".join(map(str, c[:4])) + ("-res" if c[4] else ""))
@pytest.mark.parametrize("serial", [False, True])
def test_weight_prefetch_changes_no_sum(case, serial, rng, monkeypatch):
    """The tile that prefetches the next output-block group's weights (the first tile of each group where the
    packed weights reach ``PREFETCH_BYTES``) writes the same bits as the plain tile, in both item orders, and
    both equal the reference: the prefetch only asks for cache lines."""
    c, o, h, s, res, n = case
    monkeypatch.setattr(bconv, "SERIAL_MACS", 1 << 62 if serial else 0)
    x = _run(NB, "to_blocked", rng.standard_normal((n, c, h, h), dtype=np.float32), block=VL)
    w = (rng.standard_normal((o, c, 1, 1)) * (3 / np.sqrt(c))).astype(np.float32)  # outputs beyond the clamp's 6
    b = rng.standard_normal(o, dtype=np.float32)
    oh = (h - 1) // s + 1
    r = [rng.standard_normal((n, -(-o // VL), oh, oh, VL), dtype=np.float32)] if res else []
    attrs = dict(stride=(s, s), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, has_bias=True,
                 has_residual=res, activation="clamp", act_attrs=(("max", 6.0), ("min", 0.0)))
    got = {}
    for limit in (1 << 40, -1):
        monkeypatch.setattr(bconv, "PIX_MAJOR_BYTES", limit)
        for name, at in (("plain", 1 << 62), ("prefetch", 0)):
            monkeypatch.setattr(bconv, "PREFETCH_BYTES", at)
            got[name, limit] = _run(NB, "blocked_conv2d", x, w, b, *r, **attrs)
    for v in got.values():
        np.testing.assert_array_equal(v, got["plain", -1])
    keep = _run(NP, "from_blocked", _run(NP, "blocked_conv2d", x, w, b, *r, **attrs), channels=o)
    assert keep.min() == 0.0 and keep.max() == 6.0
    np.testing.assert_allclose(_run(NB, "from_blocked", got["prefetch", -1], channels=o), keep, rtol=1e-4,
                               atol=1e-4 * np.abs(keep).max())


def test_reorders_roundtrip_and_zero_pad_lanes(rng):
    x = rng.standard_normal((2, 21, 5, 6), dtype=np.float32)
    xb = _run(NB, "to_blocked", x, block=VL)
    np.testing.assert_array_equal(xb, _run(NP, "to_blocked", x, block=VL))
    assert np.all(xb[:, 1, ..., 21 - VL:] == 0)
    np.testing.assert_array_equal(_run(NB, "from_blocked", xb, channels=21), x)
    one = xb[:, :, 2:3, 3:4].copy()  # one pixel: the copy that drops the pad lanes
    np.testing.assert_array_equal(_run(NB, "from_blocked", one, channels=21), x[:, :, 2:3, 3:4])
    # a strided source and a strided destination (every other column of a wider array): the kernel's planes need
    # contiguous arrays, so it goes through copies, never writing past the view
    wide = np.full((2, 21, 5, 12), -7.0, np.float32)
    src = np.zeros(xb.shape[:3] + (12, VL), np.float32)
    src[:, :, :, ::2] = xb
    assert not src[:, :, :, ::2].flags.c_contiguous
    NB.kernel("from_blocked")(src[:, :, :, ::2], out=wide[:, :, :, ::2], channels=21)
    np.testing.assert_array_equal(wide[:, :, :, ::2], x)
    assert np.all(wide[:, :, :, 1::2] == -7.0)


POOLS = [("max_pool2d", dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 1), ceil_mode=False)),
         ("max_pool2d", dict(kernel=(3, 3), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=True)),
         ("max_pool2d", dict(kernel=(3, 2), stride=(1, 2), padding=(1, 1), dilation=(2, 1), ceil_mode=False)),
         ("avg_pool2d", dict(kernel=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=False, count_include_pad=True,
                             divisor=0)),
         ("avg_pool2d", dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True, count_include_pad=False,
                             divisor=0)),  # the decomposition on numba kernels
         ("adaptive_avg_pool2d", dict(output_size=(1, 1))), ("adaptive_avg_pool2d", dict(output_size=(3, 2)))]


@pytest.mark.parametrize("serial_elements", [1 << 18, 0], ids=["small", "threaded"])
@pytest.mark.parametrize("op,attrs", POOLS)
def test_blocked_pools(op, attrs, serial_elements, rng, monkeypatch):
    from backends.numba.blocked import reorder

    monkeypatch.setattr(reorder, "SERIAL_ELEMENTS", serial_elements)  # the serial twins and the threaded loops
    x = rng.standard_normal((2, 40, 13, 13), dtype=np.float32)
    got = _run(NB, "blocked_pool", _run(NB, "to_blocked", x, block=VL), op=op, op_attrs=tuple(sorted(attrs.items())),
               channels=40)
    np.testing.assert_allclose(_run(NB, "from_blocked", got, channels=40), _run(NP, op, x, **attrs), rtol=1e-5,
                               atol=1e-6)
    # a compiled graph's calls (engine.backend.specialize): the same results through the calls bound to the arrays
    from engine.backend import specialize

    xb, pooled = _run(NB, "to_blocked", x, block=VL), np.full(got.shape, np.nan, np.float32)
    flat = np.full((2, 40) + got.shape[2:4], np.nan, np.float32)
    specialize(NB.kernel("blocked_pool"), [xb], pooled, dict(op=op, op_attrs=tuple(sorted(attrs.items())),
                                                              channels=40))()
    specialize(NB.kernel("from_blocked"), [pooled], flat, dict(channels=40))()
    np.testing.assert_array_equal(flat, _run(NB, "from_blocked", got, channels=40))


@pytest.mark.skipif(not AVX512, reason="the vector width checked is AVX-512's")
def test_register_tile_is_vector_fma(monkeypatch):
    monkeypatch.setattr(bconv, "SERIAL_MACS", 0)  # the parallel kernel, whatever the layer's size
    x = np.ones((1, 1, 4, 4, VL), np.float32)
    out = np.empty((1, 1, 4, 4, VL), np.float32)
    NB.kernel("blocked_conv2d")(x, np.ones((16, 16, 1, 1), np.float32), out=out, stride=(1, 1),
                                padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, has_bias=False,
                                has_residual=False, activation="none", act_attrs=())
    sig = bconv._conv_dense.signatures[0]
    fresh = numba.njit(bconv._conv_dense.py_func)  # not from the cache (cached code cannot be inspected)
    fresh.compile(sig)
    asm = fresh.inspect_asm(sig)
    assert len(re.findall(r"vfmadd\w*\s+[^\n]*zmm", asm)) >= 2 * bconv.MR  # the 2-block and 1-block tiles


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "densenet121", "lenet5"])
def test_compiled_blocked_equals_eager_numpy(name):
    m = randomize_bn(zoo.get(name))
    m.eval()
    x = np.random.default_rng(0).standard_normal((2,) + zoo.models.small_input_size(name)).astype(np.float32)
    with engine.use_backend("numpy"), no_grad():
        ref = m(Tensor(x)).data
    cm = graph.compile(m, x, backend="numba", layout="blocked")
    assert cm.graph.find("blocked_conv2d")
    assert any("blocked-direct" in k for k in cm.report["kernels"].values())
    got = cm(x).data
    scale = np.abs(ref).max()
    assert np.all(np.abs(got - ref) <= 1e-4 * np.abs(ref) + 1e-4 * scale), np.abs(got - ref).max() / scale


def test_auto_layout_blocks_resnet_and_declines_lenet():
    """The default (``auto``) on numba: ResNet-18's channel counts are block multiples, so it runs blocked with one
    reorder out (the stem reads the image as it is); LeNet-5's 20 / 50 channels would add 33% padded work, so it
    stays NCHW and the report says why."""
    rng = np.random.default_rng(0)
    r18 = zoo.get("resnet18")
    r18.eval()
    cm = graph.compile(r18, rng.standard_normal((1, 3, 32, 32)).astype(np.float32), backend="numba")
    assert len(cm.graph.find("blocked_conv2d")) == 20 and len(cm.report["layout"]["reorders"]) == 1
    lenet = zoo.get("lenet5")
    lenet.eval()
    cm = graph.compile(lenet, rng.standard_normal((1, 1, 28, 28)).astype(np.float32), backend="numba")
    assert not cm.graph.find("blocked_conv2d") and "pad lanes would add 33%" in cm.report["layout"]["declined"]
    assert "blocked layout declined" in str(cm.report)


def test_onnx_export_of_a_blocked_compiled_module_names_the_way_out():
    pytest.importorskip("onnx")
    from graph.onnx import export
    from graph.onnx.errors import OnnxExportError

    m = zoo.get("resnet18")
    m.eval()
    x = np.zeros((1, 3, 32, 32), np.float32)
    with pytest.raises(OnnxExportError, match="channel-blocked values.*layout='nchw'"):
        export(graph.compile(m, x, backend="numba"), x)
    export(graph.compile(m, x, backend="numba", layout="nchw"), x)  # the NCHW graph exports


def test_serial_and_parallel_convs_agree_and_specialized_calls_see_new_inputs(monkeypatch):
    """MobileNetV2-like blocks compiled with every blocked conv on its parallel kernel and with every one on its
    serial twin (the work threshold at 0 / at infinity): the same loops, so the same bits, and both equal eager
    numpy; the specialized calls (a depthwise -> 1x1 pair as one) read the input's current values on each run."""
    from tests.null.test_layout_pass import _inverted_residuals

    m, x = _inverted_residuals()
    with engine.use_backend("numpy"), no_grad():
        refs = [m(Tensor(v)).data for v in (x, -x)]
    got = {}
    for name, below in (("parallel", 0), ("serial", 1 << 62)):
        monkeypatch.setattr(bconv, "SERIAL_MACS", below)
        cm = graph.compile(m, x, backend="numba", layout="blocked")
        assert "clamp" not in cm.graph.op_counts()
        got[name] = [cm(v).data.copy() for v in (x, -x)]
        assert cm.compiled.executor.chained  # a depthwise -> project pair ran as one call (blocked/chain.py)
        for g, ref in zip(got[name], refs):
            scale = np.abs(ref).max()
            assert np.all(np.abs(g - ref) <= 1e-4 * np.abs(ref) + 1e-4 * scale), np.abs(g - ref).max() / scale
    for p, s in zip(got["parallel"], got["serial"]):
        np.testing.assert_array_equal(p, s)
