"""Pointwise losses (BCE, BCE with logits, L1, smooth L1, Huber, KL divergence): PyTorch parity for every
reduction, finite-difference gradients in float64, modules vs functionals, edge values and errors."""

from __future__ import annotations

import numpy as np
import pytest

import engine.functional as F
from engine import Tensor, nn
from engine.primitive import ShapeError
from tests.helpers import check_grads, compare_torch

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # only the PyTorch comparisons skip
    torch = TF = None

pytestmark = pytest.mark.filterwarnings("ignore:.*reduction.*mean.*divides")  # kl_div mean warns (as torch)
REDUCTIONS = ["none", "mean", "sum"]
SHAPE = (3, 4)


def _data(rng):
    x = rng.standard_normal(SHAPE)
    return {
        "prob": rng.uniform(0.05, 0.95, SHAPE), "target01": rng.uniform(0, 1, SHAPE), "x": x,
        "y": x + rng.standard_normal(SHAPE) * 1.5, "weight": rng.uniform(0.5, 2.0, (SHAPE[1],)),
        "logp": np.log(rng.dirichlet(np.ones(SHAPE[1]), SHAPE[0])), "p": rng.dirichlet(np.ones(SHAPE[1]), SHAPE[0]),
    }


# (name, ours(x, t, reduction), theirs(x, t, reduction), input key, target key)
CASES = [
    ("bce", lambda x, t, r: F.binary_cross_entropy(x, t, reduction=r),
     lambda x, t, r: TF.binary_cross_entropy(x, t, reduction=r), "prob", "target01"),
    ("bce_logits", lambda x, t, r: F.binary_cross_entropy_with_logits(x, t, reduction=r),
     lambda x, t, r: TF.binary_cross_entropy_with_logits(x, t, reduction=r), "x", "target01"),
    ("l1", lambda x, t, r: F.l1_loss(x, t, reduction=r), lambda x, t, r: TF.l1_loss(x, t, reduction=r), "x", "y"),
    ("smooth_l1", lambda x, t, r: F.smooth_l1_loss(x, t, reduction=r, beta=0.7),
     lambda x, t, r: TF.smooth_l1_loss(x, t, reduction=r, beta=0.7), "x", "y"),
    ("smooth_l1_beta0", lambda x, t, r: F.smooth_l1_loss(x, t, reduction=r, beta=0.0),
     lambda x, t, r: TF.smooth_l1_loss(x, t, reduction=r, beta=0.0), "x", "y"),
    ("huber", lambda x, t, r: F.huber_loss(x, t, reduction=r, delta=0.6),
     lambda x, t, r: TF.huber_loss(x, t, reduction=r, delta=0.6), "x", "y"),
    ("kl_div", lambda x, t, r: F.kl_div(x, t, reduction=r), lambda x, t, r: TF.kl_div(x, t, reduction=r),
     "logp", "p"),
    ("kl_div_log_target", lambda x, t, r: F.kl_div(x, t, reduction=r, log_target=True),
     lambda x, t, r: TF.kl_div(x, t, reduction=r, log_target=True), "logp", "logp"),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_against_torch(case, reduction, rng):
    if torch is None:
        pytest.skip("torch is not installed")
    _, ours, theirs, xk, tk = case
    d = _data(rng)
    target = d[tk] if tk != xk else d[tk] + 0.3  # log_target: a different log-distribution
    compare_torch(lambda x, t: ours(x, t, reduction), lambda x, t: theirs(x, t, reduction), [d[xk], target],
                  fwd_tol=1e-5, grad_tol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_finite_differences(case, rng):
    _, ours, _, xk, tk = case
    d = _data(rng)
    # gradients w.r.t. the target too where the loss is smooth in it (BCE's target enters linearly)
    check_grads(lambda x, t: ours(x, t, "sum"), [d[xk], d[tk] + 0.1], grad_mask=[True, case[0] != "kl_div"])


@pytest.mark.parametrize("r", REDUCTIONS)
def test_weights_and_pos_weight_against_torch(r, rng):
    if torch is None:
        pytest.skip("torch is not installed")
    d = _data(rng)
    w, pw, wfull = d["weight"], rng.uniform(0.5, 3.0, (SHAPE[1],)), rng.uniform(0.5, 2.0, SHAPE)
    compare_torch(lambda x, t, w, pw: F.binary_cross_entropy_with_logits(x, t, w, r, pos_weight=pw),
                  lambda x, t, w, pw: TF.binary_cross_entropy_with_logits(x, t, w, reduction=r, pos_weight=pw),
                  [d["x"], d["target01"], w, pw], grad_mask=[True, True, False, False], fwd_tol=1e-5)
    compare_torch(lambda x, t, w: F.binary_cross_entropy(x, t, w, r),
                  lambda x, t, w: TF.binary_cross_entropy(x, t, w, reduction=r),
                  [d["prob"], d["target01"], w], grad_mask=[True, True, False], fwd_tol=1e-5)
    compare_torch(lambda x, t, w: F.huber_loss(x, t, r, 0.5, w), lambda x, t, w: TF.huber_loss(x, t, r, 0.5, w),
                  [d["x"], d["y"], wfull], grad_mask=[True, True, False], fwd_tol=1e-5)
    compare_torch(lambda x, t, w: F.l1_loss(x, t, r, w), lambda x, t, w: TF.l1_loss(x, t, reduction=r, weight=w),
                  [d["x"], d["y"], wfull], grad_mask=[True, True, False], fwd_tol=1e-5)


def test_weighted_gradients_finite_differences(rng):
    d = _data(rng)
    w, pw = d["weight"], rng.uniform(0.5, 3.0, (SHAPE[1],))
    check_grads(lambda x, t: F.binary_cross_entropy_with_logits(x, t, Tensor(w), "mean", pos_weight=Tensor(pw)),
                [d["x"], d["target01"]])
    check_grads(lambda x: F.l1_loss(x, Tensor(d["y"]), "mean", Tensor(d["prob"])), [d["x"]])


def test_batchmean_is_sum_over_batch(rng):
    d = _data(rng)
    x, p = Tensor(d["logp"]), Tensor(d["p"])
    np.testing.assert_allclose(F.kl_div(x, p, "batchmean").item(), F.kl_div(x, p, "sum").item() / SHAPE[0], 1e-6)
    if torch is not None:
        compare_torch(lambda x, t: F.kl_div(x, t, "batchmean"), lambda x, t: TF.kl_div(x, t, reduction="batchmean"),
                      [d["logp"], d["p"]], fwd_tol=1e-5)


def test_edge_values_against_torch():
    """BCE at probabilities 0 and 1 (logs clamped to -100), logits at 0 and +-100, KL with zero targets."""
    if torch is None:
        pytest.skip("torch is not installed")
    prob = np.array([[0.0, 1.0, 0.5, 1e-30]])
    t = np.array([[1.0, 0.0, 0.5, 1.0]])
    got = F.binary_cross_entropy(Tensor(prob), Tensor(t), reduction="none").numpy()
    np.testing.assert_allclose(got, TF.binary_cross_entropy(torch.tensor(prob), torch.tensor(t), reduction="none"),
                               rtol=1e-6)
    logits = np.array([[0.0, 100.0, -100.0, 0.0]])
    compare_torch(lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction="sum"),
                  lambda x, t: TF.binary_cross_entropy_with_logits(x, t, reduction="sum"), [logits, t],
                  fwd_tol=1e-6, grad_tol=1e-6)
    p = np.array([[0.0, 0.25, 0.75, 0.0]])
    compare_torch(lambda x, t: F.kl_div(x, t, reduction="sum"), lambda x, t: TF.kl_div(x, t, reduction="sum"),
                  [np.log(np.full((1, 4), 0.25)), p], grad_mask=[True, False], fwd_tol=1e-6, grad_tol=1e-6)


@pytest.mark.parametrize("module,functional", [
    (nn.BCELoss(reduction="sum"), lambda x, t: F.binary_cross_entropy(x, t, reduction="sum")),
    (nn.BCEWithLogitsLoss(pos_weight=Tensor(np.full(4, 2.0, np.float32))),
     lambda x, t: F.binary_cross_entropy_with_logits(x, t, pos_weight=np.full(4, 2.0))),
    (nn.L1Loss(), F.l1_loss), (nn.SmoothL1Loss(beta=0.5), lambda x, t: F.smooth_l1_loss(x, t, beta=0.5)),
    (nn.HuberLoss(delta=2.0), lambda x, t: F.huber_loss(x, t, delta=2.0)),
    (nn.KLDivLoss(reduction="batchmean", log_target=True), lambda x, t: F.kl_div(x, t, "batchmean", True)),
])
def test_modules_call_their_functional(module, functional, rng):
    x = Tensor(rng.uniform(0.1, 0.9, SHAPE).astype(np.float32))
    t = Tensor(rng.uniform(0.1, 0.9, SHAPE).astype(np.float32))
    np.testing.assert_array_equal(module(x, t).numpy(), functional(x, t).numpy())


def test_kl_div_mean_warns_as_torch():
    x = Tensor(np.full((2, 3), -1.0, np.float32))
    with pytest.warns(UserWarning, match="kl_div: reduction 'mean' divides the total loss by both"):
        F.kl_div(x, x.exp(), "mean")


def test_bad_inputs_name_the_loss():
    x = Tensor(np.full((2, 3), 0.5, np.float32))
    with pytest.raises(ShapeError, match="l1_loss: target must have the input's shape"):
        F.l1_loss(x, np.zeros((3, 2), np.float32))
    with pytest.raises(ShapeError, match="huber_loss: weight must have the input's shape"):
        F.huber_loss(x, x, weight=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="binary_cross_entropy: all elements of input must be between 0 and 1"):
        F.binary_cross_entropy(x * 3.0, x)
    with pytest.raises(ValueError, match="kl_div: reduction must be one of"):
        F.kl_div(x, x, reduction="batch")
    with pytest.raises(ValueError, match="KLDivLoss: reduction must be one of"):
        nn.KLDivLoss(reduction="avg")
    with pytest.raises(ValueError, match="smooth_l1_loss: beta must be non-negative"):
        F.smooth_l1_loss(x, x, beta=-1.0)
    with pytest.raises(ShapeError, match="pos_weight must broadcast"):
        F.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones(4, np.float32))
