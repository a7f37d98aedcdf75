"""engine.init: torch.nn.init's gains, fans and distributions, all drawn from the seedable generator."""

from __future__ import annotations

import math

import numpy as np
import pytest

import engine
from engine import Tensor, init, nn
from tests.helpers import import_torch

torch = import_torch()  # without PyTorch only the comparisons with it skip


def _empty(*shape: int) -> Tensor:
    return Tensor(np.zeros(shape, np.float32))


@pytest.mark.parametrize("nonlinearity,param", [("linear", None), ("conv2d", None), ("sigmoid", None),
                                                ("tanh", None), ("relu", None), ("leaky_relu", None),
                                                ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)), ("selu", None)])
def test_calculate_gain_matches_torch(nonlinearity: str, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(torch.nn.init.calculate_gain(nonlinearity, param))


@pytest.mark.parametrize("shape", [(4, 3), (16, 3, 5, 5), (8, 2, 7), (5, 1, 1, 1)])
def test_fans_match_torch(shape):
    assert init.fan_in_and_fan_out(_empty(*shape)) == torch.nn.init._calculate_fan_in_and_fan_out(
        torch.empty(shape))


def test_errors():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(_empty(5))
    with pytest.raises(ValueError, match="mode 'fan_avg' not supported"):
        init.kaiming_normal_(_empty(4, 4), mode="fan_avg")
    with pytest.raises(ValueError, match="unsupported nonlinearity 'gelu'"):
        init.calculate_gain("gelu")


# (fill function, kwargs, expected mean, expected std, bound or None) for a (256, 64, 3, 3) weight
FAN_IN, FAN_OUT = 64 * 9, 256 * 9
DIST_CASES = [
    (init.uniform_, dict(a=-0.5, b=1.5), 0.5, 2 / math.sqrt(12), (-0.5, 1.5)),
    (init.normal_, dict(mean=0.3, std=0.2), 0.3, 0.2, None),
    (init.xavier_uniform_, dict(gain=2.0), 0.0, 2.0 * math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
    (init.xavier_normal_, dict(), 0.0, math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
    (init.kaiming_uniform_, dict(nonlinearity="relu"), 0.0, math.sqrt(2 / FAN_IN), None),
    (init.kaiming_uniform_, dict(a=math.sqrt(5)), 0.0, 1 / math.sqrt(3 * FAN_IN), (-1 / 24, 1 / 24)),
    (init.kaiming_normal_, dict(mode="fan_out", nonlinearity="relu"), 0.0, math.sqrt(2 / FAN_OUT), None),
    (init.kaiming_normal_, dict(a=0.1, nonlinearity="leaky_relu"), 0.0, math.sqrt(2 / 1.01 / FAN_IN), None),
]


@pytest.mark.parametrize("fn,kwargs,mean,std,bounds", DIST_CASES, ids=[f"{c[0].__name__}-{i}"
                                                                       for i, c in enumerate(DIST_CASES)])
def test_distributions(fn, kwargs, mean, std, bounds):
    w = _empty(256, 64, 3, 3)
    assert fn(w, **kwargs) is w
    assert w.data.dtype == np.float32
    assert abs(w.data.mean() - mean) < 0.02 * max(std, abs(mean)) + 3 * std / math.sqrt(w.numel())
    assert w.data.std() == pytest.approx(std, rel=0.02)
    # torch draws from the same distribution: compare its empirical std too
    tw = getattr(torch.nn.init, fn.__name__)(torch.empty(w.shape), **kwargs)
    assert float(tw.std()) == pytest.approx(std, rel=0.02)
    if bounds is not None:
        assert bounds[0] <= w.data.min() and w.data.max() <= bounds[1]


def test_trunc_normal_constant_ones_zeros():
    w = init.trunc_normal_(_empty(200, 100), mean=0.5, std=1.0, a=-0.5, b=1.0)
    assert w.data.min() >= -0.5 and w.data.max() <= 1.0
    tw = torch.nn.init.trunc_normal_(torch.empty(200, 100), mean=0.5, std=1.0, a=-0.5, b=1.0)
    assert w.data.mean() == pytest.approx(float(tw.mean()), abs=0.02)
    assert w.data.std() == pytest.approx(float(tw.std()), rel=0.03)
    assert np.all(init.constant_(_empty(3), 2.5).data == 2.5)
    assert np.all(init.ones_(_empty(3)).data == 1) and np.all(init.zeros_(Tensor(np.ones(3))).data == 0)


def test_seeded_and_reproducible():
    engine.manual_seed(123)
    a = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 4))
    engine.manual_seed(123)
    b = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 4))
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)
    engine.manual_seed(124)
    c = nn.Conv2d(3, 8, 3)
    assert not np.array_equal(c.weight.data, a[0].weight.data)
    state = engine.get_rng_state()
    x = init.normal_(_empty(5)).data.copy()
    engine.set_rng_state(state)
    np.testing.assert_array_equal(init.normal_(_empty(5)).data, x)


@pytest.mark.parametrize("make,fan_in", [(lambda: nn.Conv2d(6, 32, 5), 6 * 25), (lambda: nn.Conv1d(4, 64, 3), 12),
                                         (lambda: nn.Conv2d(8, 64, 3, groups=4), 2 * 9),
                                         (lambda: nn.Linear(50, 300), 50)])
def test_default_layer_init_is_torchs(make, fan_in):
    # kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight, same bound for the bias
    layer = make()
    bound = 1 / math.sqrt(fan_in)
    for p in (layer.weight, layer.bias):
        assert p.dtype == np.float32
        assert -bound <= p.data.min() and p.data.max() <= bound
        assert p.data.max() > 0.8 * bound and p.data.min() < -0.8 * bound
    assert layer.weight.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_batchnorm_default_init():
    bn = nn.BatchNorm2d(5)
    for name, value in (("weight", 1), ("bias", 0), ("running_mean", 0), ("running_var", 1)):
        np.testing.assert_array_equal(getattr(bn, name).data, value)
    assert bn.num_batches_tracked.dtype == np.int64 and bn.num_batches_tracked.shape == ()
