"""numba conv2d (every algorithm), both gradients, the fused epilogues, pools and batch norm vs the numpy
reference, over a grid of shapes and attributes."""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest

import backends.numba as nb
import engine
import graph
from backends.numba import choose_conv_algorithm
from backends.numba.conv import select as conv_select
from backends.numba.conv.select import candidates, set_conv_policy
from engine import Spec
from tests.backend.test_numba_parity import compare, run_kernel
from tests.null.graph_models import TinyResNet, inputs, randomize_bn


def _attrs(stride=1, padding=0, dilation=1, groups=1):
    p = padding if isinstance(padding, tuple) else ((padding, padding), (padding, padding))
    return {"stride": (stride, stride) if isinstance(stride, int) else stride, "padding": p,
            "dilation": (dilation, dilation), "groups": groups}


# (x shape, w shape, attrs, expected algorithm)
CASES = [
    ((2, 8, 9, 9), (6, 8, 3, 3), _attrs(1, 1), "gemm-planes"),  # stride 1, few output channels and taps
    ((2, 8, 9, 7), (4, 8, 3, 3), _attrs(2, 1), "gemm-tables"),
    ((1, 6, 10, 11), (3, 6, 3, 2), _attrs((2, 1), ((1, 0), (2, 1)), 2), "gemm-tables"),  # asymmetric pad, dilation
    ((2, 3, 16, 16), (8, 3, 7, 7), _attrs(2, 3), "gemm-tables"),  # ResNet stem shape, small
    ((2, 16, 6, 6), (12, 16, 1, 1), _attrs(1, 0), "gemm_1x1"),  # heuristic: its -nchw form
    ((2, 16, 7, 7), (12, 16, 1, 1), _attrs(2, 0), "gemm-tables"),  # downsample shortcut
    ((3, 1, 12, 12), (6, 1, 5, 5), _attrs(1, 0), "gemm-planes"),  # LeNet conv1: direct is a measured candidate
    ((2, 3, 10, 10), (4, 3, 3, 3), _attrs(1, 1), "gemm-planes"),  # 27 taps
    ((2, 8, 9, 9), (8, 1, 3, 3), _attrs(1, 1, groups=8), "direct"),  # depthwise
    ((2, 8, 9, 9), (8, 1, 3, 3), _attrs(2, 1, groups=8), "direct"),
    ((2, 8, 8, 8), (6, 4, 3, 3), _attrs(1, 1, groups=2), "direct"),  # grouped
    ((1, 6, 7, 7), (9, 2, 3, 3), _attrs(1, 2, 2, groups=3), "direct"),
    ((2, 3, 130, 129), (4, 3, 7, 7), _attrs(2, 3), "gemm-tables"),  # 65x65 output planes
    ((1, 6, 10, 11), (3, 6, 3, 2), _attrs(1, ((1, 0), (2, 1)), 2), "gemm-planes"),  # asymmetric pad, dilation
    ((2, 20, 9, 9), (40, 20, 3, 3), _attrs(1, 1), "gemm-tables"),  # 40 output channels: the tables forward
    ((3, 9, 8, 7), (11, 9, 3, 3), _attrs(2, 1), "gemm-tables"),  # 4x4 gy planes: input grad im2col + GEMM
]
IDS = [f"{c[3]}-{i}" for i, c in enumerate(CASES)]


@pytest.mark.parametrize("xs,ws,attrs,algo", CASES, ids=IDS)
def test_conv_algorithm_choice(xs, ws, attrs, algo):
    assert choose_conv_algorithm(Spec(xs, np.float32), Spec(ws, np.float32), attrs) == algo


