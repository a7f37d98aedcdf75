"""cuda kernels that the numba parity cases do not reach, against the numpy reference: random masks (the same
bits), the optimizer updates (every rule and option, in place as a compiled step runs them), class_coef, strided
and aliased device operands, and determinism (no run-dependent sums)."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine import optim
from engine.nn import Parameter
from tests.helpers import compare, run_kernel

CUDA = "cuda"


def _device(a):
    return engine.get_backend(CUDA).from_host(np.asarray(a))


def _host(a):
    return engine.get_backend(CUDA).to_host(a)


@pytest.mark.parametrize("key,shape,keep,dtype", [(12345, (3, 7), 0.7, "float32"), (2**62 + 17, (1000,), 0.3, "bool"),
                                                  (5, (), 0.5, "float64"), (9, (2, 3, 5, 13), 0.9, "float32"),
                                                  (77, (4, 65), 0.0, "float32"), (78, (129,), 1.0, "float32")])
def test_bernoulli_mask_draws_the_host_bits(key, shape, keep, dtype):
    compare("bernoulli_mask", [np.asarray(key, np.int64)], rtol=0, atol=0, shape=shape, keep=keep, dtype=dtype)


def test_rng_key_continues_the_engine_stream():
    engine.manual_seed(3)
    ref = [run_kernel("numpy", "rng_key", [])[0] for _ in range(3)]
    engine.manual_seed(3)
    got = [run_kernel(CUDA, "rng_key", [])[0] for _ in range(3)]
    assert [int(k) for k in got] == [int(k) for k in ref]


OPTIMIZERS = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    (optim.Adam, dict(lr=0.01, weight_decay=0.1)),
    (optim.Adam, dict(lr=0.01, amsgrad=True, maximize=True)),
    (optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    (optim.RMSprop, dict(lr=0.01, weight_decay=0.1)),
    (optim.RMSprop, dict(lr=0.01, momentum=0.5, centered=True)),
    (optim.Adagrad, dict(lr=0.1, lr_decay=0.01, weight_decay=0.1)),
]


def _update_case(rng, cls, kwargs, step):
    p = rng.standard_normal((3, 5)).astype(np.float32)
    opt = cls([Parameter(p.copy())], **kwargs)
    group = opt.param_groups[0]
    state: dict = {}
    cls.init_state(p, state, group)
    keys = tuple(sorted(k for k, v in state.items() if k != "step" and isinstance(v, np.ndarray)))
    arrays = [p, rng.standard_normal(p.shape).astype(np.float32)]
    # state past step 0 (a centred RMSprop's grad_avg^2 below its square_avg, as real runs keep it)
    arrays += [(np.abs(rng.standard_normal(p.shape)) * (0.1 if k == "grad_avg" else 1) + 0.5).astype(np.float32)
               for k in keys]
    arrays += [np.asarray(group["lr"], np.float64), np.asarray(step, np.float64)]
    hyper = tuple(sorted((n, v) for n, v in group.items() if n not in ("params", "lr")))
    return arrays, dict(rule=cls, hyper=hyper, keys=keys)


@pytest.mark.parametrize("cls,kwargs", OPTIMIZERS, ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
@pytest.mark.parametrize("step", [0, 4])
def test_optimizer_update(rng, cls, kwargs, step):
    arrays, attrs = _update_case(rng, cls, kwargs, step)
    compare("optimizer_update", arrays, rtol=1e-6, atol=1e-7, **attrs)


@pytest.mark.parametrize("cls,kwargs", [OPTIMIZERS[1], OPTIMIZERS[4], OPTIMIZERS[7]], ids=str)
def test_optimizer_update_in_place(rng, cls, kwargs):
    """A compiled step writes parameters, state and step count over their inputs."""
    arrays, attrs = _update_case(rng, cls, kwargs, 2)
    ref = run_kernel("numpy", "optimizer_update", arrays, **attrs)
    dev = [_device(a) for a in arrays]
    n = len(attrs["keys"])
    engine.get_backend(CUDA).kernel("optimizer_update")(*dev, out=(dev[0], *dev[2:2 + n], dev[-1]), **attrs)
    for r, d in zip(ref, (dev[0], *dev[2:2 + n], dev[-1])):
        np.testing.assert_allclose(_host(d), r, rtol=1e-6, atol=1e-7)


def test_optimizer_update_of_an_unknown_rule_fails_by_name(rng):
    class Custom(optim.SGD):
        @staticmethod
        def update_arrays(p, grad, state, group):
            p -= grad

    arrays, attrs = _update_case(rng, Custom, dict(lr=0.1), 0)
    with pytest.raises(NotImplementedError, match="cuda.*Custom"):
        run_kernel(CUDA, "optimizer_update", arrays, **attrs)


CLASS_COEF = [
    dict(classes=4, weight=(), ignore_index=-100, label_smoothing=0.0),
    dict(classes=4, weight=(0.5, 2.0, 1.0, 3.0), ignore_index=1, label_smoothing=0.0),
    dict(classes=4, weight=(0.5, 2.0, 1.0, 3.0), ignore_index=-1, label_smoothing=0.2),
]


@pytest.mark.parametrize("attrs", CLASS_COEF, ids=str)
@pytest.mark.parametrize("shape", [(), (6,), (2, 3, 5)], ids=str)
def test_class_coef(rng, attrs, shape):
    t = rng.integers(0, 4, size=shape).astype(np.int64)
    if t.size > 2:
        t.reshape(-1)[:2] = attrs["ignore_index"]  # ignored positions
    compare("class_coef", [t], rtol=1e-6, atol=0, dtype="float32", op="cross_entropy", **attrs)


def test_class_coef_out_of_range_names_the_op_and_class():
    t = np.array([0, 7, 1], np.int64)
    with pytest.raises(IndexError, match="nll_loss: target class 7 is out of range for 4 classes"):
        run_kernel(CUDA, "class_coef", [t], dtype="float32", op="nll_loss", **CLASS_COEF[0])


def test_strided_device_operands_and_outputs(rng):
    """Kernels read and write device views with any strides (broadcast, transposed, sliced), as the reference."""
    from backends.cuda.views import transposed

    be = engine.get_backend(CUDA)
    a = rng.standard_normal((6, 8, 10)).astype(np.float32)
    b = rng.standard_normal((10,)).astype(np.float32)
    da = be.from_host(a)
    view = transposed(da, (2, 0, 1))[::2]  # (5, 6, 8), no unit stride
    host_view = a.transpose(2, 0, 1)[::2]
    out = be.empty((5, 6, 8), np.float32)
    be.kernel("mul")(view, be.from_host(b[::2, None, None].copy()), out=out)
    np.testing.assert_allclose(be.to_host(out), host_view * b[::2, None, None], rtol=1e-6)
    for name, attrs, ref in [("sum", dict(axes=(0, 2), keepdims=False), host_view.sum((0, 2))),
                             ("max", dict(axes=(1,), keepdims=True), host_view.max(1, keepdims=True)),
                             ("argmax", dict(axis=2, keepdims=False), host_view.argmax(2))]:
        o = be.empty(ref.shape, ref.dtype)
        be.kernel(name)(view, out=o, **attrs)
        np.testing.assert_allclose(be.to_host(o), ref, rtol=1e-5, atol=1e-5, err_msg=name)
    big = be.from_host(np.full((5, 6, 16), 7, np.float32))
    be.kernel("exp")(view, out=big[:, :, ::2])  # a strided out: the gaps keep their values
    got = be.to_host(big)
    np.testing.assert_allclose(got[:, :, ::2], np.exp(host_view), rtol=1e-6)
    assert (got[:, :, 1::2] == 7).all()


@pytest.mark.parametrize("name", ["relu_grad", "sigmoid_grad", "add", "maximum"])
def test_out_aliasing_an_input(rng, name):
    """In place, as the graph memory planner may hand it: out is one of the operands."""
    g, v = rng.standard_normal((3, 50)).astype(np.float32), rng.standard_normal((3, 50)).astype(np.float32)
    (ref,) = run_kernel("numpy", name, [g, v])
    for k in range(2):
        dev = [_device(g), _device(v)]
        engine.get_backend(CUDA).kernel(name)(*dev, out=dev[k])
        np.testing.assert_allclose(_host(dev[k]), ref, rtol=1e-6, atol=1e-7)


def test_sums_and_scatter_adds_are_bit_identical_between_runs(rng):
    x = rng.standard_normal((3, 4000)).astype(np.float32) * 1e3
    runs = [run_kernel(CUDA, "sum", [x], axes=(1,), keepdims=False)[0] for _ in range(2)]
    assert runs[0].tobytes() == runs[1].tobytes()
    g = rng.standard_normal((200,)).astype(np.float32)
    idx = rng.integers(0, 7, size=200)
    items = (("array", 0),)
    ref = run_kernel("numpy", "index_add", [g, idx], shape=(7,), items=items)[0]
    got = [run_kernel(CUDA, "index_add", [g, idx], shape=(7,), items=items)[0] for _ in range(2)]
    assert got[0].tobytes() == got[1].tobytes() == ref.tobytes()  # np.add.at's order, exactly


def test_index_with_ints_slices_and_none(rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    items = (("int", 1), ("slice", None, None, -2), ("none",), ("slice", 1, 4, 1))
    compare("index", [x], items=items)
    g = rng.standard_normal((2, 1, 3)).astype(np.float32)
    compare("index_add", [g], shape=x.shape, items=items)


@pytest.mark.parametrize("shape,axes", [((50, 60), (0, 1)), ((3, 4000), (1,)), ((2, 3, 500), (0, 2))])
def test_few_long_rows_split_over_blocks(rng, shape, axes):
    """Few outputs of many elements each: partial results of fixed segments, then one tree per output."""
    from backends.cuda.launch import BLOCK
    from backends.cuda.reduce import segments

    rows = int(np.prod([d for a, d in enumerate(shape) if a not in axes]))
    assert segments(rows, int(np.prod(shape)) // rows) > 1 and 16 * BLOCK < np.prod(shape)  # the split path
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[-1] = 9.0  # the maximum sits in the last segment
    for name in ("sum", "max", "min"):
        compare(name, [x], rtol=1e-5, atol=1e-3, axes=axes, keepdims=False)
    compare("sum", [rng.integers(-5, 5, size=shape)], axes=axes, keepdims=True)


def _chain(backend: str, x, w, b, t):
    """A small training-like sequence of kernels whose arrays never leave the backend's device until the end."""
    be = engine.get_backend(backend)

    def run(prim, *ins, **attrs):
        p = engine.get_primitive(prim)
        specs = p.abstract_eval(*(engine.Spec(tuple(a.shape), a.dtype) for a in ins), **attrs)
        outs = tuple(be.empty(s.shape, s.dtype) for s in specs)
        be.kernel(prim)(*ins, out=outs if p.multiple_results else outs[0], **attrs)
        return outs if p.multiple_results else outs[0]

    x, w, b, t = (be.from_host(a) for a in (x, w, b, t))
    y, mean, var = run("batch_norm_train", x, w, b, eps=1e-5)
    h = run("max_pool2d", run("relu", y), kernel=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1),
            ceil_mode=False)
    logits = run("sum", run("transpose", h, perm=(0, 2, 3, 1)), axes=(1, 2), keepdims=False)  # (N, C)
    logp = run("log_softmax", logits, axis=1)
    coef, denom = run("class_coef", t, classes=3, weight=(), ignore_index=-100, label_smoothing=0.1,
                      dtype="float32", op="cross_entropy")
    loss = run("div", run("neg", run("sum", run("mul", logp, coef), axes=(0, 1), keepdims=False)), denom)
    g = run("mul", run("softmax", logits, axis=1), run("broadcast_to", denom, shape=(2, 3)))
    gx, gw, gb = run("batch_norm_train_grad", run("broadcast_to", run("reshape", g, shape=(2, 3, 1, 1)),
                                                   shape=(2, 3, 6, 6)), x, w, mean, var, eps=1e-5)
    be.synchronize()
    return [be.to_host(a) for a in (loss, gx, gw, gb, mean, var)]


def test_kernels_chain_on_device(rng):
    """Outputs of one cuda kernel feed the next as device arrays (as an executor hands them), against numpy."""
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w, b = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    t = np.array([2, 0])
    for r, g in zip(_chain("numpy", x, w, b, t), _chain(CUDA, x, w, b, t)):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)
