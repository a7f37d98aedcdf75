"""Padding modes (F.pad, conv padding_mode), ConvTranspose1d/2d modules, F.interpolate / Upsample: PyTorch parity
(forward and gradients), float64 finite-difference gradients, and errors."""

from __future__ import annotations

import numpy as np
import pytest

import engine.functional as F
from engine import ShapeError, Tensor, nn
from tests.helpers import check_grads, compare_torch

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # only the PyTorch comparisons skip
    torch = TF = None


def _skip_without_torch():
    if torch is None:
        pytest.skip("torch is not installed")


PADS = [((1, 3, 5), (2, 1)), ((2, 3, 4, 5), (1, 2, 3, 0)), ((1, 2, 3, 3), (2, 2, 1, 1)), ((2, 1, 4, 4), (0, 3, 3, 0))]


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("shape,pad", PADS, ids=str)
def test_pad_modes_against_torch(mode, shape, pad, rng):
    _skip_without_torch()
    if mode == "reflect" and max(pad) >= min(shape[-len(pad) // 2:]):
        pytest.skip("reflect needs padding < size")
    compare_torch(lambda x: F.pad(x, pad, mode=mode), lambda x: TF.pad(x, pad, mode=mode),
                  [rng.standard_normal(shape)], fwd_tol=0, grad_tol=1e-6)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_modes_gradients(mode, rng):
    check_grads(lambda x: F.pad(x, (2, 1, 1, 2), mode=mode), [rng.standard_normal((1, 2, 3, 4))])


def test_pad_mode_values():
    x = Tensor(np.array([[[1.0, 2.0, 3.0]]]))
    np.testing.assert_array_equal(F.pad(x, (2, 1), mode="reflect").numpy()[0, 0], [3, 2, 1, 2, 3, 2])
    np.testing.assert_array_equal(F.pad(x, (2, 1), mode="replicate").numpy()[0, 0], [1, 1, 1, 2, 3, 3])
    np.testing.assert_array_equal(F.pad(x, (2, 1), mode="circular").numpy()[0, 0], [2, 3, 1, 2, 3, 1])


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")  # torch's own warning
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular", "zeros"])
@pytest.mark.parametrize("conv,shape,kw", [
    ("Conv2d", (2, 3, 6, 5), dict(kernel_size=3, padding=1)),
    ("Conv2d", (1, 3, 7, 6), dict(kernel_size=(3, 2), padding=(2, 1), stride=2)),
    ("Conv2d", (1, 3, 5, 5), dict(kernel_size=4, padding="same", dilation=1)),
    ("Conv1d", (2, 3, 9), dict(kernel_size=3, padding=2, dilation=2)),
])
def test_conv_padding_mode_against_torch(mode, conv, shape, kw, rng):
    _skip_without_torch()
    ours = getattr(nn, conv)(3, 4, padding_mode=mode, **kw)
    theirs = getattr(torch.nn, conv)(3, 4, padding_mode=mode, **kw)
    theirs.weight.data = torch.tensor(ours.weight.numpy())
    theirs.bias.data = torch.tensor(ours.bias.numpy())
    if mode != "zeros":
        assert f"padding_mode={mode}" in repr(ours)

    compare_torch(lambda x: ours(x), lambda x: theirs(x), [rng.standard_normal(shape)], fwd_tol=1e-5,
                  grad_tol=1e-5)
    x = rng.standard_normal(shape).astype(np.float32)
    gy = rng.standard_normal(ours(Tensor(x)).shape).astype(np.float32)
    (ours(Tensor(x)) * Tensor(gy)).sum().backward()
    (theirs(torch.tensor(x)) * torch.tensor(gy)).sum().backward()
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_conv_padding_mode_gradients(rng):
    conv = nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect", dtype=np.float64)
    check_grads(lambda x: conv(x), [rng.standard_normal((1, 2, 4, 4))])


@pytest.mark.parametrize("cls,shape,kw,output_size", [
    ("ConvTranspose2d", (2, 4, 3, 5), dict(kernel_size=3, stride=2, padding=1, output_padding=1), None),
    ("ConvTranspose2d", (1, 4, 4, 4), dict(kernel_size=(2, 3), stride=(2, 1), groups=2, bias=False), None),
    ("ConvTranspose2d", (1, 4, 3, 3), dict(kernel_size=3, stride=3, dilation=2), (11, 13)),
    ("ConvTranspose1d", (2, 4, 5), dict(kernel_size=4, stride=2, padding=1), None),
    ("ConvTranspose1d", (2, 4, 5), dict(kernel_size=3, stride=2), [2, 6, 12]),
])
def test_conv_transpose_module_against_torch(cls, shape, kw, output_size, rng):
    _skip_without_torch()
    ours, theirs = getattr(nn, cls)(4, 6, **kw), getattr(torch.nn, cls)(4, 6, **kw)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    fan_in = ours.weight.shape[1] * int(np.prod(ours.weight.shape[2:]))  # torch's init bound 1/sqrt(fan_in)
    assert np.abs(ours.weight.numpy()).max() <= 1 / np.sqrt(fan_in)
    theirs.weight.data = torch.tensor(ours.weight.numpy())
    if ours.bias is not None:
        theirs.bias.data = torch.tensor(ours.bias.numpy())
    compare_torch(lambda x: ours(x, output_size), lambda x: theirs(x, output_size), [rng.standard_normal(shape)],
                  fwd_tol=1e-5, grad_tol=1e-5)


def test_conv_transpose_module_gradients(rng):
    m = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1, dtype=np.float64)
    check_grads(lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1, 1), [rng.standard_normal((1, 2, 3, 3)),
                                                                       m.weight.numpy(), m.bias.numpy()])


