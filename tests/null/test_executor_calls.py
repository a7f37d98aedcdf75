"""The executor's precomputed calls: kernels specialized to an arena's arrays once, re-specialized when an array
they hold changes identity, and never holding on to arrays the caller owns."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import engine
import engine.functional as F
import graph
from engine import nn

from .graph_models import TinyResNet, inputs, randomize_bn


class _CountingBackend(engine.Backend):
    """Numpy kernels that offer ``specialize``: counts the specializations and the calls of specialized kernels."""

    def __init__(self, decline: bool = False):
        super().__init__("counting", fallback="numpy")
        self.decline = decline
        self.specialized: list[str] = []
        self.calls = 0

    def has_kernel(self, name):
        return engine.get_backend("numpy").has_kernel(name)

    def kernel(self, name):
        k = engine.get_backend("numpy").kernel(name)

        def plain(*args, out, **attrs):
            k(*args, out=out, **attrs)

        def specialize(*args, out, **attrs):
            self.specialized.append(name)
            if self.decline:
                return None

            def call():
                self.calls += 1
                k(*args, out=out, **attrs)

            return call

        plain.specialize = specialize
        return plain


@pytest.mark.parametrize("own_bytes", [64 << 10, 0], ids=["small-output-owned", "output-written-fresh"])
def test_arena_kernels_are_specialized_once_and_agree_with_eager(own_bytes, monkeypatch):
    """Nodes on arena views and constants keep their specialized call from run to run. The node writing the graph
    output writes the executor's own array (up to OWN_OUTPUT_BYTES), copied into a fresh one, so it keeps its call
    too; past that it writes the fresh array itself and is specialized again each run. Either way each call
    returns its own array, equal to eager mode's."""
    from graph import executor

    monkeypatch.setattr(executor, "OWN_OUTPUT_BYTES", own_bytes)
    m = randomize_bn(TinyResNet())
    m.eval()
    x1, x2 = inputs((2, 3, 16, 16)), inputs((2, 3, 16, 16), seed=1)
    be = _CountingBackend()
    cm = graph.compile(m, x1, backend=be)
    with engine.no_grad():
        ref1, ref2 = m(x1).data, m(x2).data
    got1 = cm(x1).data
    first = len(be.specialized)
    assert first >= len(cm.graph.nodes) - 3
    got2 = cm(x2).data
    # (the node reading the user input runs plain: a new input array)
    assert be.specialized[first:] == ([] if own_bytes else [cm.graph.nodes[-1].op.name])
    assert be.calls >= 2 * first
    np.testing.assert_allclose(got2, ref2, rtol=1e-5, atol=1e-6)
    # each call returns its own array: the first result is not overwritten by the second call
    assert got1 is not got2
    np.testing.assert_allclose(got1, ref1, rtol=1e-5, atol=1e-6)


def test_the_executor_keeps_no_reference_to_inputs_or_outputs_after_a_call():
    m = randomize_bn(TinyResNet())
    m.eval()
    cm = graph.compile(m, inputs((2, 3, 16, 16)), backend=_CountingBackend())
    x = inputs((2, 3, 16, 16))
    cm(x)
    out = cm(x)
    refs = [weakref.ref(x.data), weakref.ref(out.data)]
    del x, out
    gc.collect()
    assert [r() is None for r in refs] == [True, True]


def test_a_kernel_that_declines_specialization_runs_plain():
    m = randomize_bn(TinyResNet())
    m.eval()
    x = inputs((2, 3, 16, 16))
    cm = graph.compile(m, x, backend=_CountingBackend(decline=True))
    with engine.no_grad():
        np.testing.assert_allclose(cm(x).data, m(x).data, rtol=1e-5, atol=1e-6)


class _Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def test_compile_step_follows_a_parameter_replaced_by_a_new_array():
    engine.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = engine.tensor(rng.standard_normal((4, 6), dtype=np.float32)), engine.tensor(np.array([0, 2, 1, 2]))
    ms = [_Mlp(), _Mlp()]
    ms[1].load_state_dict(ms[0].state_dict())
    opts = [engine.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in ms]
    step = graph.compile_step(ms[0], F.cross_entropy, opts[0], x, y, backend=_CountingBackend())
    step(x, y)
    opts[1].zero_grad()
    F.cross_entropy(ms[1](x), y).backward()
    opts[1].step()
    new = rng.standard_normal((8, 6)).astype(np.float32)
    for m in ms:  # a new array object: the specialized calls made for the old one must not write into it
        m.fc1.weight.data = new.copy()
    for _ in range(2):
        step(x, y)
        opts[1].zero_grad()
        F.cross_entropy(ms[1](x), y).backward()
        opts[1].step()
    for (name, a), (_, b) in zip(ms[0].state_dict().items(), ms[1].state_dict().items()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)


def test_readers_of_a_reused_input_buffer_run_specialized_and_follow_its_address_and_strides():
    m = randomize_bn(TinyResNet())
    m.eval()
    shape = (2, 3, 16, 16)
    be = _CountingBackend()
    cm = graph.compile(m, inputs(shape), backend=be)
    readers = [n.op.name for n in cm.graph.nodes if any(v.kind == "input" for v in n.inputs)]
    assert readers

    def check(x: np.ndarray) -> None:
        with engine.no_grad():
            ref = m(engine.Tensor(x.copy())).data
        np.testing.assert_allclose(cm(x).data, ref, rtol=1e-5, atol=1e-6)

    rng = np.random.default_rng(3)
    buf = rng.standard_normal(shape).astype(np.float32)
    check(buf)
    n0 = len(be.specialized)
    for _ in range(2):  # the same buffer, new contents: specialized from the second run on, once
        buf[...] = rng.standard_normal(shape)
        check(buf)
    reread = be.specialized[n0:]
    assert all(reread.count(name) >= 1 for name in readers)
    n1 = len(be.specialized)
    buf[...] = rng.standard_normal(shape)
    check(buf)  # the readers keep their calls, and so does the (small) output's writer
    assert be.specialized[n1:] == []
    # another array object at the same address, same layout: the alias reads it
    check(np.ndarray(shape, np.float32, buffer=buf.data))
    # the same address and shape with other strides (a view into a wider buffer), twice: specialized again to it
    wide = rng.standard_normal((2, 3, 16, 32)).astype(np.float32)
    big = np.zeros(2 * 3 * 16 * 32, np.float32)
    twin = np.ndarray(shape, np.float32, buffer=big.data, strides=wide.strides)
    for _ in range(2):
        twin[...] = rng.standard_normal(shape)
        check(twin)
    # a contiguous array at that address again
    flat = np.ndarray(shape, np.float32, buffer=big.data)
    for _ in range(2):
        flat[...] = rng.standard_normal(shape)
        check(flat)
    check(rng.standard_normal(shape).astype(np.float32))  # a fresh array: plain


class _PassThrough(nn.Module):
    def forward(self, x):
        return x, F.relu(x)


def test_an_input_the_graph_returns_comes_back_as_the_callers_array():
    x = inputs((2, 5))
    cm = graph.compile(_PassThrough(), x, backend=_CountingBackend())
    for _ in range(3):  # the same buffer again: its reader runs specialized, the output is still the caller's array
        same, relu = cm.compiled.executor.run(x.data)
        assert same is x.data  # never an alias of its bytes (which would not keep them alive)
        np.testing.assert_array_equal(relu, np.maximum(x.data, 0))
