"""conv1d / conv2d and the conv2d gradient primitives: finite differences, PyTorch, shape-rule errors, costs."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import ShapeError, Spec, Tensor
from engine.ops.conv import conv2d_input_grad_p, conv2d_p, conv2d_weight_grad_p, conv_output_size, dropped_pixels
from tests.helpers import check_grads, compare_torch

# (N, C, H, W, O, (kh, kw), stride, padding, dilation, groups, bias)
CONV2D_CASES = [
    (1, 2, 5, 5, 3, (3, 3), 1, 0, 1, 1, True),  # batch 1, valid
    (2, 2, 6, 5, 2, (3, 2), 2, 1, 1, 1, False),  # stride 2, odd sizes, drops a column
    (1, 2, 7, 6, 2, (3, 3), 1, "same", 1, 1, True),
    (1, 2, 6, 6, 2, (2, 2), 1, "same", 1, 1, False),  # even kernel: asymmetric 'same' (extra pad bottom/right)
    (1, 2, 7, 7, 2, (3, 3), 1, "same", 2, 1, True),  # dilated 'same'
    (1, 2, 6, 7, 3, (3, 3), 1, "valid", 1, 1, True),
    (1, 4, 5, 5, 4, (3, 3), 2, ((1, 0), (0, 2)), 1, 2, True),  # asymmetric explicit padding, groups 2
    (1, 3, 6, 6, 3, (3, 3), 1, 1, 1, 3, True),  # depthwise
    (1, 3, 6, 6, 6, (3, 3), 1, 1, 2, 3, False),  # depthwise, channel multiplier 2, dilation 2
    (1, 2, 6, 6, 4, (3, 3), 2, 1, 1, 2, False),  # groups 2, stride 2
    (1, 2, 8, 7, 2, (2, 3), (2, 1), (0, 1), (2, 1), 1, True),  # per-axis stride / padding / dilation
    (1, 1, 5, 5, 1, (1, 1), 2, 0, 1, 1, True),  # 1x1, stride 2
    (2, 2, 9, 9, 2, (5, 5), 3, 2, 1, 1, False),  # stride 3, floor drops a row and a column
]
IDS = [f"N{c[0]}C{c[1]}{c[2]}x{c[3]}-O{c[4]}k{c[5]}-s{c[6]}-p{c[7]}-d{c[8]}-g{c[9]}-b{int(c[10])}"
       for c in CONV2D_CASES]


def _conv2d_arrays(rng, case):
    n, c, h, w, o, k, _, _, _, g, bias = case
    arrays = [rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c // g) + k)]
    return arrays + ([rng.standard_normal(o)] if bias else [])


def _ours2d(case):
    *_, stride, padding, dilation, groups, _ = case
    return lambda x, w, b=None: F.conv2d(x, w, b, stride, padding, dilation, groups)


def _torch_padding(padding, nd):
    """Our padding spec -> (F.pad tuple or None, padding for torch's conv)."""
    if isinstance(padding, tuple) and any(isinstance(p, tuple) for p in padding):
        pairs = [p if isinstance(p, tuple) else (p, p) for p in padding]
        return tuple(v for pair in reversed(pairs) for v in pair), 0
    return None, padding


def _theirs2d(case):
    torch = pytest.importorskip("torch")
    *_, stride, padding, dilation, groups, _ = case
    pre, pad = _torch_padding(padding, 2)

    def fn(x, w, b=None):
        if pre is not None:
            x = torch.nn.functional.pad(x, pre)
        return torch.nn.functional.conv2d(x, w, b, stride, pad, dilation, groups)

    return fn


@pytest.mark.parametrize("case", CONV2D_CASES, ids=IDS)
def test_conv2d_grad(case, rng):
    check_grads(_ours2d(case), _conv2d_arrays(rng, case))


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("case", CONV2D_CASES, ids=IDS)
def test_conv2d_vs_torch(case, rng):
    compare_torch(_ours2d(case), _theirs2d(case), _conv2d_arrays(rng, case))


# (N, C, L, O, k, stride, padding, dilation, groups, bias)
CONV1D_CASES = [
    (1, 2, 7, 3, 3, 1, 0, 1, 1, True),
    (2, 2, 9, 2, 3, 2, 1, 1, 1, False),
    (1, 2, 8, 2, 4, 1, "same", 1, 1, True),  # even kernel, asymmetric 'same'
    (1, 2, 9, 2, 3, 1, "same", 3, 1, False),
    (1, 4, 10, 4, 3, 2, 1, 2, 2, True),
    (1, 3, 8, 3, 3, 1, (1,), 1, 3, True),  # depthwise, padding as a 1-tuple
]


def _conv1d_arrays(rng, case):
    n, c, length, o, k, *_, g, bias = case
    arrays = [rng.standard_normal((n, c, length)), rng.standard_normal((o, c // g, k))]
    return arrays + ([rng.standard_normal(o)] if bias else [])


@pytest.mark.parametrize("case", CONV1D_CASES, ids=str)
def test_conv1d_grad_and_vs_torch(case, rng):
    torch = pytest.importorskip("torch")
    *_, s, p, d, g, _ = case
    arrays = _conv1d_arrays(rng, case)
    check_grads(lambda x, w, b=None: F.conv1d(x, w, b, s, p, d, g), arrays)
    compare_torch(lambda x, w, b=None: F.conv1d(x, w, b, s, p, d, g),
                  lambda x, w, b=None: torch.nn.functional.conv1d(x, w, b, s, p, d, g), arrays)


def test_conv1d_explicit_left_right_padding(rng):
    x, w = rng.standard_normal((1, 2, 6)), rng.standard_normal((3, 2, 3))
    y = F.conv1d(Tensor(x), Tensor(w), padding=(2, 0))
    ref = F.conv1d(Tensor(np.pad(x, ((0, 0), (0, 0), (2, 0)))), Tensor(w))
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-12)


def test_conv2d_same_keeps_size_and_pads_bottom_right(rng):
    x, w = rng.standard_normal((1, 1, 5, 6)), rng.standard_normal((1, 1, 2, 4))
    y = F.conv2d(Tensor(x), Tensor(w), padding="same")
    assert y.shape == (1, 1, 5, 6)
    # total padding (1, 3): (0, 1) rows and (1, 2) columns, the odd extra pixel after
    ref = F.conv2d(Tensor(x), Tensor(w), padding=((0, 1), (1, 2)))
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-12)


# --- the gradient primitives: adjoint identities and their own vjp rules (double backward) -------------------
GRAD_CASES = [c for c in CONV2D_CASES if c[7] not in ("same",)][:8]


def _attrs(case, x_shape, w_shape):
    """The canonical attrs conv2d binds for a case, and its output shape."""
    *_, stride, padding, dilation, groups, _ = case
    seen = []
    with engine.observe(lambda prim, ins, attrs, outs: seen.append((attrs, outs[0].shape))):
        F.conv2d(Tensor(np.zeros(x_shape)), Tensor(np.zeros(w_shape)), None, stride, padding, dilation, groups)
    return seen[0]


@pytest.mark.parametrize("case", GRAD_CASES, ids=str)
def test_conv2d_adjoint_identities(case, rng):
    x, w = _conv2d_arrays(rng, case)[:2]
    attrs, y_shape = _attrs(case, x.shape, w.shape)
    gy = rng.standard_normal(y_shape)
    y = engine.bind(conv2d_p, Tensor(x), Tensor(w), **attrs).numpy()
    gx = engine.bind(conv2d_input_grad_p, Tensor(gy), Tensor(w), input_shape=x.shape, **attrs).numpy()
    gw = engine.bind(conv2d_weight_grad_p, Tensor(x), Tensor(gy), weight_shape=w.shape, **attrs).numpy()
    # <conv(x, w), gy> = <x, input_grad(gy, w)> = <w, weight_grad(x, gy)>
    np.testing.assert_allclose(np.sum(y * gy), np.sum(x * gx), rtol=1e-10)
    np.testing.assert_allclose(np.sum(y * gy), np.sum(w * gw), rtol=1e-10)


@pytest.mark.parametrize("case", GRAD_CASES[:5], ids=str)
def test_conv2d_grad_primitives_have_vjps(case, rng):
    x, w = _conv2d_arrays(rng, case)[:2]
    attrs, y_shape = _attrs(case, x.shape, w.shape)
    gy = rng.standard_normal(y_shape)
    check_grads(lambda g, w_: engine.bind(conv2d_input_grad_p, g, w_, input_shape=x.shape, **attrs), [gy, w])
    check_grads(lambda x_, g: engine.bind(conv2d_weight_grad_p, x_, g, weight_shape=w.shape, **attrs), [x, gy])


def test_conv2d_no_input_grad_when_not_needed(rng):
    seen = []
    x = Tensor(rng.standard_normal((1, 1, 5, 5)))  # data: requires no grad
    w = Tensor(rng.standard_normal((2, 1, 3, 3)), requires_grad=True)
    y = F.conv2d(x, w)
    with engine.observe(lambda prim, *a: seen.append(prim.name)):
        y.sum().backward()
    assert "conv2d_weight_grad" in seen and "conv2d_input_grad" not in seen
    assert w.grad is not None and x.grad is None


def test_conv2d_abstract_eval_runs_no_kernel():
    x, w = Tensor(np.zeros((2, 3, 32, 32), np.float32)), Tensor(np.zeros((16, 3, 5, 5), np.float32))
    with engine.abstract():
        y = F.conv2d(x, w, stride=2, padding=2)
    assert y.shape == (2, 16, 16, 16) and y._data is None


# --- shape-rule errors: each names the op, the constraint and the values --------------------------------------
def _x(*shape):
    return Tensor(np.zeros(shape, np.float32))


@pytest.mark.parametrize("call, needles", [
    (lambda: F.conv2d(_x(1, 3, 8, 8), _x(4, 1, 3, 3)),
     ["conv2d", "input has 3 channels, weight expects 1", "weight.shape[1] * groups", "groups=1"]),
    (lambda: F.conv2d(_x(3, 8, 8), _x(4, 3, 3, 3)), ["conv2d", "input must be 4-D", "input=[3, 8, 8]"]),
    (lambda: F.conv2d(_x(1, 3, 8, 8), _x(4, 3, 3)), ["conv2d", "weight must be 4-D", "weight=[4, 3, 3]"]),
    (lambda: F.conv2d(_x(1, 1, 4, 4), _x(1, 1, 7, 7), padding=1),
     ["conv2d", "must not exceed the padded input", "kernel=7", "padded_input=6"]),
    (lambda: F.conv2d(_x(1, 1, 6, 6), _x(1, 1, 3, 3), dilation=3),
     ["conv2d", "kernel height (dilated)", "dilated_kernel=7", "input=6"]),
    (lambda: F.conv2d(_x(1, 4, 8, 8), _x(3, 1, 3, 3), groups=3),
     ["conv2d", "groups must divide the input channels", "C_in=4", "groups=3"]),
    (lambda: F.conv2d(_x(1, 4, 8, 8), _x(3, 2, 3, 3), groups=2),
     ["conv2d", "groups must divide the output channels", "C_out=3", "groups=2"]),
    (lambda: F.conv2d(_x(1, 4, 8, 8), _x(4, 4, 3, 3), groups=0), ["conv2d", "groups must be >= 1", "groups=0"]),
    (lambda: F.conv2d(_x(1, 2, 8, 8), _x(4, 2, 3, 3), _x(3)),
     ["conv2d", "bias must have shape (O,)", "bias=[3]", "O=4"]),
    (lambda: F.conv2d(_x(1, 2, 8, 8), Tensor(np.zeros((4, 2, 3, 3)))),
     ["conv2d", "same dtype", "float32 vs float64"]),
    (lambda: F.conv2d(Tensor(np.zeros((1, 2, 8, 8), int)), Tensor(np.zeros((4, 2, 3, 3), int))),
     ["conv2d", "input must be floating point", "dtype=int64"]),
    (lambda: F.conv2d(_x(1, 2, 8, 8), _x(4, 2, 3, 3), stride=0), ["conv2d", "stride must be >= 1", "stride=(0, 0)"]),
    (lambda: F.conv2d(_x(1, 2, 8, 8), _x(4, 2, 3, 3), dilation=(1, 0)),
     ["conv2d", "dilation must be >= 1", "dilation=(1, 0)"]),
    (lambda: F.conv2d(_x(1, 2, 8, 8), _x(4, 2, 3, 3), padding=-1), ["conv2d", "non-negative", "padding="]),
    (lambda: F.conv2d(_x(1, 2, 8, 8), _x(4, 2, 3, 3), stride=2, padding="same"),
     ["conv2d", "padding='same' is not supported for strided convolutions", "stride=(2, 2)"]),
    (lambda: F.conv1d(_x(1, 2, 8, 8), _x(4, 2, 3)), ["conv1d", "input must be 3-D", "input=[1, 2, 8, 8]"]),
    (lambda: F.conv1d(_x(1, 2, 8), _x(4, 2, 3, 3)), ["conv1d", "weight must be 3-D", "weight=[4, 2, 3, 3]"]),
    (lambda: F.conv1d(_x(1, 3, 8), _x(4, 2, 3)), ["conv1d", "input has 3 channels, weight expects 2"]),
])
def test_conv_shape_errors(call, needles):
    with pytest.raises(ShapeError) as e:
        call()
    for needle in needles:
        assert needle in str(e.value), f"{needle!r} not in {str(e.value)!r}"


def test_conv_invalid_padding_string():
    with pytest.raises(ValueError, match=r"conv2d: invalid padding string 'full'"):
        F.conv2d(_x(1, 1, 5, 5), _x(1, 1, 3, 3), padding="full")


def test_grad_primitive_shape_errors():
    w = Spec((4, 2, 3, 3), np.float32)
    attrs = dict(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1)
    with pytest.raises(ShapeError, match=r"conv2d_input_grad: gy must have the conv2d output shape.*"
                                         r"gy=\[1, 4, 5, 5\], expected=\[1, 4, 6, 6\]"):
        conv2d_input_grad_p.abstract_eval(Spec((1, 4, 5, 5), np.float32), w, input_shape=(1, 2, 8, 8), **attrs)
    with pytest.raises(ShapeError, match=r"conv2d_weight_grad: gy must have the conv2d output shape"):
        conv2d_weight_grad_p.abstract_eval(Spec((1, 2, 8, 8), np.float32), Spec((1, 3, 6, 6), np.float32),
                                           weight_shape=(4, 2, 3, 3), **attrs)


# --- strict=True and the dropped-pixel helpers --------------------------------------------------------------
def test_strict_error_text():
    with pytest.raises(ShapeError) as e:
        F.conv2d(_x(1, 1, 10, 10), _x(1, 1, 3, 3), stride=2, strict=True)
    msg = str(e.value)
    assert msg.startswith("conv2d: strict=True")
    assert "cannot have W=10, P=0, F=3, S=2" in msg and "drops 1 input rows" in msg


def test_strict_names_axis_padding_and_dilation():
    with pytest.raises(ShapeError, match=r"conv2d: .*along the width.*W=10, P=1, F=5, S=2.*7/2.*drops 1 input columns"):
        F.conv2d(_x(1, 1, 8, 10), _x(1, 1, 1, 3), stride=(1, 2), padding=((0, 0), (1, 1)), dilation=2,
                 strict=True)
    with pytest.raises(ShapeError, match=r"conv1d: strict=True .*W=8, P=0, F=3, S=2"):
        F.conv1d(_x(1, 1, 8), _x(1, 1, 3), stride=2, strict=True)


def test_strict_accepts_exact_tiling():
    assert F.conv2d(_x(1, 1, 11, 11), _x(1, 1, 3, 3), stride=2, strict=True).shape == (1, 1, 5, 5)
    assert F.conv2d(_x(1, 3, 32, 32), _x(16, 3, 5, 5), padding=2, strict=True).shape == (1, 16, 32, 32)
    assert F.conv2d(_x(1, 1, 10, 10), _x(1, 1, 3, 3), stride=2).shape == (1, 1, 4, 4)  # default: floor


@pytest.mark.parametrize("size, k, s, p, d, out, dropped", [
    (10, 3, 2, 0, 1, 4, 1),  # CS231n: (10 - 3 + 0) / 2 = 3.5
    (11, 3, 2, 0, 1, 5, 0),
    (32, 5, 1, 2, 1, 32, 0),
    (227, 11, 4, 0, 1, 55, 0),  # AlexNet conv1 at 227
    (224, 11, 4, 2, 1, 55, 1),  # ... and at torchvision's 224 with padding 2
    (7, 3, 1, (0, 2), 2, 5, 0),
    (9, 3, 3, (1, 0), 2, 2, 2),
])
def test_conv_output_size_and_dropped_pixels(size, k, s, p, d, out, dropped):
    assert conv_output_size(size, k, s, p, d) == out
    assert dropped_pixels(size, k, s, p, d) == dropped


def test_conv_output_size_ceil_mode_rule():
    assert conv_output_size(5, 2, 2, 1, ceil_mode=True) == 3  # a 4th window would start in the right padding
    assert conv_output_size(7, 3, 2, 0, ceil_mode=True) == 3
    assert conv_output_size(8, 3, 2, 0, ceil_mode=True) == 4
    assert conv_output_size(8, 3, 2, 0, ceil_mode=False) == 3


# --- cost rules ---------------------------------------------------------------------------------------------
def _costs(x_shape, w_shape, bias, **kw):
    x = Tensor(np.zeros(x_shape, np.float32))
    w = Tensor(np.zeros(w_shape, np.float32), requires_grad=True)
    b = Tensor(np.zeros(w_shape[0], np.float32)) if bias else None
    calls = []
    with engine.observe(lambda prim, ins, attrs, outs: calls.append((prim, ins, attrs, outs))):
        y = F.conv2d(x, w, b, **kw)
        y.sum().backward()
    return {p.name: p.cost(tuple(t.spec for t in ins), tuple(t.spec for t in outs), **a) for p, ins, a, outs in calls}


def test_cost_convnetjs_conv1():
    # ConvNetJS CIFAR-10 demo: conv 16@5x5, stride 1, pad 2 on 32x32x3
    costs = _costs((1, 3, 32, 32), (16, 3, 5, 5), True, padding=2)
    c = costs["conv2d"]
    assert 16 * 3 * 5 * 5 + 16 == 1216  # params
    assert c.macs == 16 * 32 * 32 * 3 * 25 == 1_228_800
    assert c.flops == 2 * c.macs + 16 * 32 * 32  # FLOPs = 2 x MACs, plus one add per output for the bias
    assert c.bytes_read == (3 * 32 * 32 + 1216) * 4 and c.bytes_written == 16 * 32 * 32 * 4
    gw = costs["conv2d_weight_grad"]
    assert gw.macs == c.macs and gw.flops == 2 * c.macs and gw.bytes_written == 16 * 3 * 25 * 4


def test_cost_depthwise_and_input_grad():
    x = Tensor(np.zeros((2, 8, 10, 10), np.float32), requires_grad=True)
    w = Tensor(np.zeros((8, 1, 3, 3), np.float32), requires_grad=True)
    y = F.conv2d(x, w, stride=2, padding=1, groups=8)
    spec = conv2d_p.abstract_eval(x.spec, w.spec, stride=(2, 2), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=8)
    cost = conv2d_p.cost((x.spec, w.spec), spec, stride=(2, 2), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=8)
    assert y.shape == (2, 8, 5, 5) and cost.macs == 2 * 8 * 5 * 5 * 1 * 9 and cost.flops == 2 * cost.macs
    gspec = (Spec(y.shape, np.float32), w.spec)
    gcost = conv2d_input_grad_p.cost(gspec, (x.spec,), input_shape=x.shape, stride=(2, 2), padding=((1, 1), (1, 1)),
                                     dilation=(1, 1), groups=8)
    assert gcost.macs == cost.macs and gcost.bytes_written == x.spec.nbytes


# --- transposed convolution (a composite over conv2d_input_grad) ----------------------------------------------
# (N, C_in, H, W, C_out, k, stride, padding, output_padding, groups, dilation, bias)
CONVT_CASES = [
    (1, 2, 4, 5, 3, (3, 3), 1, 0, 0, 1, 1, True),
    (2, 2, 3, 4, 2, (3, 2), 2, 1, 1, 1, 1, False),
    (1, 4, 4, 4, 6, (3, 3), 2, 1, (1, 0), 2, 1, True),
    (1, 2, 5, 3, 2, (2, 3), (1, 3), (0, 1), (0, 2), 1, (2, 1), True),
]


@pytest.mark.parametrize("case", CONVT_CASES, ids=str)
def test_conv_transpose2d(case, rng):
    torch = pytest.importorskip("torch")
    n, c, h, w, o, k, s, p, op, g, d, bias = case
    arrays = [rng.standard_normal((n, c, h, w)), rng.standard_normal((c, o // g) + k)]
    arrays += [rng.standard_normal(o)] if bias else []
    ours = lambda x, wt, b=None: F.conv_transpose2d(x, wt, b, s, p, op, g, d)  # noqa: E731
    check_grads(ours, arrays)
    compare_torch(ours, lambda x, wt, b=None: torch.nn.functional.conv_transpose2d(x, wt, b, s, p, op, g, d), arrays)


def test_conv_transpose1d_and_errors(rng):
    torch = pytest.importorskip("torch")
    arrays = [rng.standard_normal((2, 3, 6)), rng.standard_normal((3, 2, 3)), rng.standard_normal(2)]
    compare_torch(lambda x, w, b: F.conv_transpose1d(x, w, b, 2, 1, 1),
                  lambda x, w, b: torch.nn.functional.conv_transpose1d(x, w, b, 2, 1, 1), arrays)
    with pytest.raises(ShapeError, match=r"conv_transpose2d: output_padding must be smaller than the stride "
                                         r"\(got output_padding=\(1, 1\), stride=\(1, 1\)\)"):
        F.conv_transpose2d(_x(1, 2, 4, 4), _x(2, 3, 3, 3), output_padding=1)
    with pytest.raises(ShapeError, match=r"conv_transpose2d: input has 2 channels, weight expects 3"):
        F.conv_transpose2d(_x(1, 2, 4, 4), _x(3, 3, 3, 3))
