"""Optimizers and lr schedulers vs torch.optim 2.13: identical problems, identical starts, trajectories compared."""

from __future__ import annotations

import math

import numpy as np
import pytest

import engine
from engine import Tensor, nn, optim
from engine.optim import lr_scheduler
from tests.helpers import import_torch, max_rel_err

torch = import_torch()  # without PyTorch only the comparisons with it skip

STEPS = 20
_rng = np.random.default_rng(7)
A = _rng.standard_normal((8, 5)).astype(np.float32)  # least squares: 0.5 ||A w - y||^2 + 0.5 ||b - c||^2
Y = _rng.standard_normal((8, 3)).astype(np.float32)
W0 = _rng.standard_normal((5, 3)).astype(np.float32)
B0 = _rng.standard_normal((3,)).astype(np.float32)
C = _rng.standard_normal((3,)).astype(np.float32)


def _grads(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # computed once in float32 numpy and fed to both frameworks, so only the update rules are compared
    return (A.T @ (A @ w - Y)).astype(np.float32), (b - C).astype(np.float32)


def _trajectories(ours_cls, theirs_cls, kwargs: dict, steps: int = STEPS) -> tuple[list, list]:
    ew, eb = nn.Parameter(W0.copy()), nn.Parameter(B0.copy())
    tw, tb = torch.nn.Parameter(torch.tensor(W0)), torch.nn.Parameter(torch.tensor(B0))
    eo = ours_cls([ew, eb], **kwargs)
    to = theirs_cls([tw, tb], **kwargs)
    ours, theirs = [], []
    for _ in range(steps):
        gw, gb = _grads(ew.data, eb.data)
        ew.grad, eb.grad = Tensor(gw), Tensor(gb)
        eo.step()
        tgw, tgb = _grads(tw.detach().numpy(), tb.detach().numpy())
        tw.grad, tb.grad = torch.tensor(tgw), torch.tensor(tgb)
        to.step()
        ours.append(np.concatenate([ew.data.ravel(), eb.data.ravel()]))
        theirs.append(np.concatenate([tw.detach().numpy().ravel(), tb.detach().numpy().ravel()]))
    return ours, theirs


CASES = [
    ("SGD", dict(lr=0.01)),
    ("SGD", dict(lr=0.01, momentum=0.9)),
    ("SGD", dict(lr=0.01, momentum=0.9, dampening=0.3, weight_decay=0.05)),
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.01, momentum=0.5, maximize=True)),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, amsgrad=True)),
    ("AdamW", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, weight_decay=0.3, betas=(0.85, 0.995))),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.1, eps=1e-8)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.05)),
    ("RMSprop", dict(lr=0.01, momentum=0.8)),
    ("RMSprop", dict(lr=0.005, centered=True)),
    ("RMSprop", dict(lr=0.005, centered=True, momentum=0.9, weight_decay=0.01)),
]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_trajectory_matches_torch(name: str, kwargs: dict):
    ours, theirs = _trajectories(getattr(optim, name), getattr(torch.optim, name), kwargs)
    assert not np.allclose(ours[-1], ours[0]), "the parameters should move"
    for step, (o, t) in enumerate(zip(ours, theirs)):
        err = max_rel_err(o, t)
        assert err <= 1e-4, f"{name}{kwargs}: step {step + 1}: max relative error {err:.3g}"