def test_candidates_per_role():
    lenet1 = CASES[6]
    assert "direct" in candidates("forward", *lenet1[:3])  # few taps: the direct kernel competes
    assert candidates("forward", *CASES[0][:3])[:2] == ["gemm-planes", "gemm-tables"]
    assert candidates("forward", *CASES[14][:3])[:2] == ["gemm-tables", "gemm-planes"]  # measurable, not first
    assert "gemm-planes" not in candidates("input_grad", *CASES[0][:3]) + candidates("forward", *CASES[1][:3])
    assert not any(a.startswith("im2col") for a in candidates("forward", *CASES[0][:3]))  # float32: not measured
    assert candidates("forward", *CASES[0][:3], np.float64)[:2] in (["im2col-pixel", "im2col-channel"],
                                                                   ["im2col-channel", "im2col-pixel"])
    assert candidates("input_grad", *CASES[1][:3], np.float64) == ["im2col"]  # stride 2: no Winograd
    assert "direct" not in candidates("forward", *CASES[0][:3])  # 72 taps
    assert candidates("weight_grad", *CASES[4][:3]) == ["gemm_1x1-nchw", "gemm_1x1", "gemm-tables"]
    assert candidates("forward", *CASES[5][:3]) == ["gemm-tables"]  # strided: not the per-image form
    assert candidates("forward", *CASES[5][:3], np.float64) == ["gemm_1x1"]
    assert candidates("input_grad", *CASES[8][:3]) == ["direct"]  # depthwise
    assert candidates("input_grad", *CASES[15][:3]) == ["im2col", "gemm-tables"]  # small strided gy planes
    assert candidates("input_grad", (32, 128, 16, 16), (256, 128, 3, 3), _attrs(2, 1))[0] == "gemm-tables"  # 8x8


@contextlib.contextmanager
def conv_policy(policy):
    prev = set_conv_policy(policy)
    try:
        yield
    finally:
        set_conv_policy(prev)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs,ws,attrs,algo", CASES, ids=IDS)
def test_conv_forward_and_gradients(rng, xs, ws, attrs, algo, dtype):
    """Every candidate algorithm of every role (forced in turn) matches the numpy reference."""
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    (y,) = run_kernel("numpy", "conv2d", [x, w], **attrs)
    gy = rng.standard_normal(y.shape).astype(dtype)
    for role in ("forward", "input_grad", "weight_grad"):
        for cand in candidates(role, xs, ws, attrs, dtype):
            with conv_policy(cand):
                if role == "forward":
                    compare("conv2d", [x, w], **tol, **attrs)
                    compare("conv2d", [x, w, b], **tol, **attrs)
                elif role == "input_grad":
                    compare("conv2d_input_grad", [gy, w], input_shape=xs, **tol, **attrs)
                else:
                    compare("conv2d_weight_grad", [x, gy], weight_shape=ws, **tol, **attrs)


def test_measured_choice_is_cached_per_shape_and_correct(rng):
    xs, ws, attrs, _ = CASES[6]  # LeNet conv1: im2col-pixel, im2col-channel, direct
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    conv_select.clear_cache()
    with conv_policy("measure"):
        compare("conv2d", [x, w], rtol=1e-4, atol=1e-4, **attrs)
        hit = conv_select.cached("forward", xs, ws, attrs, np.float32)
        assert hit is not None and hit.how == "measured"
        assert set(hit.times_ms) == set(candidates("forward", xs, ws, attrs))
        assert hit.algorithm == min(hit.times_ms, key=hit.times_ms.get)
        assert all(t > 0 for t in hit.times_ms.values())
        compare("conv2d", [x, w], rtol=1e-4, atol=1e-4, **attrs)
        assert conv_select.cached("forward", xs, ws, attrs, np.float32) is hit  # measured once
    with conv_policy("heuristic"):
        assert conv_select.choose("forward", xs, ws, attrs, np.float32, None).how == "heuristic"


def test_compile_report_names_the_measured_algorithm():
    import graph
    from engine import nn

    conv_select.clear_cache()
    m = nn.Conv2d(1, 4, 5)
    m.eval()
    x = engine.tensor(np.zeros((2, 1, 12, 12), np.float32))
    with conv_policy("measure"):
        cm = graph.compile(m, x, backend="numba")
        text = str(cm.report)
    assert "measured:" in text and "direct" in text and "gemm-tables" in text and "gemm-planes" in text
    (note,) = cm.report["algorithms"].values()  # one conv node, its note kept as is and in the kernel line
    assert note.startswith(("im2col", "direct", "gemm")) and f"[{note}]" in " ".join(cm.report["kernels"].values())


def test_conv_dropped_pixels_get_zero_gradient(rng):
    # (10 + 0 - 3) // 2 + 1 = 4 outputs: the last input row/column is never read
    x, w = rng.standard_normal((1, 2, 10, 10)).astype(np.float32), rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    attrs = _attrs(2, 0)
    gy = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    compare("conv2d_input_grad", [gy, w], input_shape=x.shape, rtol=1e-4, atol=1e-5, **attrs)
    (gx,) = run_kernel("numba", "conv2d_input_grad", [gy, w], input_shape=x.shape, **attrs)
    assert not gx[:, :, -1].any() and not gx[:, :, :, -1].any()


