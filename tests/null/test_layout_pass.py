"""The layout pass (graph/passes/layout.py) on the numpy reference: structure of blocked graphs, pad lanes, the
compile option / environment variable, and compiled == eager with blocked values (the reference runs the blocked
primitives by their decomposition)."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import graph
import zoo
from engine.autograd import no_grad
from engine.tensor import Tensor
from graph.passes import channel_block
from graph.render import to_dot
from tests.null.graph_models import randomize_bn


def _model(name: str):
    m = randomize_bn(zoo.get(name))  # non-trivial statistics: a wrong blocked BN must show
    m.eval()
    x = np.random.default_rng(0).standard_normal((2,) + zoo.models.small_input_size(name)).astype(np.float32)
    return m, x


def _eager(m, x: np.ndarray) -> np.ndarray:
    with engine.use_backend("numpy"), no_grad():
        return m(Tensor(x)).data


def _assert_close(got: np.ndarray, ref: np.ndarray, rtol: float = 1e-4) -> None:
    scale = np.abs(ref).max()
    assert np.all(np.abs(got - ref) <= rtol * np.abs(ref) + rtol * scale), np.abs(got - ref).max() / scale


def test_resnet18_blocked_structure_and_report():
    m, x = _model("resnet18")
    cm = graph.compile(m, x, backend="numpy", layout=16)
    ops = cm.graph.op_counts()
    assert "conv2d" not in ops and "fused_conv2d" not in ops
    assert ops["blocked_conv2d"] == 20 and ops["blocked_pool"] == 2  # the max pool and the global average pool
    # the stem reads the 3-channel image as it is (NCHW in, blocked out); one reorder out (before flatten +
    # linear): none between layers
    assert "to_blocked" not in ops and ops["from_blocked"] == 1
    stem = cm.graph.find("blocked_conv2d")[0]
    assert stem.inputs[0] is cm.graph.inputs[0] and stem.attrs["block"] == 16 and stem.outputs[0].ndim == 5
    assert not any("block" in n.attrs for n in cm.graph.find("blocked_conv2d")[1:])
    lay = cm.report["layout"]
    assert lay["block"] == 16 and len(lay["reorders"]) == 1 and "layout: NCHW16c" in str(cm.report)
    src = to_dot(cm.graph).source  # the rendered graph shows each value's layout and the reorders
    assert "layout NCHW16c" in src and "reorder → NCHW<" in src
    blocked = [v for v in cm.plan.offsets if len(v.shape) == 5]  # the planner plans the blocked buffers
    assert blocked and all(v.shape[-1] == 16 for v in blocked)
    _assert_close(cm(x).data, _eager(m, x))


def test_non_multiple_channels_padded_and_never_leak():
    """LeNet-5 has 20 and 50 channels: with blocks of 16 they are 2 and 4 blocks with 12 / 14 pad lanes."""
    m, x = _model("lenet5")
    cm = graph.compile(m, x, backend="numpy", layout=16)
    shapes = {tuple(n.outputs[0].shape) for n in cm.graph.find("blocked_conv2d")}
    assert shapes == {(2, 2, 24, 24, 16), (2, 4, 8, 8, 16)}
    _assert_close(cm(x).data, _eager(m, x))
    # the reorder into blocks zeroes the pad lanes; a conv's ReLU epilogue keeps them zero
    from engine.primitive import get_primitive
    from graph.executor import eval_op

    xb = eval_op(get_primitive("to_blocked"), np.ones((1, 20, 3, 3), np.float32), block=16)
    assert xb.shape == (1, 2, 3, 3, 16) and np.all(xb[:, 1, ..., 4:] == 0) and np.all(xb[:, 1, ..., :4] == 1)


@pytest.mark.parametrize("name", ["mobilenet_v2", "densenet121", "googlenet"])
def test_compiled_blocked_equals_eager(name):
    m, x = _model(name)
    cm = graph.compile(m, x, backend="numpy", layout=16)
    assert cm.graph.find("blocked_conv2d")
    _assert_close(cm(x).data, _eager(m, x))


def test_odd_block_and_concat_of_non_multiples():
    """GoogLeNet's inception concats (64 + 128 + 32 + 32 ...) with a block of 5: concats whose inputs do not fill
    whole blocks stay NCHW behind reorders, and the result is unchanged."""
    m, x = _model("googlenet")
    cm = graph.compile(m, x, backend="numpy", layout=5)
    assert cm.graph.find("blocked_conv2d") and cm.graph.find("concat")
    _assert_close(cm(x).data, _eager(m, x))


def test_layout_off_by_default_and_option_values(monkeypatch):
    m, x = _model("resnet18")
    cm = graph.compile(m, x, backend="numpy")
    assert not cm.graph.find("blocked_conv2d") and not cm.report["layout"]
    monkeypatch.setenv("CONVGRAPH_LAYOUT", "blocked")
    assert channel_block(engine.get_backend("numpy")) == 16
    monkeypatch.setenv("CONVGRAPH_LAYOUT", "nchw")
    assert channel_block(engine.get_backend("numpy")) is None
    monkeypatch.setenv("CONVGRAPH_LAYOUT", "nhwc")
    with pytest.raises(ValueError, match="CONVGRAPH_LAYOUT: layout must be one of"):
        channel_block(engine.get_backend("numpy"))
    with pytest.raises(ValueError, match=r"compile\(layout=...\): a block must be an int >= 1"):
        channel_block(engine.get_backend("numpy"), 0)


def test_training_graphs_take_the_training_layout_pass():
    """Train mode never runs this (inference) pass, whose primitives have no vjp: the joint graph gets the training
    layout pass (graph/passes/train_layout.py) where a block is asked for, and stays NCHW under layout="nchw"."""
    m, x = _model("resnet18")
    m.train()
    ops = {n.op.name for n in graph.compile(m, x, backend="numpy", layout=16).graph.nodes}
    assert "blocked_conv2d" not in ops and "blocked_conv2d_train" in ops
    cm = graph.compile(m, x, backend="numpy", layout="nchw")
    assert not any(n.op.name.startswith(("blocked", "to_blocked")) for n in cm.graph.nodes)


def _inverted_residuals():
    """Two MobileNetV2 blocks (expand 1x1 + BN + ReLU6, depthwise 3x3 + BN + ReLU6, project 1x1 + BN, the first
    with its residual add), channel counts that are not block multiples (20, 120 hidden, 36)."""
    from engine import nn
    from zoo.models.mobilenet import InvertedResidual

    m = randomize_bn(nn.Sequential(InvertedResidual(20, 20, 1, 6), InvertedResidual(20, 36, 2, 6)))
    m.eval()
    return m, np.random.default_rng(1).standard_normal((1, 20, 9, 9)).astype(np.float32) * 3


def test_inverted_blocks_keep_their_input_out_of_the_buffers_of_their_later_layers():
    """Each expand 1x1 -> depthwise -> project 1x1 run is marked (graph/passes/chains.py) and the memory plan keeps
    the expand's input live through the project: a backend that runs the three as one call (blocked/inverted.py)
    reads that input while it writes the depthwise and project outputs, so none of them may share bytes; likewise
    the depthwise input through the project (the depthwise -> 1x1 pair, blocked/chain.py). Unmarked,
    the plan puts the strided block's depthwise output over its dead input (the check below fails)."""
    from engine import nn
    from zoo.models.mobilenet import InvertedResidual

    # MobileNetV2's features.2 and .3 (24 -> 144 -> 24 with its residual), narrower; the ReLU lets the last BN fold
    m = randomize_bn(nn.Sequential(InvertedResidual(16, 24, 2, 6), InvertedResidual(24, 24, 1, 6), nn.ReLU()))
    m.eval()
    x = np.random.default_rng(1).standard_normal((1, 16, 9, 9)).astype(np.float32)
    cm = graph.compile(m, x, backend="numpy", layout=16)
    convs = cm.graph.find("blocked_conv2d")
    assert [n.meta.get("inputs_live_for") for n in convs] == [2, 1, None] * 2  # expand, depthwise, project
    marked = [n for n in convs if n.meta.get("inputs_live_for")]
    plan, nodes = cm.compiled.plan, cm.graph.nodes

    def span(v):
        return plan.offsets[v], plan.offsets[v] + v.nbytes

    for e in marked:
        i = nodes.index(e)
        x_in = e.inputs[0]
        if x_in not in plan.offsets:
            continue
        for later in nodes[i + 1:i + 1 + e.meta["inputs_live_for"]]:
            (a0, a1), (b0, b1) = span(x_in), span(later.outputs[0])
            assert a1 <= b0 or b1 <= a0, (x_in.name, later.outputs[0].name)
    _assert_close(cm(x).data, _eager(m, x))


def test_relu6_clamps_fused_into_blocked_convs():
    """Every ReLU6 (a sole-user ``clamp`` after a conv whose BN was folded) becomes the blocked conv's epilogue:
    no clamp node and no reorder remains between the blocks, and the epilogue clamps on both sides."""
    m, x = _inverted_residuals()
    cm = graph.compile(m, x, backend="numpy", layout=16)
    ops = cm.graph.op_counts()
    assert "clamp" not in ops and ops["blocked_conv2d"] == 6 and ops["to_blocked"] == 1
    clamped = [n for n in cm.graph.find("blocked_conv2d") if n.attrs["activation"] == "clamp"]
    assert len(clamped) == 4 and all(dict(n.attrs["act_attrs"]) == {"min": 0.0, "max": 6.0} for n in clamped)
    assert all(n.meta["fused"][-1] == "clamp" for n in clamped)
    ref = _eager(m, x)
    _assert_close(cm(x).data, ref)