def test_state_dict_layout_like_torch():
    ew, eb = nn.Parameter(W0.copy()), nn.Parameter(B0.copy())
    tw, tb = torch.nn.Parameter(torch.tensor(W0)), torch.nn.Parameter(torch.tensor(B0))
    eo, to = optim.Adam([ew, eb], lr=0.1), torch.optim.Adam([tw, tb], lr=0.1)
    for p, g in ((ew, W0), (eb, B0)):
        p.grad = Tensor(g)
    tw.grad, tb.grad = torch.tensor(W0), torch.tensor(B0)
    eo.step()
    to.step()
    es, ts = eo.state_dict(), to.state_dict()
    assert list(es["state"]) == list(ts["state"]) == [0, 1]
    assert set(es["state"][0]) == set(ts["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert es["param_groups"][0]["params"] == ts["param_groups"][0]["params"]
    assert set(es["param_groups"][0]) <= set(ts["param_groups"][0])
    np.testing.assert_allclose(es["state"][0]["exp_avg"], ts["state"][0]["exp_avg"].numpy(), rtol=1e-6)


@pytest.mark.parametrize("name,kwargs", [("SGD", dict(lr=0.01, momentum=0.9, nesterov=True)),
                                         ("Adam", dict(lr=0.05, amsgrad=True)), ("Adagrad", dict(lr=0.1)),
                                         ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5))])
def test_state_dict_resume_is_exact(name: str, kwargs: dict):
    def run(params, opt, steps):
        for _ in range(steps):
            gw, gb = _grads(params[0].data, params[1].data)
            params[0].grad, params[1].grad = Tensor(gw), Tensor(gb)
            opt.step()

    ref = [nn.Parameter(W0.copy()), nn.Parameter(B0.copy())]
    ref_opt = getattr(optim, name)(ref, **kwargs)
    run(ref, ref_opt, 6)
    first = [nn.Parameter(W0.copy()), nn.Parameter(B0.copy())]
    first_opt = getattr(optim, name)(first, **kwargs)
    run(first, first_opt, 3)
    saved, saved_params = first_opt.state_dict(), [p.data.copy() for p in first]
    run(first, first_opt, 1)  # state_dict() is a copy: later steps must not change it
    second = [nn.Parameter(a) for a in saved_params]
    resumed = getattr(optim, name)(second, lr=123.0)
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr"] == kwargs["lr"]
    run(second, resumed, 3)
    for p, q in zip(second, ref):
        np.testing.assert_array_equal(p.data, q.data)


def test_load_state_dict_errors_leave_optimizer_unchanged():
    p, q = nn.Parameter(W0.copy()), nn.Parameter(B0.copy())
    opt = optim.SGD([p, q], lr=0.1, momentum=0.9)
    p.grad, q.grad = Tensor(W0), Tensor(B0)
    opt.step()
    good = opt.state_dict()
    other = optim.SGD([nn.Parameter(W0.copy())], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="parameter group 0 has 2 params"):
        other.load_state_dict(good)
    bad = opt.state_dict()
    bad["state"][1]["momentum_buffer"] = np.zeros((4,), np.float32)
    bad["param_groups"][0]["lr"] = 5.0
    with pytest.raises(ValueError, match=r"shape \(4,\).*shape \(3,\)"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["lr"] == 0.1
    np.testing.assert_array_equal(opt.state[q]["momentum_buffer"], good["state"][1]["momentum_buffer"])


def test_param_groups_and_zero_grad():
    a, b = nn.Parameter(np.ones(2, np.float32)), nn.Parameter(np.ones(3, np.float32))
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    a.grad, b.grad = Tensor(np.ones(2, np.float32)), Tensor(np.ones(3, np.float32))
    opt.step()
    np.testing.assert_allclose(a.data, 0.9)
    np.testing.assert_allclose(b.data, 0.5)
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([a], lr=0.1, nesterov=True)


def test_step_skips_params_without_grad_and_runs_closure():
    a = nn.Parameter(np.ones(2, np.float32))
    b = nn.Parameter(np.ones(2, np.float32))
    opt = optim.Adam([a, b], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (a * a).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss.data) == 2.0
    assert np.all(a.data < 1.0) and np.all(b.data == 1.0) and b not in opt.state


def test_end_to_end_training_reduces_loss():
    engine.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = optim.Adam(model.parameters(), lr=0.02)
    x, y = Tensor(A), Tensor(Y)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        d = model(x) - y
        loss = (d * d).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
    assert losses[-1] < 0.1 * losses[0]


# --- schedulers ------------------------------------------------------------------------------------------------
def _pair(lr: float = 0.1):
    ours = optim.SGD([nn.Parameter(np.zeros(1, np.float32))], lr=lr, momentum=0.9)
    theirs = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
    return ours, theirs


SCHEDULES = [
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("StepLR", dict(step_size=1, gamma=0.9)),
    ("MultiStepLR", dict(milestones=[3, 10, 10, 25], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.95)),
    ("CosineAnnealingLR", dict(T_max=10)),
    ("CosineAnnealingLR", dict(T_max=12, eta_min=0.001)),
]


@pytest.mark.parametrize("name,kwargs", SCHEDULES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULES)])
def test_scheduler_lr_sequence_matches_torch(name: str, kwargs: dict):
    eo, to = _pair()
    es = getattr(lr_scheduler, name)(eo, **kwargs)
    ts = getattr(torch.optim.lr_scheduler, name)(to, **kwargs)
    assert es.get_last_lr() == ts.get_last_lr()
    for step in range(30):
        eo.step()
        to.step()
        es.step()
        ts.step()
        ours, theirs = es.get_last_lr(), ts.get_last_lr()
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15), f"{name}: epoch {step + 1}"
        assert eo.param_groups[0]["lr"] == ours[0]