ACTS = [("none", ()), ("relu", ()), ("leaky_relu", (("negative_slope", 0.2),)), ("silu", ()),
        ("elu", (("alpha", 0.5),))]


@pytest.mark.parametrize("activation,act_attrs", ACTS)
@pytest.mark.parametrize("case", [0, 4, 6, 8, 12], ids=lambda i: IDS[i])
@pytest.mark.parametrize("has_bias,has_residual", [(True, True), (False, True), (True, False)])
def test_fused_conv2d(rng, activation, act_attrs, case, has_bias, has_residual):
    xs, ws, attrs, _ = CASES[case]
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    (y,) = run_kernel("numpy", "conv2d", [x, w], **attrs)
    ins = [x, w] + [rng.standard_normal(ws[0]).astype(np.float32)] * has_bias
    ins += [rng.standard_normal(y.shape).astype(np.float32)] * has_residual
    compare("fused_conv2d", ins, rtol=1e-4, atol=1e-4, has_bias=has_bias, has_residual=has_residual,
            activation=activation, act_attrs=act_attrs, **attrs)


@pytest.mark.parametrize("activation", ["none", "relu", "tanh"])
def test_fused_linear(rng, activation):
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((5, 7), (3, 7), (3,)))
    r = rng.standard_normal((5, 3)).astype(np.float32)
    for has_bias in (True, False):  # each branch of the numba rows epilogue
        for has_residual in (True, False):
            compare("fused_linear", [x, w] + [b] * has_bias + [r] * has_residual, rtol=1e-4, atol=1e-5,
                    has_bias=has_bias, has_residual=has_residual, activation=activation, act_attrs=())


def test_epilogue_applies_folded_bn_scale_shift_in_one_pass(rng):
    from backends.numba.conv.drivers import conv2d_forward
    from backends.numba.conv.epilogue import Epilogue

    xs, ws, attrs, _ = CASES[0]
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    scale, shift = rng.random(ws[0]).astype(np.float32) + 0.5, rng.standard_normal(ws[0]).astype(np.float32)
    (y,) = run_kernel("numpy", "conv2d", [x, w], **attrs)
    res = rng.standard_normal(y.shape).astype(np.float32)
    expect = np.maximum(y * scale[:, None, None] + shift[:, None, None] + res, 0)
    for algo in ("im2col-pixel", "im2col-channel", "direct", "gemm-tables", "gemm-planes"):
        out = np.empty_like(y)
        conv2d_forward(x, w, out, Epilogue(np.float32, bias=shift, scale=scale, residual=res, act=nb.elementwise.RELU),
                       algorithm=algo, **attrs)
        np.testing.assert_allclose(out, expect, rtol=1e-4, atol=1e-4)


POOL_CASES = [
    dict(kernel=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=False),
    dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=False),  # ResNet stem pool
    dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True),
    dict(kernel=(3, 2), stride=(1, 2), padding=(1, 0), ceil_mode=True),
]


@pytest.mark.parametrize("pc", POOL_CASES)
@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (1, 2, 8, 9)])
def test_max_pool(rng, pc, shape):
    x = np.round(rng.standard_normal(shape) * 2).astype(np.float32)  # rounding makes ties
    for dil in ((1, 1), (2, 1)):
        attrs = dict(pc, dilation=dil)
        try:
            (y,) = run_kernel("numpy", "max_pool2d", [x], **attrs)
        except engine.ShapeError:
            continue
        compare("max_pool2d", [x], **attrs)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        compare("max_pool2d_grad", [gy, x], rtol=1e-5, atol=1e-6, **attrs)


@pytest.mark.parametrize("pc", POOL_CASES)
@pytest.mark.parametrize("count_include_pad,divisor", [(True, 0), (False, 0), (True, 3)])
def test_avg_pool(rng, pc, count_include_pad, divisor):
    x = rng.standard_normal((2, 3, 7, 8)).astype(np.float32)
    attrs = dict(pc, count_include_pad=count_include_pad, divisor=divisor)
    (y,) = run_kernel("numpy", "avg_pool2d", [x], **attrs)
    compare("avg_pool2d", [x], **attrs)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    compare("avg_pool2d_grad", [gy], input_shape=x.shape, **attrs)


