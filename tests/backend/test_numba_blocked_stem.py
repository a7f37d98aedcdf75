"""The first convolution on the numba backend reading the NCHW image directly and writing blocked values
(``blocked_conv2d`` with ``block`` set, backends/numba/blocked/conv.py) against the numpy reference: ResNet's 7x7/2
and MobileNetV2's 3x3/2 stems, a one-channel image without padding, a residual and the parallel kernel."""

from __future__ import annotations

import re

import numba
import numpy as np
import pytest

import backends.numba  # noqa: F401 - registers the kernels
from backends.numba.blocked import conv as bconv
from backends.numba.blocked import stem
from backends.numba.gemm import AVX512, VL
from engine import Spec
from engine.backend import get_backend
from engine.primitive import PRIMITIVES

NB, NP = get_backend("numba"), get_backend("numpy")

# (C, O, H, W, k, stride, pad, residual, activation, act_attrs)
STEMS = [
    (3, 64, 23, 21, 7, 2, 3, False, "relu", ()),  # ResNet
    (3, 32, 17, 18, 3, 2, 1, False, "clamp", (("max", 6.0), ("min", 0.0))),  # MobileNetV2
    (1, 20, 12, 11, 5, 1, 0, True, "none", ()),  # LeNet-5's conv1, no padding: the image read in place
    (3, 16, 16, 15, 3, 1, 1, False, "relu", ()),  # ResNet-18 CIFAR: 3x3/1, where a blocked input would get Winograd
]


# (C, O, H, W, k, stride, padding, dilation, residual): images wide enough for the stem kernel's interior tiles
# (backends/numba/blocked/stem.py, 14 pixels on AVX-512) and a run that is not a whole number of them, beside the
# borders, and tall enough for its tiles down a border column (4 rows with the same kernel rows in the image)
WIDE = [
    (3, 32, 21, 61, 3, 2, ((1, 1), (1, 1)), 1, False),  # MobileNetV2: 30 interior pixels a row
    (3, 40, 27, 45, 7, 2, ((3, 3), (3, 3)), 1, True),  # ResNet's 7x7/2, three output blocks (the last group one block)
    (3, 16, 6, 33, 3, 1, ((1, 1), (1, 1)), 1, False),  # stride 1
    (3, 24, 15, 75, 11, 4, ((2, 2), (2, 2)), 1, False),  # AlexNet's 11x11/4: the run-time column stride
    (2, 20, 8, 37, 3, 2, ((0, 1), (1, 0)), 1, True),  # "same" padding of an odd size, bottom / right only
    (4, 16, 12, 40, 3, 1, ((2, 2), (2, 2)), 2, False),  # dilation
]


def _run(b, name, *ins, **attrs):
    spec = PRIMITIVES[name].abstract_eval(*(Spec(a.shape, a.dtype) for a in ins), **attrs)[0]
    out = np.empty(spec.shape, spec.dtype)
    b.kernel(name)(*ins, out=out, **attrs)
    return out


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("case", STEMS, ids=lambda c: "x".join(map(str, c[:7])))
def test_nchw_in_blocked_out(case, parallel, rng, monkeypatch):
    c, o, h, w, k, s, p, res, act, act_attrs = case
    monkeypatch.setattr(bconv, "SERIAL_MACS", 0 if parallel else 1 << 62)
    x = rng.standard_normal((2, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((o, c, k, k), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    attrs = dict(stride=(s, s), padding=((p, p), (p, p)), dilation=(1, 1), groups=1, has_bias=True,
                 has_residual=res, activation=act, act_attrs=act_attrs, block=VL)
    ins = [x, wt, b]
    if res:
        y = PRIMITIVES["blocked_conv2d"].abstract_eval(*(Spec(a.shape, a.dtype) for a in ins),
                                                       **dict(attrs, has_residual=False))[0]
        ins.append(rng.standard_normal(y.shape, dtype=np.float32))
    got = _run(NB, "blocked_conv2d", *ins, **attrs)
    # the reference: the NCHW fused conv on numpy kernels, then the clamp, then blocked
    ref_attrs = dict(attrs, has_residual=False, activation="none", act_attrs=())
    del ref_attrs["block"]
    ref = _run(NP, "fused_conv2d", x, wt, b, **ref_attrs)
    if res:
        ref += _run(NP, "from_blocked", ins[3], channels=o)
    ref = np.clip(ref, *((0.0, 6.0) if act == "clamp" else (0.0, None) if act == "relu" else (None, None)))
    np.testing.assert_allclose(_run(NB, "from_blocked", got, channels=o), ref, rtol=1e-4,
                               atol=1e-4 * np.abs(ref).max())


def test_nchw_in_shape_rule_names_the_constraint():
    x, w = Spec((1, 3, 8, 8), np.float32), Spec((6, 1, 3, 3), np.float32)
    with pytest.raises(Exception, match="blocked_conv2d.*NCHW.*groups 1"):
        PRIMITIVES["blocked_conv2d"].abstract_eval(x, w, stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1),
                                                   groups=3, has_bias=False, has_residual=False, activation="none",
                                                   block=VL)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("case", WIDE, ids=lambda c: "x".join(map(str, c[:6])) + f"d{c[7]}" + "r" * c[8])
def test_nchw_in_wide_rows(case, parallel, rng, monkeypatch):
    c, o, h, w, k, s, pad, d, res = case
    monkeypatch.setattr(bconv, "SERIAL_MACS", 0 if parallel else 1 << 62)
    x = rng.standard_normal((2, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((o, c, k, k), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    attrs = dict(stride=(s, s), padding=pad, dilation=(d, d), groups=1, has_bias=True, has_residual=False,
                 activation="clamp", act_attrs=(("max", 6.0), ("min", 0.0)))
    ref = _run(NP, "fused_conv2d", x, wt, b, **dict(attrs, activation="none", act_attrs=()))
    ins = [x, wt, b]
    if res:
        r = rng.standard_normal(ref.shape, dtype=np.float32)
        ins.append(_run(NB, "to_blocked", r, block=VL))
        ref += r
    got = _run(NB, "blocked_conv2d", *ins, **dict(attrs, has_residual=res), block=VL)
    ref = np.clip(ref, 0.0, 6.0)
    np.testing.assert_allclose(_run(NB, "from_blocked", got, channels=o), ref, rtol=1e-4,
                               atol=1e-4 * np.abs(ref).max())


def test_stem_tiles_are_vector_fma(rng):
    x = rng.standard_normal((1, 3, 9, 40), dtype=np.float32)
    _run(NB, "blocked_conv2d", x, np.ones((32, 3, 3, 3), np.float32), stride=(2, 2), padding=((1, 1), (1, 1)),
         dilation=(1, 1), groups=1, has_bias=False, has_residual=False, activation="none", act_attrs=(), block=VL)
    kernel = stem._stem_conv_serial
    sig = kernel.signatures[0]
    fresh = numba.njit(kernel.py_func)  # not from the cache (cached code cannot be inspected)
    fresh.compile(sig)
    fmas = re.findall(r"vfmadd\w*\s+[^\n]*" + ("zmm" if AVX512 else "ymm"), fresh.inspect_asm(sig))
    assert len(fmas) >= 3 * 3 * stem.MR  # the MR x 2 and MR x 1 tiles of three column strides
