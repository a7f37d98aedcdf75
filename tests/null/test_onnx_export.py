"""graph.onnx.export against onnxruntime and onnx.checker, and export -> load round trips.

Every zoo model exports at its small input, passes ``onnx.checker.check_model(full_check=True)`` and runs in
onnxruntime within rtol 1e-4 of our eager output, except the VGGs and AlexNets (57M-144M parameters, 103M of them
in a VGG's fc6 alone): building, serializing and loading 0.25-0.6 GB into onnxruntime costs 3-7 s per model on the
2-core machine, more than this whole file may take; every layer type they use (conv, BN, ReLU, LRN, max pool,
dropout, linear) is exported by the other models.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import engine
import engine.functional as F
import engine.nn as nn
import graph
import graph.onnx as gx
import zoo.models as zm
from engine.autograd import bind
from engine.ops.elementwise import relu_grad_p
from tests.zoo.test_models import fast_init  # noqa: F401 - the fixture


def _ort(model: onnx.ModelProto, *xs: np.ndarray) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return s.run(None, {i.name: x for i, x in zip(s.get_inputs(), xs)})


def _close(got: np.ndarray, ref: np.ndarray, rtol: float = 1e-4) -> None:
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= rtol * max(np.abs(ref).max(), 1e-6)


@pytest.mark.parametrize("name", zm.list_models())
def test_zoo_model_exports_checks_and_matches_onnxruntime(name, fast_init):  # noqa: F811
    engine.manual_seed(0)
    if name.startswith(("vgg", "alexnet")):
        pytest.skip("57M-144M parameters: too slow to serialize and load into onnxruntime (module docstring)")
    model = zm.get(name, num_classes=7).eval()
    x = engine.randn(1, *zm.small_input_size(name))
    with engine.no_grad():
        ref = model(x).numpy()
    proto = gx.export(model, x)
    onnx.checker.check_model(proto, full_check=True)
    read = {v.name for v in graph.trace(model, x, abstract=True).inputs if v.kind == "param"}
    assert read and read <= {t.name for t in proto.graph.initializer}  # parameter names kept
    _close(_ort(proto, x.numpy())[0], ref)


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "mobilenet_v2", "lenet5"])
def test_round_trip_export_load_compile_equals_the_original(name, fast_init, tmp_path):  # noqa: F811
    engine.manual_seed(0)
    model = zm.get(name, num_classes=7).eval()
    x = engine.randn(2, *zm.small_input_size(name))
    path = tmp_path / f"{name}.onnx"
    gx.export(model, x, path)
    back = gx.load(path)
    read = {v.name for v in graph.trace(model, x, abstract=True).inputs if v.kind in ("param", "buffer")}
    state, orig = back.state_dict(), model.state_dict()
    assert set(state) == read  # the names the traced graph reads (an eval trace skips googlenet's aux heads)
    assert all(np.array_equal(np.asarray(state[k]), np.asarray(orig[k])) for k in read)
    ref = np.asarray(graph.compile(model, x)(x))
    got = np.asarray(graph.compile(back, x)(x))
    _close(got, ref, 1e-5)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_fused_export_lowers_fused_ops_and_matches(name, fast_init):  # noqa: F811
    engine.manual_seed(0)
    model = zm.get(name, num_classes=7).eval()
    x = engine.randn(1, *zm.small_input_size(name))
    ref = model(x).numpy()
    fused = gx.export(model, x, fused=True)
    compiled = gx.export(graph.compile(model, x), x)
    for proto in (fused, compiled):
        onnx.checker.check_model(proto, full_check=True)
        ops = {n.op_type for n in proto.graph.node}
        assert "BatchNormalization" not in ops  # folded into the convolutions
        _close(_ort(proto, x.numpy())[0], ref)


class _Odd(nn.Module):
    def forward(self, x):
        return bind(relu_grad_p, x, x)


def test_primitive_without_mapping_is_named():
    with pytest.raises(gx.OnnxExportError, match="relu_grad"):
        gx.export(_Odd(), np.ones((2, 3), np.float32))


class _Mix(nn.Module):
    """Ops the zoo does not use: adaptive pool to 3x3 (overlapping windows), pad, slice, softmax, clamp, matmul."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.w = nn.Parameter(np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32))

    def forward(self, x):
        y = F.adaptive_avg_pool2d(self.conv(x), 3) + F.adaptive_max_pool2d(x[:, :1] * 0.0 + 1.0, 3)
        y = F.pad(y, (1, 0, 0, 2), value=0.5)[:, :, 1:, ::2]
        y = F.clamp(y, -0.2, None) + F.leaky_relu(y, 0.1) + F.silu(y) + F.elu(y)
        z = F.matmul(F.transpose(y, 1, 3), self.w)
        return F.softmax(z, -1), F.log_softmax(F.sum(z, (1, 2)), 1)