@pytest.mark.parametrize("shape,osz", [((2, 3, 7, 7), (1, 1)), ((2, 3, 7, 9), (3, 4)), ((1, 2, 5, 5), (5, 5)),
                                       ((1, 2, 4, 6), (7, 3))])
def test_adaptive_pools(rng, shape, osz):
    x = np.round(rng.standard_normal(shape) * 2).astype(np.float32)
    (y,) = run_kernel("numpy", "adaptive_avg_pool2d", [x], output_size=osz)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    compare("adaptive_avg_pool2d", [x], output_size=osz)
    compare("adaptive_avg_pool2d_grad", [gy], output_size=osz, input_shape=shape)
    compare("adaptive_max_pool2d", [x], output_size=osz)
    compare("adaptive_max_pool2d_grad", [gy, x], output_size=osz)


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 4, 4), (3, 4, 7)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm(rng, shape, dtype):
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    compare("batch_norm_train", [x, w, b], rtol=1e-4, atol=1e-5, eps=1e-5)
    _, mean, var = run_kernel("numpy", "batch_norm_train", [x, w, b], eps=1e-5)
    gy = rng.standard_normal(shape).astype(dtype)
    compare("batch_norm_train_grad", [gy, x, w, mean, var], rtol=1e-4, atol=1e-4, eps=1e-5)
    compare("batch_norm_infer", [x, w, b, mean, var + 0.5], rtol=1e-5, atol=1e-5, eps=1e-5)


def test_conv_net_training_step_on_numba_matches_numpy(fast_backend, rng):
    """Eager conv -> bn -> relu -> pool -> linear forward+backward under the `fast_backend` fixture, against numpy."""
    import engine.functional as F

    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 8, 8), (4, 3, 3, 3), (5, 16))]

    def run():
        x, w, fc = (engine.Tensor(a, requires_grad=True) for a in arrays)
        g, bb = engine.Tensor(np.ones(4, np.float32), requires_grad=True), engine.Tensor(np.zeros(4, np.float32))
        h = F.relu(F.batch_norm(F.conv2d(x, w, padding=1), None, None, g, bb, training=True))
        h = F.max_pool2d(h, 2)
        loss = F.linear(F.flatten(F.adaptive_avg_pool2d(h, (2, 2)), 1), fc).sum()
        loss.backward()
        return loss.item(), x.grad.numpy(), w.grad.numpy()

    got = run()
    with engine.use_backend("numpy"):
        ref = run()
    for a, r in zip(got, ref):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)


def test_compile_report_names_the_conv_algorithm():
    m = randomize_bn(TinyResNet())
    m.eval()
    cm = graph.compile(m, inputs((2, 3, 16, 16)), backend="numba")
    x = inputs((2, 3, 16, 16))
    cm(x)
    convs = [str(v) for v in cm.report["kernels"].values() if "conv2d" in str(v)]
    algos = "|".join(re.escape(a) for a in conv_select.ALGORITHMS)
    assert convs and all(re.search(rf"\[({algos}) \((heuristic|only)\)", v) for v in convs), convs


@pytest.mark.parametrize("xs,ws,attrs,algo", CASES[:4], ids=IDS[:4])
def test_both_im2col_loop_orders_agree(rng, xs, ws, attrs, algo):
    """im2col (one thread per cols row, large planes) and im2col_planes (one per input plane, small planes)."""
    from backends.numba.conv.geometry import geom, out_hw
    from backends.numba.conv.im2col import im2col, im2col_planes

    x = rng.standard_normal(xs).astype(np.float32)
    oh, ow = out_hw(xs, ws, attrs)
    kh, kw = ws[2:]
    a, b = (np.full((xs[1] * kh * kw, xs[0] * oh * ow), 7, np.float32) for _ in range(2))
    g = geom(attrs["stride"], attrs["padding"], attrs["dilation"])
    im2col(x, a, kh, kw, *g, oh, ow)
    im2col_planes(x, b, kh, kw, *g, oh, ow)
    np.testing.assert_array_equal(a, b)
    assert not (a == 7).any()