INTERP = [
    ((1, 2, 4, 5), dict(scale_factor=2, mode="nearest")),
    ((1, 2, 4, 5), dict(size=(7, 3), mode="nearest")),
    ((1, 2, 6, 9), dict(scale_factor=(0.5, 1 / 3), mode="nearest")),
    ((1, 2, 5, 4), dict(scale_factor=1.7, mode="nearest")),
    ((1, 2, 5, 4), dict(size=(9, 3), mode="nearest-exact")),
    ((2, 3, 4, 5), dict(scale_factor=2, mode="bilinear", align_corners=False)),
    ((2, 3, 4, 5), dict(scale_factor=2, mode="bilinear", align_corners=True)),
    ((1, 2, 5, 6), dict(size=(3, 11), mode="bilinear", align_corners=False)),
    ((1, 2, 5, 6), dict(size=(3, 11), mode="bilinear", align_corners=True)),
    ((1, 2, 5, 6), dict(scale_factor=(1.5, 0.6), mode="bilinear")),
    ((1, 2, 5, 6), dict(scale_factor=1.5, mode="bilinear", recompute_scale_factor=True)),
    ((1, 2, 5, 6), dict(size=(1, 6), mode="bilinear", align_corners=True)),
    ((2, 3, 7), dict(scale_factor=3, mode="nearest")),
    ((2, 3, 7), dict(size=4, mode="linear", align_corners=False)),
    ((2, 3, 7), dict(size=12, mode="linear", align_corners=True)),
]


@pytest.mark.parametrize("shape,kw", INTERP, ids=[f"{s}-{kw}" for s, kw in INTERP])
def test_interpolate_against_torch(shape, kw, rng):
    _skip_without_torch()
    compare_torch(lambda x: F.interpolate(x, **kw), lambda x: TF.interpolate(x, **kw), [rng.standard_normal(shape)],
                  fwd_tol=1e-6, grad_tol=1e-6)


@pytest.mark.parametrize("kw", [dict(scale_factor=2, mode="nearest"), dict(size=(3, 5), mode="nearest"),
                                dict(scale_factor=1.5, mode="bilinear"),
                                dict(size=(5, 2), mode="bilinear", align_corners=True)], ids=str)
def test_interpolate_gradients(kw, rng):
    check_grads(lambda x: F.interpolate(x, **kw), [rng.standard_normal((1, 2, 3, 4))])


def test_upsample_modules(rng):
    x = Tensor(rng.standard_normal((1, 2, 3, 4)).astype(np.float32))
    np.testing.assert_array_equal(nn.Upsample(scale_factor=2)(x).numpy(), F.interpolate(x, scale_factor=2.0).numpy())
    np.testing.assert_array_equal(nn.UpsamplingBilinear2d(size=(5, 5))(x).numpy(),
                                  F.interpolate(x, (5, 5), mode="bilinear", align_corners=True).numpy())
    np.testing.assert_array_equal(nn.UpsamplingNearest2d(scale_factor=3)(x).numpy(),
                                  np.repeat(np.repeat(x.numpy(), 3, 2), 3, 3))


def test_bad_inputs():
    x = Tensor(np.zeros((1, 2, 3, 3), np.float32))
    with pytest.raises(ShapeError, match="pad: reflect padding must be smaller than the padded dimension"):
        F.pad(x, (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="pad: mode must be 'constant' or one of"):
        F.pad(x, (1, 1), mode="mirror")
    with pytest.raises(ValueError, match="Conv2d: padding_mode must be one of"):
        nn.Conv2d(2, 2, 3, padding_mode="wrap")
    with pytest.raises(ValueError, match="ConvTranspose2d: only padding_mode='zeros' is supported"):
        nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="ConvTranspose2d: output_padding must be smaller than the stride"):
        nn.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"ConvTranspose2d: requested an output size of \[9, 9\]"):
        nn.ConvTranspose2d(2, 2, 3, stride=2)(x, output_size=(9, 9))
    with pytest.raises(ValueError, match="interpolate: give exactly one of size and scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="interpolate: align_corners can only be set with the linear modes"):
        F.interpolate(x, scale_factor=2, align_corners=True)
    with pytest.raises(ShapeError, match="interpolate: mode 'bilinear' needs 4-D input"):
        F.interpolate(Tensor(np.zeros((1, 2, 3), np.float32)), scale_factor=2, mode="bilinear")
    with pytest.raises(ValueError, match="interpolate: mode must be one of"):
        F.interpolate(x, scale_factor=2, mode="bicubic")
