"""The conv_prologue pass (graph/passes/conv_prologue.py) on the numpy reference: DenseNet's BatchNorm + ReLU after
each concat becomes the prologue of the 1x1 convolution that reads it (``blocked_prologue_conv2d``, run by its
decomposition here), a scale/shift with any other reader stays, and compiled == eager."""

from __future__ import annotations

import numpy as np
import pytest

import engine.functional as F
import engine.nn as nn
import graph
import zoo
from graph.passes import PIPELINES
from graph.render import to_dot
from tests.null.graph_models import randomize_bn
from tests.null.test_layout_pass import _assert_close, _eager, _model


def test_densenet_bn_after_concat_is_a_conv_prologue():
    m, x = _model("densenet121")
    cm = graph.compile(m, x, backend="numpy", layout=16)
    ops = cm.graph.op_counts()
    # 58 dense layers + 3 transitions read their BN + ReLU in the 1x1 conv; norm5 (read by the pool) stays
    assert ops["blocked_prologue_conv2d"] == 61 and ops["blocked_scale_shift"] == 1
    fused = cm.graph.find("blocked_prologue_conv2d")[0]
    assert fused.meta["fused"] == ["batch_norm_infer", "relu", "conv2d", "batch_norm_infer", "relu"]
    assert "blocked_prologue_conv2d [batch_norm_infer+relu+conv2d" in to_dot(cm.graph).source
    _assert_close(cm(x).data, _eager(m, x))
    old = graph.compile(m, x, backend="numpy", layout=16,
                        passes=[p for p in PIPELINES["inference"] if p != "conv_prologue"])
    assert old.graph.op_counts()["blocked_scale_shift"] == 62 and not old.graph.find("blocked_prologue_conv2d")
    # the transitions' convolutions take their 2x2 average pool: a quarter of the pixels
    pooled = [n for n in cm.graph.find("blocked_prologue_conv2d") if n.attrs.get("pool") == 2]
    assert len(pooled) == 3 and all(n.meta["fused"][-1] == "avg_pool2d" for n in pooled)
    assert ops["blocked_pool"] == 2  # the stem's max pool and the global average pool
    # the prologue counts the FLOPs the scale/shift did; the pooled transitions' convolutions do a quarter of theirs
    rows = {r["pass"]: r for r in cm.report["passes"]}
    assert 0.9 * rows["conv_prologue"]["flops_before"] < rows["conv_prologue"]["flops"] < \
        rows["conv_prologue"]["flops_before"]
    assert rows["conv_prologue"]["bytes"] < rows["layout"]["bytes"]


def tiny_densenet() -> nn.Module:
    """Growth 12 from 16 channels: layer 2 reads a blocked concat of 16 + 12 = 28 channels (4 pad lanes); the
    block's 40-channel concat (16 + 12 + 12) does not fill whole blocks before its last input and stays NCHW."""
    m = randomize_bn(zoo.models.densenet.DenseNet(growth_rate=12, block_config=(2, 2), num_init_features=16,
                                                  bn_size=2, num_classes=10))
    m.eval()
    return m


def test_tiny_dense_block_with_non_multiple_channels():
    m = tiny_densenet()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    cm = graph.compile(m, x, backend="numpy", layout=16)
    convs = cm.graph.find("blocked_prologue_conv2d")
    assert {n.inputs[3].shape[1] for n in convs} >= {16, 28}
    _assert_close(cm(x).data, _eager(m, x))


class _SharedNorm(nn.Module):
    """BN + ReLU after a concat (so no conv absorbs it) read by a 1x1 conv and by ``other``."""

    def __init__(self, other: str):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(3, 16, 3, padding=1)
        self.norm = nn.BatchNorm2d(32)
        self.pw, self.pw2 = nn.Conv2d(32, 32, 1), nn.Conv2d(32, 32, 1)
        self.k3 = nn.Conv2d(32, 32, 3, padding=1)
        self.other = other

    def forward(self, x):
        y = F.relu(self.norm(F.concat([self.a(x), self.b(x)], 1)))
        if self.other == "pool":
            return self.pw(y) + F.max_pool2d(y, 3, 1, 1)
        if self.other == "conv3x3":
            return self.pw(y) + self.k3(y)
        return self.pw(y) + self.pw2(y)  # two 1x1 readers


@pytest.mark.parametrize("other", ["pool", "conv3x3", "two_1x1"])
def test_scale_shift_with_another_reader_stays(other):
    m = randomize_bn(_SharedNorm(other))
    m.eval()
    x = np.random.default_rng(1).standard_normal((1, 3, 9, 7)).astype(np.float32)
    cm = graph.compile(m, x, backend="numpy", layout=16)
    ops = cm.graph.op_counts()
    if other == "two_1x1":  # every reader takes the prologue
        assert ops.get("blocked_scale_shift", 0) == 0 and ops["blocked_prologue_conv2d"] == 2
    else:
        assert ops["blocked_scale_shift"] == 1 and "blocked_prologue_conv2d" not in ops
    _assert_close(cm(x).data, _eager(m, x))


def test_shape_rule_names_the_broken_constraint():
    from engine import Spec
    from engine.primitive import PRIMITIVES

    f32 = "float32"
    x, st = Spec((1, 2, 6, 6, 16), f32), Spec((1, 2, 1, 1, 16), f32)
    attrs = dict(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, has_bias=False,
                 has_residual=False, activation="none", act_attrs=(), prologue="relu")
    op = PRIMITIVES["blocked_prologue_conv2d"]
    assert op.abstract_eval(x, st, st, Spec((8, 32, 1, 1), f32), **attrs, pool=2)[0].shape == (1, 1, 3, 3, 16)
    with pytest.raises(ValueError, match="blocked_prologue_conv2d.*pool=2 needs.*without activation"):
        op.abstract_eval(x, st, st, Spec((8, 32, 1, 1), f32), **dict(attrs, activation="relu"), pool=2)
    with pytest.raises(ValueError, match="blocked_prologue_conv2d.*prologue must be one of"):
        op.abstract_eval(x, st, st, Spec((8, 32, 1, 1), f32), **dict(attrs, prologue="tanh"))
    with pytest.raises(ValueError, match="blocked_scale_shift.*scale and shift must be"):
        op.abstract_eval(x, Spec((1, 1, 1, 1, 16), f32), st, Spec((8, 32, 1, 1), f32), **attrs)