def test_conv_kernels_keep_no_reference_to_their_inputs_or_outputs(rng):
    """Every algorithm of every role: once a call returns, nothing in the backend keeps x, w, gy or out alive
    (a cached im2col matrix once held x between calls and gave a wrong result on reused buffers)."""
    import gc
    import weakref

    for xs, ws, attrs, _ in (CASES[3], CASES[4], CASES[8]):
        for dtype in (np.float32, np.float64):
            for role in ("forward", "input_grad", "weight_grad"):
                for algo in conv_select.forcible(role, xs, ws, attrs, dtype):
                    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
                    (y,) = run_kernel("numpy", "conv2d", [x, w], **attrs)
                    gy = rng.standard_normal(y.shape).astype(dtype)
                    with conv_policy(algo):
                        if role == "forward":
                            (out,) = run_kernel("numba", "conv2d", [x, w], **attrs)
                        elif role == "input_grad":
                            (out,) = run_kernel("numba", "conv2d_input_grad", [gy, w], input_shape=xs, **attrs)
                        else:
                            (out,) = run_kernel("numba", "conv2d_weight_grad", [x, gy], weight_shape=ws, **attrs)
                    refs = [weakref.ref(a) for a in (x, w, gy, out)]
                    del x, w, gy, out, y
                    gc.collect()
                    assert all(r() is None for r in refs), (role, algo, dtype, xs)


def _folded_conv_model():
    from engine import nn

    engine.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU())
    m.eval()
    return m


# winograd-f2/32: U^T in the 32-wide panels of the GEMM tile the channels-last forward uses on 16x16 planes
@pytest.mark.parametrize("algo,form", [("winograd-f2", "winograd-f2/32"), ("gemm-tables", "tables"),
                                       ("nchwc-winograd-f4", "nchwc-f4")])
def test_compiled_module_owns_the_derived_forms_of_its_folded_weights(rng, algo, form):
    """Winograd's transformed kernel and gemm-tables' packed panels of a compiled graph's constant (folded)
    weights live in its executor's context: made once when it is built, used by every call, gone with it."""
    import gc
    import weakref

    import graph

    m = _folded_conv_model()
    x = engine.tensor(rng.standard_normal((2, 4, 16, 16)).astype(np.float32))
    with conv_policy(algo), engine.use_backend("numba"):
        ref = m(x).numpy()  # eager: transformed per call
        cm = graph.compile(m, x, backend="numba")
        ctx = cm.compiled.executor.context
        assert ctx.derived_forms == [form]  # prepared with the executor
        (key,) = ctx._derived
        kept = ctx._derived[key]
        first, second = cm(x).numpy(), cm(x).numpy()
        assert ctx.derived_forms == [form] and ctx._derived[key] is kept  # not remade per call
        kept[...] = 0  # the compiled calls read the kept form: zeroed panels / kernels drop the conv term
        assert not np.allclose(cm(x).numpy(), ref, atol=1e-3)
    for got in (first, second):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    gone = weakref.ref(ctx)
    del cm, ctx, kept
    gc.collect()
    assert gone() is None


def test_compile_report_shows_the_workspace_the_model_really_uses(rng):
    """The executor's workspace is sized when it is built and reported next to the arena; running the model
    allocates nothing more, and each compiled module has its own."""
    import graph
    from tests.null.graph_models import TinyResNet, inputs, randomize_bn

    m = randomize_bn(TinyResNet())
    m.eval()
    x = inputs((2, 3, 16, 16))
    cm = graph.compile(m, x, backend="numba")
    ctx = cm.compiled.executor.context
    planned = cm.report["memory"]["workspace_bytes"]
    assert planned > 0 and planned == ctx.workspace.nbytes
    assert "kernel workspaces" in str(cm.report)
    cm(x)
    cm(x)
    assert ctx.workspace.nbytes == planned
    other = graph.compile(m, x, backend="numba").compiled.executor.context
    assert other.workspace is not ctx.workspace
    assert graph.compile(m, x, backend="numpy").report["memory"]["workspace_bytes"] == 0