def test_reduce_lr_on_plateau_matches_torch():
    metrics = [1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.81, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.69999, 0.7, 0.7, 0.7, 0.7, 0.7]
    for kwargs in (dict(patience=2), dict(patience=1, cooldown=2, factor=0.5, min_lr=0.004),
                   dict(mode="max", patience=0, threshold=0.1, threshold_mode="abs")):
        eo, to = _pair()
        es = lr_scheduler.ReduceLROnPlateau(eo, **kwargs)
        ts = torch.optim.lr_scheduler.ReduceLROnPlateau(to, **kwargs)
        for m in metrics:
            es.step(m)
            ts.step(m)
            assert es.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12), kwargs


def test_reduce_lr_on_plateau_reduces_by_factor_after_stall():
    opt, _ = _pair(lr=0.1)
    sched = lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=3)
    for m in (5.0, 4.0, 3.0):
        sched.step(m)
    assert opt.param_groups[0]["lr"] == 0.1
    for _ in range(3):  # three bad epochs == patience: not yet
        sched.step(3.0)
    assert opt.param_groups[0]["lr"] == 0.1
    sched.step(3.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


@pytest.mark.parametrize("make", [lambda o: lr_scheduler.StepLR(o, 4, 0.5),
                                  lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=9, eta_min=0.01),
                                  lambda o: lr_scheduler.ReduceLROnPlateau(o, patience=1)])
def test_scheduler_state_dict_resumes(make):
    metrics = [3.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]

    def advance(sched, ms):
        for m in ms:
            sched.optimizer.step()
            sched.step(m) if isinstance(sched, lr_scheduler.ReduceLROnPlateau) else sched.step()

    ref_opt, _ = _pair()
    ref = make(ref_opt)
    advance(ref, metrics)
    opt, _ = _pair()
    first = make(opt)
    advance(first, metrics[:5])
    saved_sched, saved_opt = first.state_dict(), opt.state_dict()
    opt2, _ = _pair()
    second = make(opt2)
    opt2.load_state_dict(saved_opt)
    second.load_state_dict(saved_sched)
    advance(second, metrics[5:])
    assert second.get_last_lr() == ref.get_last_lr()
    assert opt2.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"]
    assert not math.isnan(second.get_last_lr()[0])


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad])
@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -1e-3])
def test_optimizers_reject_nan_inf_and_negative_learning_rates(cls, lr):
    p = engine.Tensor(np.zeros(2, np.float32), requires_grad=True)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        cls([p], lr=lr)
    with pytest.raises(ValueError, match="Invalid learning rate"):  # a parameter group's own lr too
        optim.SGD([{"params": [p], "lr": lr}], lr=0.1)
