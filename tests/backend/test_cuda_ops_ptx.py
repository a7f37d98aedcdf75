"""The simulator runs kernels as Python and type-checks nothing, so every production configuration of the cuda
elementwise/reduction/pooling/data-movement/random/optimizer kernels is also compiled to PTX here, for sm_80 and
sm_90, by numba's real CUDA compiler (NVVM; no GPU needed). This process does not run the simulator, so the
kernels compile with their GPU block sizes. Typing errors (a float64/uint64 mix, an unsupported call, a
branch returning two types) fail here by kernel name."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda, types

from backends.cuda import elementwise, loss, norm, optim, pool, random, reduce, shape, softmax
from backends.cuda.launch import BLOCK

i64, f64, u64, b1 = types.int64, types.float64, types.uint64, types.boolean


def _np(t):
    return np.float32 if t == types.float32 else np.float64


def arr(dtype, ndim, layout="A"):
    return types.Array(dtype, ndim, layout)


def _cases():
    out = []
    for dt in (types.float32, types.float64):
        a4, c1, a3 = arr(dt, 4), arr(dt, 1, "C"), arr(dt, 3)
        out += [
            (elementwise.copy4, (a4, arr(types.bool_, 4))),
            (elementwise.copy4, (arr(types.int64, 4), a4)),
            (elementwise.MAPS[_np(dt)][0], (i64, a4, a4, dt, dt, i64)),
            (elementwise.MAPS[_np(dt)][1], (i64, a4, a4, a4, dt, dt, i64)),
            (elementwise.compare2, (i64, a4, a4, arr(types.bool_, 4))),
            (elementwise.where3, (arr(types.bool_, 4), a4, a4, a4)),
            (elementwise.fill1, (c1, dt)),
            (reduce._REDUCE3["f"], (i64, a3, c1, f64, i64)),
            (reduce._ARG3["f"], (i64, a3, arr(i64, 1, "C"))),
            (softmax.softmax3, (a3, a3, b1)),
            (norm.norm3, (a3, c1, c1, a3, c1, c1, f64, b1)),
            (norm.norm3_grad, (a3, a3, c1, c1, c1, a3, c1, c1, f64, b1)),
            (norm._bn_infer, (a3, c1, c1, c1, c1, a3, f64)),
            (pool.max_pool4, (a4, a4, *(i64,) * 8)),
            (pool.max_pool4_grad, (a4, a4, a4, *(i64,) * 8)),
            (pool.avg_pool4, (a4, a4, *(i64,) * 6, b1, i64)),
            (pool.avg_pool4_grad, (a4, a4, *(i64,) * 6, b1, i64)),
            (pool.adaptive_pool4, (a4, a4, b1)),
            (pool.adaptive_pool4_grad, (a4, a4, a4, b1)),
            (shape.gather1, (c1, arr(i64, 1, "C"), c1)),
            (shape.scatter_add1, (c1, *(arr(i64, 1, "C"),) * 3, c1)),
            (random.bernoulli1, (u64, u64, u64, u64, f64, c1)),
            (optim.sgd1, (c1, c1, c1, arr(f64, 1, "C"), arr(f64, 1, "C"), c1, c1, f64, f64, f64, b1, b1)),
            (optim.adam1, (c1, c1, c1, c1, c1, arr(f64, 1, "C"), arr(f64, 1, "C"), c1, c1, c1, c1, f64, f64, f64,
                           f64, b1, b1, b1)),
            (optim.rmsprop1, (c1, c1, c1, c1, c1, arr(f64, 1, "C"), arr(f64, 1, "C"), c1, c1, c1, c1, f64, f64,
                              f64, f64, b1, b1)),
            (optim.adagrad1, (c1, c1, c1, arr(f64, 1, "C"), arr(f64, 1, "C"), c1, c1, f64, f64, f64, b1)),
            (loss.coef3, (arr(i64, 2, "C"), c1, arr(dt, 3, "C"), i64, f64, f64)),
            (loss.denom1, (arr(i64, 2, "C"), c1, c1, i64)),
        ]
    out += [
        (reduce._REDUCE3["i"], (i64, arr(i64, 3), arr(i64, 1, "C"), i64, i64)),
        (reduce._ARG3["i"], (i64, arr(i64, 3), arr(i64, 1, "C"))),
        (random.bernoulli1, (u64, u64, u64, u64, f64, arr(types.bool_, 1, "C"))),
        (optim.advance_step, (arr(f64, 1, "C"), arr(f64, 1, "C"))),
        (elementwise.fill1, (arr(i64, 1, "C"), i64)),
        (elementwise.MAPS[np.float64][0], (i64, arr(i64, 4), arr(i64, 4), f64, f64, i64)),  # neg/abs of ints
        (elementwise.MAPS[np.float64][1], (i64, arr(i64, 4), arr(types.float32, 4), arr(f64, 4), f64, f64, i64)),
    ]
    return [pytest.param(k, sig, id=f"{k.py_func.__name__}-{'-'.join(map(str, sig))}") for k, sig in out]


@pytest.fixture(scope="module", autouse=True)
def _no_driver_needed():
    """A kernel that calls a device function asks the current GPU for its compute capability; without a driver,
    answer for the target being compiled (the device functions' IR does not depend on it)."""
    import numba.cuda.dispatcher as dispatcher

    class _Target:
        compute_capability = (8, 0)

    saved = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: _Target
    yield
    dispatcher.get_current_device = saved


@pytest.mark.parametrize("kernel,sig", _cases())
def test_kernel_compiles_to_ptx(kernel, sig):
    for cc in ((8, 0), (9, 0)):
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
        assert f".target sm_{cc[0]}{cc[1]}" in ptx, f"{kernel.py_func.__name__}: no sm_{cc[0]}{cc[1]} PTX"


def test_the_compiled_reductions_use_the_gpu_block_size():
    assert BLOCK == 256  # this process is not the simulator, so the trees compile at their production size