def test_default_choice_is_the_heuristic_and_measuring_is_opt_in(rng):
    """Default: no measurement (eager and compiled); compile(autotune=True) measures and reports the times;
    deterministic algorithms turn that off again; an unknown policy name is an error."""
    import graph
    from engine import nn

    m = nn.Conv2d(1, 4, 5)
    m.eval()
    x = engine.tensor(rng.standard_normal((2, 1, 12, 12)).astype(np.float32))
    conv_select.clear_cache()
    assert conv_select.conv_policy() == "heuristic"
    with engine.use_backend("numba"):
        m(x)
    assert not conv_select._CACHE  # eager: nothing measured
    (note,) = graph.compile(m, x, backend="numba").report["algorithms"].values()
    assert note == "gemm-planes (heuristic)" and not conv_select._CACHE
    tuned = graph.compile(m, x, backend="numba", autotune=True)
    (note,) = tuned.report["algorithms"].values()
    assert "measured:" in note and "direct" in note and tuned.report["autotune"]
    (ref,) = run_kernel("numpy", "conv2d", [x.numpy(), m.weight.numpy(), m.bias.numpy()], **_attrs())
    np.testing.assert_allclose(tuned(x).numpy(), ref, rtol=1e-4, atol=1e-4)
    conv_select.clear_cache()
    assert not engine.are_deterministic_algorithms_enabled()
    engine.use_deterministic_algorithms(True)
    try:
        (note,) = graph.compile(m, x, backend="numba", autotune=True).report["algorithms"].values()
        with conv_policy("measure"):
            assert conv_select.conv_policy() == "heuristic"
    finally:
        engine.use_deterministic_algorithms(False)
    assert note == "gemm-planes (heuristic)" and not conv_select._CACHE
    with pytest.raises(ValueError, match="unknown policy 'fastest'.*'heuristic', 'measure'"):
        set_conv_policy("fastest")


def test_unknown_policy_from_the_environment_fails_at_the_first_conv(rng, monkeypatch):
    monkeypatch.setattr(conv_select, "_policy", ["fastest"])  # as read from CONVGRAPH_CONV_ALGO at import
    x, w = rng.standard_normal((1, 2, 5, 5)).astype(np.float32), rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="CONVGRAPH_CONV_ALGO: unknown policy 'fastest'"):
        run_kernel("numba", "conv2d", [x, w], **_attrs())


def test_the_shared_variable_accepts_cuda_names_as_the_heuristic(monkeypatch):
    """CONVGRAPH_CONV_ALGO is read by numba and cuda: a cuda algorithm means numba's heuristic, a name no backend
    has is an error that names the backend and lists every valid name; set_conv_policy takes numba's own only."""
    monkeypatch.setattr(conv_select, "_policy", ["igemm-64x64"])
    assert conv_select.conv_policy() == "heuristic"
    monkeypatch.setattr(conv_select, "_policy", ["igemm-32x32"])
    with pytest.raises(ValueError, match=r"CONVGRAPH_CONV_ALGO: unknown policy 'igemm-32x32' \(read by backend "
                                         r"'numba'\).*numba: direct, gemm-tables.*cuda: igemm-128x128"):
        conv_select.conv_policy()
    with pytest.raises(ValueError, match="'igemm-64x64' is a cuda algorithm, not one of backend 'numba'"):
        conv_select.set_conv_policy("igemm-64x64")


@pytest.mark.parametrize("algo", ["im2col-channel", "im2col-pixel", "gemm_1x1"])
def test_forward_recomputes_im2col_for_new_data_in_the_same_buffer(rng, algo):
    """A compiled graph runs every call on the same arena buffers, and callers may refill one input array: the
    forward must not reuse the previous call's im2col matrix (it did for a graph with one im2col conv)."""
    import graph
    from engine import nn

    k = 1 if algo == "gemm_1x1" else 3
    # the depthwise layer runs "direct", so the second conv is the graph's only im2col user and its input buffer
    # is the same arena array on every call
    m = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, groups=3), nn.ReLU(), nn.Conv2d(3, 5, k, padding=k // 2))
    m.eval()
    x1, x2 = (rng.standard_normal((2, 3, 9, 9)).astype(np.float32) for _ in range(2))
    with conv_policy(algo):
        cm = graph.compile(m, engine.tensor(x1), backend="numba")
        got = [np.array(getattr(o, "data", o)) for o in (cm(engine.tensor(x1)), cm(engine.tensor(x2)))]
        buf = x1.copy()
        with engine.no_grad(), engine.use_backend("numba"):
            eager1 = m(engine.Tensor(buf)).data.copy()
            buf[...] = x2  # the same array, new data (Tensor shares it)
            eager2 = m(engine.Tensor(buf)).data.copy()
    with engine.no_grad(), engine.use_backend("numpy"):
        refs = [m(engine.tensor(x)).data for x in (x1, x2)]
    for out, ref in zip(got + [eager1, eager2], refs + refs):
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
