"""Every rewrite pass, structurally (the pattern is gone / present) and numerically (before == after on real
inputs; tolerance stated per test)."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
import graph
from engine import nn
from graph.passes import (
    PIPELINES,
    constant_fold,
    cse,
    dce,
    fold_bn,
    fuse_epilogue,
    lower_1x1,
    remove_dropout,
    remove_identities,
    run_passes,
)

from .graph_models import BNVariants, TinyResNet, inputs, randomize_bn

RTOL = 1e-4  # float32 rewrites re-associate sums: relative to the output's magnitude


def _close(before, after, x, rtol=RTOL):
    a = graph.run_graph(before, x)
    b = graph.run_graph(after, x)
    for u, v in zip(a, b):
        scale = max(1.0, float(np.abs(u).max()))
        np.testing.assert_allclose(v, u, rtol=rtol, atol=rtol * scale)


def _apply(p, g):
    before = g.copy()
    after, changed = p(g)
    after.verify()
    return before, after, changed


def test_dce_removes_unused_nodes_and_inputs():
    def fn(x):
        _ = F.exp(x) * 3.0  # dead
        return F.relu(x)

    g = graph.trace(fn, inputs((2, 3)))
    before, after, changed = _apply(dce, g)
    assert changed and after.op_counts() == {"relu": 1} and not after.consts
    _close(before, after, inputs((2, 3), 1).data)
    assert not dce(after).changed


def test_cse_merges_duplicate_nodes_and_consts():
    def fn(x):
        return F.relu(x * 2.0) + F.relu(x * 2.0)

    g = graph.trace(fn, inputs((2, 3)))
    assert g.op_counts() == {"mul": 2, "relu": 2, "add": 1} and len(g.consts) == 2
    before, after, changed = _apply(cse, g)
    assert changed and after.op_counts() == {"mul": 1, "relu": 1, "add": 1} and len(after.consts) == 1
    _close(before, after, inputs((2, 3), 1).data)


def test_constant_fold_folds_frozen_subgraphs_only():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            w = self.lin.weight * 2.0 + 1.0  # depends only on a frozen param
            return F.linear(x, w, self.lin.bias)

    m = M()
    m.eval()
    g = graph.trace(m, inputs((2, 4)))
    g.meta["frozen"] = True
    before, after, changed = _apply(constant_fold, g)
    assert changed and after.op_counts() == {"linear": 1}
    assert any(c.name.endswith(".folded") for c in after.consts)
    _close(before, after, inputs((2, 4), 1).data, rtol=1e-6)
    g2 = graph.trace(m, inputs((2, 4)))
    g2.meta["frozen"] = False  # trainable params: nothing is constant but lifted scalars
    assert not constant_fold(g2).changed


def test_remove_dropout_and_identities():
    def fn(x):
        y = F.dropout(x, 0.5, training=True)
        y = F.relu(y) * 1.0
        return y + 0.0

    g = graph.trace(fn, inputs((2, 3)))
    assert g.op_counts() == {"bernoulli_mask": 1, "dropout": 1, "relu": 1, "mul": 1, "add": 1}
    assert [v.kind for v in g.inputs].count("key") == 1  # the mask's key is an input, drawn per call
    g.meta["training"] = True  # a training graph keeps dropout, loses identities
    before, after, changed = _apply(remove_identities, g.copy())
    assert changed and after.op_counts() == {"bernoulli_mask": 1, "dropout": 1, "relu": 1}
    with pytest.raises(ValueError, match="remove_dropout: the graph was traced in training mode"):
        remove_dropout(g.copy())
    g.meta["training"] = False
    before, after, changed = _apply(remove_dropout, g)
    assert changed and after.op_counts() == {"relu": 1} and not any(v.kind == "key" for v in after.inputs)
    x = inputs((2, 3), 1).data
    np.testing.assert_array_equal(graph.run_graph(after, x)[0], np.maximum(x, 0))


def _eval_graph(model, shape, seed=0):
    randomize_bn(model, seed)
    model.eval()
    return graph.trace(model, inputs(shape, seed))


def test_fold_bn_resnet_style():
    g = _eval_graph(TinyResNet(), (2, 3, 16, 16))
    n_bn = g.op_counts()["batch_norm_infer"]
    before, after, changed = _apply(fold_bn, g)
    assert changed and "batch_norm_infer" not in after.op_counts()
    assert after.op_counts()["conv2d"] == before.op_counts()["conv2d"]
    errs = after.meta["fold_errors"]
    assert len(errs) == n_bn and max(errs.values()) < 1e-4
    assert all("fold_error" in n.meta for n in after.find("conv2d"))
    _close(before, after, inputs((2, 3, 16, 16), 3).data)


def test_fold_bn_variants_grouped_depthwise_no_bias_no_affine_linear():
    g = _eval_graph(BNVariants(), (2, 4, 8, 8), seed=1)
    before, after, changed = _apply(fold_bn, g)
    assert changed and "batch_norm_infer" not in after.op_counts()
    groups = sorted(n.attrs["groups"] for n in after.find("conv2d"))
    assert groups == [1, 2, 8] and len(after.find("linear")) == 1 and len(after.find("linear")[0].inputs) == 3
    _close(before, after, inputs((2, 4, 8, 8), 5).data)


def test_fold_bn_skips_shared_conv_output_and_graph_output_bn():
    conv, bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = conv, bn

        def forward(self, x):
            y = self.conv(x)
            return F.relu(self.bn(y)) + y  # the conv output has another user

    class OutBN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = conv, bn

        def forward(self, x):
            return self.bn(self.conv(x))  # the BN output is the graph output

    for m in (Shared(), OutBN()):
        g = _eval_graph(m, (1, 3, 6, 6))
        before, after, changed = _apply(fold_bn, g)
        assert not changed and after.op_counts() == before.op_counts()


def test_fold_bn_refuses_training_mode():
    m = TinyResNet()
    m.train()
    g = graph.trace(m, inputs((2, 3, 8, 8)))
    with pytest.raises(ValueError, match="training mode .* call model.eval\\(\\)"):
        fold_bn(g)
    # a pipeline is refused before any pass runs: the graph is unchanged
    counts = g.op_counts()
    for passes, first in ((["dce", "fold_bn"], "fold_bn"), ("inference", "remove_dropout")):
        with pytest.raises(ValueError, match=f"{first}: the graph was traced in training mode .* inference graphs"):
            run_passes(g, passes)
        assert g.op_counts() == counts
    run_passes(g, "training")  # the training pipeline accepts it


def test_pipeline_order_is_checked_when_defined():
    with pytest.raises(ValueError, match=r"fuse_epilogue \(position 1\) requires \['fold_bn'\] to run before it"):
        graph.passes.pipeline("dce", "fuse_epilogue", "fold_bn")
    g = _eval_graph(TinyResNet(), (1, 3, 8, 8))
    counts = g.op_counts()
    with pytest.raises(ValueError, match="requires \\['fold_bn'\\]"):
        run_passes(g, ["fuse_epilogue"])
    assert g.op_counts() == counts
    assert graph.passes.pipeline("fold_bn", "dce", "fuse_epilogue") == ["fold_bn", "dce", "fuse_epilogue"]
    with pytest.raises(ValueError, match=r"\['lower_1x1'\] must run before fuse_epilogue \(position 1\), not after"):
        graph.passes.pipeline("fold_bn", "fuse_epilogue", "lower_1x1")


def test_fuse_epilogue_conv_bias_residual_relu():
    g = _eval_graph(TinyResNet(), (2, 3, 16, 16))
    g, _ = fold_bn(g)
    before, after, changed = _apply(fuse_epilogue, g)
    counts = after.op_counts()
    assert changed and "relu" not in counts and "add" not in counts
    fused = after.find("fused_conv2d")
    # 6 convs: every one but layer2.conv2 is fused; that one's output is the residual of the downsample conv
    assert len(fused) == 5 and len(after.find("conv2d")) == 1 and sum(n.attrs["has_residual"] for n in fused) == 2
    assert all(n.attrs["activation"] == "relu" for n in fused)
    assert any(n.meta["fused"] == ["conv2d", "batch_norm_infer", "add(residual)", "relu"] for n in fused)
    _close(before, after, inputs((2, 3, 16, 16), 7).data)


def test_fuse_epilogue_activations_and_linear():
    g = _eval_graph(BNVariants(), (2, 4, 8, 8), seed=2)
    g, _ = fold_bn(g)
    before, after, changed = _apply(fuse_epilogue, g)
    acts = sorted(n.attrs["activation"] for n in after.find("fused_conv2d"))
    assert acts == ["leaky_relu", "relu", "silu"]
    lin = after.find("fused_linear")
    assert len(lin) == 1 and lin[0].attrs["activation"] == "relu"
    assert dict(next(n for n in after.find("fused_conv2d") if n.attrs["activation"] == "leaky_relu")
                .attrs["act_attrs"]) == {"negative_slope": 0.1}
    _close(before, after, inputs((2, 4, 8, 8), 8).data)


def test_fuse_epilogue_illegal_when_value_needed_elsewhere():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return F.relu(y), y  # y is a graph output: fusing relu would lose it

    m = M()
    m.eval()
    g = graph.trace(m, inputs((1, 3, 5, 5)))
    before, after, changed = _apply(fuse_epilogue, g)
    assert not changed and after.op_counts() == {"conv2d": 1, "relu": 1}


def test_fuse_epilogue_absorbs_broadcast_bias_add():
    w = inputs((4, 3, 3, 3)).data
    b = inputs((1, 4, 1, 1), 1).data

    def fn(x):
        return F.relu(F.conv2d(x, engine.Tensor(w), padding=1) + engine.Tensor(b))

    g = graph.trace(fn, inputs((1, 3, 5, 5)))
    before, after, changed = _apply(fuse_epilogue, g)
    (n,) = after.nodes
    assert n.op.name == "fused_conv2d" and n.attrs["has_bias"] and not n.attrs["has_residual"]
    _close(before, after, inputs((1, 3, 5, 5), 2).data)


def test_lower_1x1_to_matmul():
    m = nn.Sequential(nn.Conv2d(6, 5, 1), nn.ReLU(), nn.Conv2d(5, 4, 1, bias=False), nn.Conv2d(4, 4, 3))
    m.eval()
    g = graph.trace(m, inputs((2, 6, 7, 7)))
    before, after, changed = _apply(lower_1x1, g)
    counts = after.op_counts()
    assert changed and counts["matmul"] == 2 and counts["conv2d"] == 1  # the 3x3 stays a conv
    assert after.find("conv2d")[0].inputs[1].shape[2:] == (3, 3)
    _close(before, after, inputs((2, 6, 7, 7), 4).data)


def test_pipeline_runner_reports_and_verifies():
    g = _eval_graph(TinyResNet(), (1, 3, 8, 8))
    dumped = []
    g2, rows = run_passes(g, "inference", instrument=lambda name, gr: dumped.append(name))
    assert [r["pass"] for r in rows] == PIPELINES["inference"] == dumped
    fold = next(r for r in rows if r["pass"] == "fold_bn")
    assert fold["changed"] and fold["nodes_after"] < fold["nodes_before"]
    with pytest.raises(ValueError, match="unknown pass"):
        run_passes(g2, ["no_such_pass"])

    def broken(gr):
        gr.nodes.reverse()
        return graph.PassResult(gr, True)

    with pytest.raises(graph.GraphError, match="after pass broken"):
        run_passes(g2, [broken])
