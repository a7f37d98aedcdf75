"""DenseNet's concatenations stored once per block (graph/prefix_views.py): every shorter concat of a dense block is
a channel-prefix view of the block's last one. The plan shares the storage; training through those strided views
equals eager training (numpy float64, numba float32); numba's batch-norm kernels read a channel prefix exactly as
they read a contiguous copy of it."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
import engine.nn as nn
import engine.optim as optim
import graph
from engine import Tensor
from zoo.models.densenet import _DenseBlock


def _model(dtype) -> nn.Module:
    engine.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), _DenseBlock(3, 4, bn_size=2, growth_rate=3,
                                                                              drop_rate=0.0),
                      nn.BatchNorm2d(13), nn.ReLU(), nn.Flatten(), nn.Linear(13 * 5 * 5, 4))
    m.train()
    return m.double() if dtype == np.float64 else m


def _data(dtype):
    rng = np.random.default_rng(3)
    return Tensor(rng.standard_normal((3, 3, 5, 5)).astype(dtype)), Tensor(np.array([0, 3, 1]))


def _train(backend: str, dtype, compiled: bool):
    m = _model(dtype)
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x, y = _data(dtype)
    with engine.use_backend(backend):
        if compiled:
            step = graph.compile_step(m, F.cross_entropy, opt, x, y, backend=backend)
            losses = [step(x, y).item() for _ in range(2)]
        else:
            losses = []
            for _ in range(2):
                opt.zero_grad()
                loss = F.cross_entropy(m(x), y)
                loss.backward()
                opt.step()
                losses.append(loss.item())
    return m, losses, (step if compiled else None)


def test_dense_block_concats_share_one_buffer():
    _, _, step = _train("numpy", np.float64, compiled=True)
    plan = step.plan
    # the block's layer-2 and layer-3 inputs are prefixes of its output concat
    assert len(plan.prefix_of) == 2
    root = next(iter(plan.prefix_of.values()))
    assert root.shape[1] == 13 and {v.shape[1] for v in plan.prefix_of} == {7, 10}
    assert all(plan.offsets[v] == plan.offsets[r] for v, r in plan.prefix_of.items())
    view = step.executor.views[id(next(iter(plan.prefix_of)))]
    assert view.strides[0] == 13 * 5 * 5 * 8 and not view.flags.c_contiguous
    shared = [b for b in plan.buffers if root in b.values]
    assert len(shared) == 1 and set(plan.prefix_of) <= set(shared[0].values)
    # without views each concat has its own buffer: the arena can only grow
    flat = graph.plan_memory(step.graph, prefix_views=False)
    assert not flat.prefix_of and flat.arena_bytes >= plan.arena_bytes


@pytest.mark.parametrize("backend, dtype, tol", [("numpy", np.float64, 1e-10), ("numba", np.float32, 1e-4)])
def test_training_through_prefix_views_equals_eager(backend, dtype, tol):
    ref, ref_losses, _ = _train(backend, dtype, compiled=False)
    m, losses, step = _train(backend, dtype, compiled=True)
    assert step.plan.prefix_of
    np.testing.assert_allclose(losses, ref_losses, rtol=tol)
    want = ref.state_dict()
    for k, v in m.state_dict().items():
        np.testing.assert_allclose(np.asarray(v.data, np.float64), np.asarray(want[k].data, np.float64),
                                   rtol=tol, atol=tol, err_msg=k)


def test_numba_batch_norm_reads_a_channel_prefix_like_a_copy():
    from backends.numba import norm

    rng = np.random.default_rng(0)
    parent = rng.standard_normal((3, 9, 4, 5)).astype(np.float32)
    x = parent[:, 2:6]  # a channel slice: batch stride 9 x 4 x 5
    assert norm._prefix_parent(x) is not None
    w, b = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    gy = rng.standard_normal((3, 4, 4, 5)).astype(np.float32)
    got, want = [], []
    for arr, res in ((x, got), (np.ascontiguousarray(x), want)):
        y, mean, var = np.empty((3, 4, 4, 5), np.float32), np.empty(4, np.float32), np.empty(4, np.float32)
        norm.batch_norm_train(arr, w, b, out=(y, mean, var), eps=1e-5)
        gx, gw, gb = np.empty_like(y), np.empty(4, np.float32), np.empty(4, np.float32)
        norm.batch_norm_train_grad(gy, arr, w, mean, var, out=(gx, gw, gb), eps=1e-5)
        res.extend([y, mean, var, gx, gw, gb])
        for relu in (False, True):  # y again from the statistics, bit for bit (rematerialization's recompute)
            again = np.empty_like(y)
            norm.batch_norm_apply(arr, w, b, mean, var, out=again, eps=1e-5, relu=relu)
            np.testing.assert_array_equal(again, np.maximum(y, 0) if relu else y)
    for a, e in zip(got, want):
        np.testing.assert_array_equal(a, e)
    # and those match the channel statistics numpy computes
    np.testing.assert_allclose(got[1], x.mean(axis=(0, 2, 3)), rtol=1e-5)


def _two_blocks(dtype) -> nn.Module:
    from zoo.models.densenet import _Transition

    engine.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False),
                      _DenseBlock(3, 4, bn_size=2, growth_rate=3, drop_rate=0.0), _Transition(13, 6),
                      _DenseBlock(3, 6, bn_size=2, growth_rate=3, drop_rate=0.0),
                      nn.BatchNorm2d(15), nn.ReLU(), nn.Flatten(), nn.Linear(15 * 3 * 3, 4))
    m.train()
    return m.double() if dtype == np.float64 else m


@pytest.mark.parametrize("backend, dtype, budget", [("numpy", np.float64, 0.6), ("numba", np.float32, 0.65)])
def test_cheap_recomputation_keeps_concat_views_and_recomputes_no_conv(backend, dtype, budget):
    """Under a budget the cheap policy recomputes the dense layers' BN + ReLU outputs (one batch_norm_apply from
    the kept statistics) but not the concats (views of the block's storage: recomputing one frees nothing and
    copies the block, rerunning the convs of its feature maps); the training stays bit for bit the unbudgeted one
    (numba too: its batch_norm_apply normalizes exactly as its training kernel does)."""
    x = Tensor(np.random.default_rng(3).standard_normal((3, 3, 6, 6)).astype(dtype))
    y = Tensor(np.array([0, 3, 1]))
    runs = []
    for b in (None, budget):
        m = _two_blocks(dtype)
        step = graph.compile_step(m, F.cross_entropy, optim.SGD(m.parameters(), lr=0.1, momentum=0.9), x, y,
                                  backend=backend, memory_budget=b)
        runs.append((m, step, [step(x, y).item() for _ in range(2)]))
    (m0, _, l0), (m1, s1, l1) = runs
    r = s1.report["remat"]
    assert r["policy"] == "cheap" and r["planned_peak_bytes"] <= budget * r["peak_no_recompute_bytes"]
    rec = [n for n in s1.graph.nodes if n.meta.get("recomputed")]
    # BN + ReLU again as one batch_norm_apply from the kept statistics, reading the concat view in place
    assert {n.op.name for n in rec} == {"batch_norm_apply"} and any(n.attrs["relu"] for n in rec)
    assert any(n.inputs[0] in s1.plan.prefix_of for n in rec)
    assert s1.plan.prefix_of
    assert l1 == l0
    for (k, a), b in zip(m0.state_dict().items(), m1.state_dict().values()):
        np.testing.assert_array_equal(b.data, a.data, err_msg=k)