def test_less_common_ops_match_onnxruntime():
    engine.manual_seed(0)
    m = _Mix().eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 11, 13)).astype(np.float32)
    refs = [r.numpy() for r in m(engine.Tensor(x))]
    proto = gx.export(m, x)
    onnx.checker.check_model(proto, full_check=True)
    for got, ref in zip(_ort(proto, x), refs):
        _close(got, ref)
    back = gx.load(proto)
    for got, ref in zip(back(x), refs):
        _close(got.numpy(), ref, 1e-6)


class _Mix2(nn.Module):
    """Transposed conv (output padding), ceil-mode pools, linear on 3-D input, and the elementwise family."""

    def __init__(self):
        super().__init__()
        self.up_w = nn.Parameter(np.random.default_rng(3).standard_normal((3, 4, 3, 3)).astype(np.float32) * 0.3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        y = self.bn(F.conv_transpose2d(x, self.up_w, None, stride=2, padding=1, output_padding=1))
        a = F.avg_pool2d(y, 3, 2, 1, ceil_mode=True, count_include_pad=False)
        m = F.max_pool2d(y, 2, 2, 0, dilation=2, ceil_mode=True)
        z = F.concat([a[:, :, :6, :6], F.broadcast_to(m[:, :, :1, :6], (2, 4, 6, 6))], 1)
        z = F.sqrt(F.abs(z) + 1.0) - F.exp(-z) / F.maximum(z, 0.5) + F.minimum(F.log(F.abs(z) + 2.0), 0.7) ** 2.0
        z = F.where(F.greater(z, 0.0), F.sigmoid(z), F.tanh(z))
        return self.fc(z), F.argmax(F.astype(z, "float64"), 1)


def test_transposed_conv_pools_and_elementwise_match_onnxruntime():
    engine.manual_seed(0)
    m = _Mix2()
    m.bn.running_mean.data = np.linspace(-0.5, 0.5, 4).astype(np.float32)
    m.eval()
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 6)).astype(np.float32)
    refs = [r.numpy() for r in m(engine.Tensor(x))]
    proto = gx.export(m, x)
    onnx.checker.check_model(proto, full_check=True)
    assert {"ConvTranspose", "AveragePool", "MaxPool", "BatchNormalization", "Expand", "Where"} <= \
        {n.op_type for n in proto.graph.node}
    got = _ort(proto, x)
    _close(got[0], refs[0])
    np.testing.assert_array_equal(got[1], refs[1])


def test_imported_model_fine_tunes():
    engine.manual_seed(0)
    model = zm.get("lenet5").eval()
    x = engine.randn(4, *zm.small_input_size("lenet5"))
    back = gx.load(gx.export(model, x))
    params = list(back.parameters())
    assert len(params) == len(list(model.parameters())) and all(p.requires_grad for p in params)
    back.train()
    loss = F.cross_entropy(back(x), np.array([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None and np.isfinite(p.grad.numpy()).all() for p in params)


def test_summary_of_an_imported_model_matches_the_original(fast_init):  # noqa: F811
    # nested initializer names become holder modules and each node runs in its layer's scope: summary groups rows
    # by layer and counts the same parameters and MACs as for the model that was exported
    engine.manual_seed(0)
    model = zm.get("resnet18", num_classes=7).eval()
    x = engine.randn(1, 3, 64, 64)
    back = gx.load(gx.export(model, x))
    a, b = (graph.summary(m, (1, 3, 64, 64), depth=2, verbose=False) for m in (model, back))
    assert (a.total_params, a.total_macs) == (b.total_params, b.total_macs)
    assert {"conv1", "bn1", "layer1.0", "layer4.1", "fc"} <= {r.name for r in b}


def test_imported_model_trains_through_compile_like_the_original():
    # train mode: BatchNorm uses batch statistics and updates its running buffers (ONNX momentum 0.9 = PyTorch's 0.1)
    engine.manual_seed(0)
    model = zm.get("resnet18_cifar").eval()
    x = engine.randn(4, 3, 32, 32)
    back = gx.load(gx.export(model, x)).train()
    y = graph.compile(back, x)(x)
    F.cross_entropy(y, np.array([0, 1, 2, 3])).backward()
    assert all(p.grad is not None for p in back.parameters())
    _close(y.numpy(), model.train()(x).numpy(), 1e-5)
    np.testing.assert_allclose(back.bn1.running_mean.numpy(), model.bn1.running_mean.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["lenet5", "googlenet_2014", "resnet18", "efficientnet_b0"])
def test_exported_batch_is_dynamic_and_runs_at_another_batch_size(name, fast_init):  # noqa: F811
    # exported at batch 2, run by onnxruntime at batch 3: Reshape/Flatten targets use -1, not the traced batch
    engine.manual_seed(0)
    model = zm.get(name, num_classes=7).eval()
    size = zm.small_input_size(name)
    proto = gx.export(model, engine.randn(2, *size), dynamic_batch=True)
    onnx.checker.check_model(proto, full_check=True)
    assert [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim][0] == "N"
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "N"
    x = engine.randn(3, *size)
    with engine.no_grad():
        ref = model(x).numpy()
    _close(_ort(proto, x.numpy())[0], ref)


class _BatchConstant(nn.Module):
    def forward(self, x):
        return x + engine.Tensor(np.arange(x.shape[0], dtype=np.float32).reshape(-1, 1))


def test_a_batch_sized_constant_keeps_the_batch_static():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(gx.OnnxExportError, match=r"dynamic_batch=True.*const.*batch-sized shape \[2, 1\]"):
        gx.export(_BatchConstant(), x, dynamic_batch=True)
    proto = gx.export(_BatchConstant(), x)  # the default falls back to the traced batch
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [2, 3]
    proto = gx.export(zm.get("lenet5"), np.ones((2, 1, 28, 28), np.float32), dynamic_batch=False)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


def test_batch_norm_momentum_round_trips():
    # torch momentum 0.3 is ONNX momentum 0.7; the imported model's train step updates its running mean by it
    engine.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.3)).eval()
    x = engine.randn(4, 3, 6, 6)
    proto = gx.export(model, x)
    bn = next(n for n in proto.graph.node if n.op_type == "BatchNormalization")
    assert [round(a.f, 6) for a in bn.attribute if a.name == "momentum"] == [0.7]
    back = gx.load(proto).train()
    back(x)
    model.train()(x)
    np.testing.assert_allclose(back.state_dict()["1.running_mean"].numpy(), model[1].running_mean.numpy(),
                               rtol=1e-5, atol=1e-7)
    assert np.abs(model[1].running_mean.numpy()).max() > 1e-3
    again = gx.export(back.eval(), x)  # the imported holder keeps the momentum for the next export
    bn = next(n for n in again.graph.node if n.op_type == "BatchNormalization")
    assert [round(a.f, 6) for a in bn.attribute if a.name == "momentum"] == [0.7]


