"""LayerNorm, GroupNorm, InstanceNorm1d/2d: PyTorch parity (forward, gradients, running statistics, eval mode,
unbatched input, state_dict keys), float64 finite-difference gradients, and errors."""

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


# (name, ours(x, w, b), theirs(x, w, b), x shape, affine shape)
CASES = [
    ("layer_norm_last", lambda x, w, b: F.layer_norm(x, 5, w, b), lambda x, w, b: TF.layer_norm(x, (5,), w, b),
     (3, 4, 5), (5,)),
    ("layer_norm_chw", lambda x, w, b: F.layer_norm(x, (3, 4, 4), w, b, 1e-3),
     lambda x, w, b: TF.layer_norm(x, (3, 4, 4), w, b, 1e-3), (2, 3, 4, 4), (3, 4, 4)),
    ("group_norm", lambda x, w, b: F.group_norm(x, 2, w, b), lambda x, w, b: TF.group_norm(x, 2, w, b),
     (2, 6, 3, 3), (6,)),
    ("group_norm_1d", lambda x, w, b: F.group_norm(x, 3, w, b), lambda x, w, b: TF.group_norm(x, 3, w, b),
     (3, 6, 5), (6,)),
    ("group_norm_per_channel", lambda x, w, b: F.group_norm(x, 4, w, b), lambda x, w, b: TF.group_norm(x, 4, w, b),
     (2, 4, 3, 2), (4,)),
    ("instance_norm", lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
     lambda x, w, b: TF.instance_norm(x, weight=w, bias=b), (2, 3, 4, 5), (3,)),
]
IDS = [c[0] for c in CASES]


def _arrays(rng, xs, ps):
    return [rng.standard_normal(xs) * 2 + 0.5, rng.standard_normal(ps) + 1.0, rng.standard_normal(ps)]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_against_torch(case, rng):
    _skip_without_torch()
    _, ours, theirs, xs, ps = case
    compare_torch(ours, theirs, _arrays(rng, xs, ps), fwd_tol=2e-6, grad_tol=2e-5)
    compare_torch(lambda x: ours(x, None, None), lambda x: theirs(x, None, None), _arrays(rng, xs, ps)[:1],
                  fwd_tol=2e-6, grad_tol=2e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_finite_differences(case, rng):
    _, ours, _, xs, ps = case
    check_grads(ours, _arrays(rng, xs, ps))


def test_row_norm_primitive_vjp_with_every_output(rng):
    """Cotangents on all three outputs (y, mean, biased var) vs finite differences."""
    from engine import bind
    from engine.ops.sample_norm import row_norm_p

    check_grads(lambda x: bind(row_norm_p, x, eps=1e-3), [rng.standard_normal((3, 5)) * 2])


def test_layer_norm_of_one_value_is_zero():
    x = Tensor(np.array([[1.0], [2.0]]), requires_grad=True)
    y = F.layer_norm(x, 1)
    np.testing.assert_array_equal(y.numpy(), 0.0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 0.0)


@pytest.mark.parametrize("cls,shape", [("InstanceNorm2d", (3, 4, 5, 6)), ("InstanceNorm1d", (3, 4, 7)),
                                       ("InstanceNorm2d", (4, 5, 6))])
@pytest.mark.parametrize("affine,track", [(False, False), (True, True), (False, True)])
def test_instance_norm_module_against_torch(cls, shape, affine, track, rng):
    _skip_without_torch()
    ours = getattr(nn, cls)(4, momentum=0.2, affine=affine, track_running_stats=track)
    theirs = getattr(torch.nn, cls)(4, momentum=0.2, affine=affine, track_running_stats=track)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    if affine:
        w, b = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
        ours.weight.data, ours.bias.data = w, b
        theirs.weight.data, theirs.bias.data = torch.tensor(w), torch.tensor(b)
    for _ in range(2):  # training steps update the running statistics
        x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
        np.testing.assert_allclose(ours(Tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), atol=2e-6)
    if track:
        np.testing.assert_allclose(ours.running_mean.numpy(), theirs.running_mean.numpy(), rtol=1e-6)
        np.testing.assert_allclose(ours.running_var.numpy(), theirs.running_var.numpy(), rtol=1e-6)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(ours(Tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), atol=2e-6)


@pytest.mark.parametrize("make", [lambda m: m.LayerNorm((4, 5)), lambda m: m.LayerNorm(5, bias=False),
                                  lambda m: m.LayerNorm(5, elementwise_affine=False), lambda m: m.GroupNorm(2, 4),
                                  lambda m: m.GroupNorm(1, 4, affine=False)])
def test_module_parameters_and_forward_against_torch(make, rng):
    _skip_without_torch()
    ours, theirs = make(nn), make(torch.nn)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    for k, v in ours.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), theirs.state_dict()[k].numpy())
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(ours(Tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), atol=2e-6)


def test_bad_inputs():
    x = Tensor(np.zeros((2, 6, 3), np.float32))
    with pytest.raises(ShapeError, match=r"layer_norm: input's trailing dims must equal normalized_shape=\[4\]"):
        F.layer_norm(x, 4)
    with pytest.raises(ShapeError, match="group_norm: num_groups must divide the number of channels"):
        F.group_norm(x, 4)
    with pytest.raises(ValueError, match=r"GroupNorm: num_channels \(6\) must be divisible by num_groups \(4\)"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match="instance_norm: expected more than 1 spatial element"):
        F.instance_norm(Tensor(np.zeros((2, 6, 1), np.float32)))
    with pytest.raises(ValueError, match="InstanceNorm2d: expected 3D \\(unbatched\\) or 4D input"):
        nn.InstanceNorm2d(6)(x[0])
    with pytest.raises(ValueError, match="InstanceNorm1d: expected input's size at dim=1 to match num_features"):
        nn.InstanceNorm1d(4, affine=True)(x)
    with pytest.raises(ShapeError, match="row_norm: each row needs at least 2 values"):
        from engine import bind
        from engine.ops.sample_norm import row_norm_p

        bind(row_norm_p, Tensor(np.zeros((3, 1), np.float32)), eps=1e-5)
    with pytest.raises(ShapeError, match=r"layer_norm: weight must have shape \[3\]"):
        F.layer_norm(x, 3, Tensor(np.ones(4, np.float32)))
