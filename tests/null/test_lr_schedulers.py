"""LambdaLR, LinearLR, OneCycleLR, CosineAnnealingWarmRestarts, SequentialLR: lr (and momentum) sequences vs
torch.optim.lr_scheduler, the formulas themselves, state_dict round trips and argument errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import nn, optim
from engine.optim import lr_scheduler

try:
    import torch
except ImportError:  # only the PyTorch comparisons skip
    torch = None


class Warmup:
    """A callable object: LambdaLR's state_dict keeps its __dict__ (functions and lambdas are not saved)."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, epoch: int) -> float:
        return min(1.0, (epoch + 1) / self.n)


def _ours(kind: str = "sgd", groups: int = 1):
    params = [{"params": [nn.Parameter(np.zeros(1, np.float32))], "lr": 0.1 * (i + 1)} for i in range(groups)]
    if kind == "adam":
        return optim.Adam(params, lr=0.1)
    return optim.SGD(params, lr=0.1, momentum=0.9)


def _theirs(kind: str = "sgd", groups: int = 1):
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1 * (i + 1)} for i in range(groups)]
    if kind == "adam":
        return torch.optim.Adam(params, lr=0.1)
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)



# (name, make(module, optimizer) -> scheduler, optimizer kind, param groups, steps)
CASES = [
    ("LambdaLR", lambda m, o: m.LambdaLR(o, lambda e: 0.95 ** e), "sgd", 1, 12),
    ("LambdaLR-per-group", lambda m, o: m.LambdaLR(o, [lambda e: 1 / (e + 1), Warmup(4)]), "sgd", 2, 8),
    ("LinearLR", lambda m, o: m.LinearLR(o, start_factor=0.25, total_iters=4), "sgd", 1, 8),
    ("LinearLR-decay", lambda m, o: m.LinearLR(o, 1.0, 0.1, total_iters=5), "sgd", 2, 8),
    ("OneCycleLR", lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=20), "sgd", 1, 19),
    ("OneCycleLR-linear-3phase", lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 2.0], epochs=3, steps_per_epoch=5,
                                                           anneal_strategy="linear", three_phase=True,
                                                           pct_start=0.25), "sgd", 2, 15),
    ("OneCycleLR-adam", lambda m, o: m.OneCycleLR(o, max_lr=0.01, total_steps=10, pct_start=0.5), "adam", 1, 10),
    ("WarmRestarts", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=3), "sgd", 1, 10),
    ("WarmRestarts-mult", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2, eta_min=0.01), "sgd", 1,
     16),
    ("SequentialLR", lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, 0.1, total_iters=3), m.CosineAnnealingLR(o, T_max=5), m.StepLR(o, 2, 0.5)], [3, 6]),
     "sgd", 2, 12),
    ("SequentialLR-exp", lambda m, o: m.SequentialLR(
        o, [m.ExponentialLR(o, 0.9), m.MultiStepLR(o, [1, 3], 0.5)], [4]), "sgd", 1, 10),
]


def _momenta(opt) -> list[float]:
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_sequence_matches_torch(case):
    if torch is None:
        pytest.skip("torch is not installed")
    _, make, kind, groups, steps = case
    eo, to = _ours(kind, groups), _theirs(kind, groups)
    es, ts = make(lr_scheduler, eo), make(torch.optim.lr_scheduler, to)
    for step in range(steps + 1):
        assert es.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12, abs=1e-15), f"step {step}"
        assert [g["lr"] for g in eo.param_groups] == es.get_last_lr()
        assert _momenta(eo) == pytest.approx(_momenta(to), rel=1e-12), f"momentum at step {step}"
        if step < steps:
            eo.step()
            to.step()
            es.step()
            ts.step()