class _Norms(nn.Module):
    """BatchNorm (train mode), LayerNorm and GELU: the row_norm / batch_norm_train / gelu export rules."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4, momentum=0.2)
        self.w = nn.Parameter(np.linspace(0.5, 1.5, 16).astype(np.float32))

    def forward(self, x):
        y = self.bn(self.conv(x))
        return F.gelu(F.layer_norm(F.reshape(y, (y.shape[0], 4, 16)), 16, self.w)), F.gelu(y, approximate="tanh")


@pytest.mark.parametrize("opset", [18, 20])
def test_training_mode_export_matches_onnxruntime_and_updates_buffers(opset):
    engine.manual_seed(0)
    m = _Norms()
    x = np.random.default_rng(4).standard_normal((3, 3, 6, 6)).astype(np.float32) * 2 + 1
    proto = gx.export(m.train(), x, opset=opset, training=True)
    onnx.checker.check_model(proto, full_check=True)
    assert m.training  # the mode is restored
    outs = {o.name: v for o, v in zip(proto.graph.output, _ort(proto, x))}
    assert ("Gelu" in {n.op_type for n in proto.graph.node}) == (opset >= 20)
    refs = [r.numpy() for r in m(engine.Tensor(x))]  # updates the module's buffers
    _close(outs["output_0"], refs[0])
    _close(outs["output_1"], refs[1])
    _close(outs["bn.running_mean.updated"], m.bn.running_mean.numpy(), 1e-5)
    _close(outs["bn.running_var.updated"], m.bn.running_var.numpy(), 1e-5)
    # the unbiased-variance factor n / (n - 1) is a batch-sized constant: training graphs keep a static batch
    with pytest.raises(gx.OnnxExportError, match="depends on the batch size"):
        gx.export(m, x, training=True, dynamic_batch=True)
    eval_proto = gx.export(m.eval(), x, opset=opset)  # eval: LayerNorm + GELU with a dynamic batch
    xb = np.concatenate([x, x[:1]])
    _close(_ort(eval_proto, xb)[0], m(engine.Tensor(xb))[0].numpy())


def test_training_export_of_inference_graphs_is_a_clear_error():
    m = zm.get("lenet5")
    x = np.ones((2, 1, 28, 28), np.float32)
    with pytest.raises(gx.OnnxExportError, match="fused=True .* training=True"):
        gx.export(m, x, fused=True, training=True)
    with pytest.raises(gx.OnnxExportError, match="training=True .* not its CompiledModule"):
        gx.export(graph.compile(m.eval(), x), x, training=True)
    with pytest.raises(gx.OnnxExportError, match="random keys"):  # LeNet-5's train-mode dropout
        gx.export(m, x, training=True)
