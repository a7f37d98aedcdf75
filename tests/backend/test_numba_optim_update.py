"""The numba optimizer_update kernel (fused SGD) against the shared numpy update eager optimizer.step() runs:
bit for bit, over three steps (the first one sets the momentum buffer), for every SGD option, both dtypes, and
sizes on both sides of the serial threshold; called plainly and as a specialized call."""

from __future__ import annotations

import numpy as np
import pytest

from backends.numba._layout import SERIAL_BELOW
from engine.backend import specialize
from engine.optim import SGD, Adam
from engine.optim.update import update_kernel

numba_be = pytest.importorskip("backends.numba").backend
OPTIONS = [dict(momentum=0.9), dict(momentum=0.9, nesterov=True, weight_decay=1e-2), dict(momentum=0.5, dampening=0.3),
           dict(momentum=0.0, weight_decay=0.1), dict(momentum=0.9, maximize=True)]


def _arrays(rng, n, dtype, keys):
    p = rng.standard_normal(n).astype(dtype)
    return [p] + [np.zeros(n, dtype) for _ in keys] + [np.zeros((), np.float64)]


@pytest.mark.parametrize("opts", OPTIONS, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [37, SERIAL_BELOW + 5])
@pytest.mark.parametrize("specialized", [False, True])
def test_fused_sgd_equals_the_shared_update_bit_for_bit(opts, dtype, n, specialized):
    rng = np.random.default_rng(0)
    group = {**dict(lr=0.05, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False), **opts}
    keys = ("momentum_buffer",) if group["momentum"] else ()
    hyper = tuple(sorted((k, v) for k, v in group.items() if k != "lr"))
    ref, got = _arrays(rng, n, dtype, keys), None
    got = [a.copy() for a in ref]
    lr = np.asarray(group["lr"], np.float64)
    attrs = dict(rule=SGD, hyper=hyper, keys=keys)
    kernel = numba_be.kernel("optimizer_update")

    def args(arrays, g):
        p, *state, step = arrays
        return [p, g, *state, lr, step], tuple(arrays)

    ins, out = args(got, np.empty(n, dtype))
    call = specialize(kernel, ins, out, attrs) if specialized else None
    for _ in range(3):
        g = rng.standard_normal(n).astype(dtype)
        r_ins, r_out = args(ref, g)
        update_kernel(*r_ins, out=r_out, **attrs)
        ins[1][...] = g
        if call is not None:
            call()
        else:
            kernel(*ins, out=out, **attrs)
        lr[...] = lr * 0.5  # a scheduler: read at every call
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    assert float(got[-1]) == 3.0


def test_other_optimizers_fall_back_to_the_shared_update():
    rng = np.random.default_rng(1)
    p, g = rng.standard_normal(10).astype(np.float32), rng.standard_normal(10).astype(np.float32)
    group = dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
                 decoupled_weight_decay=False)
    hyper, keys = tuple(sorted(group.items())), ("exp_avg", "exp_avg_sq")
    arrays = [[p.copy(), np.zeros(10, np.float32), np.zeros(10, np.float32), np.zeros((), np.float64)]
              for _ in range(2)]
    lr = np.asarray(1e-3)
    for arr, k in zip(arrays, (numba_be.kernel("optimizer_update"), update_kernel)):
        k(arr[0], g, *arr[1:3], lr, arr[3], out=tuple(arr), rule=Adam, hyper=hyper, keys=keys)
    for a, b in zip(*arrays):
        np.testing.assert_array_equal(a, b)


def test_fused_sgd_into_separate_output_arrays_leaves_its_inputs():
    """An output the executor writes back later (a later node still reads the parameter): the update goes to the
    output arrays, the inputs keep their values."""
    rng = np.random.default_rng(2)
    n = 50
    hyper = tuple(sorted(dict(momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False).items()))
    keys = ("momentum_buffer",)
    p, buf, step = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32), np.ones(())
    g, lr = rng.standard_normal(n).astype(np.float32), np.asarray(0.1)
    ref = [p.copy(), buf.copy(), step.copy()]
    update_kernel(ref[0], g, ref[1], lr, ref[2], out=tuple(ref), rule=SGD, hyper=hyper, keys=keys)
    before = [p.copy(), buf.copy(), step.copy()]
    out = (np.empty_like(p), np.empty_like(buf), np.empty(()))
    numba_be.kernel("optimizer_update")(p, g, buf, lr, step, out=out, rule=SGD, hyper=hyper, keys=keys)
    for a, b in zip(out, ref):
        np.testing.assert_array_equal(a, b)
    for a, b in zip((p, buf, step), before):
        np.testing.assert_array_equal(a, b)