def test_formulas_without_torch():
    opt = _ours()
    sched = lr_scheduler.LambdaLR(opt, lambda e: 1.0 / (e + 1))
    for e in range(1, 4):
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / (e + 1))
    opt = _ours()
    sched = lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=2)
    lrs = [opt.param_groups[0]["lr"]] + [(sched.step(), opt.param_groups[0]["lr"])[1] for _ in range(3)]
    assert lrs == pytest.approx([0.05, 0.075, 0.1, 0.1])
    opt = _ours()
    sched = lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=4)
    lrs = [opt.param_groups[0]["lr"]] + [(sched.step(), opt.param_groups[0]["lr"])[1] for _ in range(5)]
    cos = [0.05 * (1 + math.cos(math.pi * t / 4)) for t in (0, 1, 2, 3, 0, 1)]
    assert lrs == pytest.approx(cos)
    sched.step(2.5)  # fractional epochs, as in the per-batch use
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi * 2.5 / 4)))
    opt = _ours()
    sched = lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0 / 25) and opt.param_groups[0]["momentum"] == 0.95
    for _ in range(2):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0) and opt.param_groups[0]["momentum"] == 0.85
    for _ in range(7):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0 / 25 / 1e4)
    with pytest.raises(ValueError, match="OneCycleLR: tried to step 11 times; the schedule has total_steps=10"):
        sched.step()
        sched.step()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_state_dict_resumes(case):
    _, make, kind, groups, steps = case
    ref_opt = _ours(kind, groups)
    ref = make(lr_scheduler, ref_opt)
    for _ in range(steps):
        ref.step()
    opt = _ours(kind, groups)
    first = make(lr_scheduler, opt)
    for _ in range(steps // 2):
        first.step()
    saved_sched, saved_opt = first.state_dict(), opt.state_dict()
    opt2 = _ours(kind, groups)
    second = make(lr_scheduler, opt2)
    opt2.load_state_dict(saved_opt)
    second.load_state_dict(saved_sched)
    for _ in range(steps - steps // 2):
        second.step()
    assert second.get_last_lr() == ref.get_last_lr()
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in ref_opt.param_groups]


def test_lambda_state_dict_keeps_callable_objects_only():
    opt = _ours(groups=2)
    warm = Warmup(4)
    sched = lr_scheduler.LambdaLR(opt, [lambda e: 1.0, warm])
    state = sched.state_dict()
    assert state["lr_lambdas"] == [None, {"n": 4}]
    warm.n = 9
    sched.load_state_dict(state)
    assert warm.n == 4 and "lr_lambdas" in state


@pytest.mark.parametrize("make,match", [
    (lambda o: lr_scheduler.LambdaLR(o, [lambda e: 1.0] * 2), "LambdaLR: expected 1 lr_lambdas"),
    (lambda o: lr_scheduler.LinearLR(o, start_factor=0.0), r"LinearLR: start_factor must be in \(0, 1\]"),
    (lambda o: lr_scheduler.LinearLR(o, end_factor=1.5), r"LinearLR: end_factor must be in \[0, 1\]"),
    (lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=0), "T_0 must be a positive integer"),
    (lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=0), "T_mult must be an integer >= 1"),
    (lambda o: lr_scheduler.OneCycleLR(o, 1.0), "OneCycleLR: give total_steps, or epochs and steps_per_epoch"),
    (lambda o: lr_scheduler.OneCycleLR(o, 1.0, total_steps=0), "total_steps must be a positive integer"),
    (lambda o: lr_scheduler.OneCycleLR(o, 1.0, 10, pct_start=1.5), r"pct_start must be a float in \[0, 1\]"),
    (lambda o: lr_scheduler.OneCycleLR(o, 1.0, 10, anneal_strategy="exp"), "anneal_strategy must be"),
    (lambda o: lr_scheduler.SequentialLR(o, [lr_scheduler.StepLR(o, 2)], [1]), "one milestone fewer"),
    (lambda o: lr_scheduler.SequentialLR(o, [], []), "at least one scheduler"),
    (lambda o: lr_scheduler.SequentialLR(o, [lr_scheduler.StepLR(_ours(), 2)], []), "belong to the given optimizer"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make(_ours())


def test_one_cycle_needs_momentum():
    opt = optim.Adagrad([nn.Parameter(np.zeros(1, np.float32))], lr=0.1)
    with pytest.raises(ValueError, match="OneCycleLR: cycle_momentum needs an optimizer with momentum or betas"):
        lr_scheduler.OneCycleLR(opt, 1.0, 10)
    lr_scheduler.OneCycleLR(opt, 1.0, 10, cycle_momentum=False)
