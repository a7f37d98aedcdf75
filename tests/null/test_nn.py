"""engine.nn.Module: registration, traversal, modes, state dicts (vs torch) and repr strings (vs torch)."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine import Tensor, nn
from tests.helpers import import_torch

torch = import_torch()  # without PyTorch only the comparisons with it skip

# the same constructor call, evaluated against engine.nn and torch.nn
REPR_CASES = [
    "Conv2d(3, 16, 5, padding=2)",
    "Conv2d(3, 16, (3, 5), stride=2, dilation=2, bias=False)",
    "Conv2d(4, 8, 3, groups=2, padding=1)",
    "Conv2d(4, 8, 3, padding='same')",
    "Conv1d(3, 4, 3)",
    "Conv1d(3, 4, 3, stride=2, padding=1, bias=False)",
    "BatchNorm2d(16)",
    "BatchNorm2d(4, eps=1e-3, momentum=0.01)",
    "BatchNorm1d(8, momentum=None, affine=False, track_running_stats=False)",
    "Linear(4, 5)",
    "Linear(4, 5, bias=False)",
    "MaxPool2d(2)",
    "MaxPool2d(3, 2, 1, ceil_mode=True)",
    "MaxPool2d((2, 3), stride=(1, 2))",
    "MaxPool1d(3, 2, 1, dilation=2)",
    "AvgPool2d(2)",
    "AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)",
    "AvgPool1d(3, 2, 1)",
    "LPPool2d(2, 3)",
    "LPPool2d(2, 3, stride=2)",
    "AdaptiveAvgPool2d((1, 1))",
    "AdaptiveAvgPool2d(7)",
    "AdaptiveMaxPool2d((2, 3))",
    "LocalResponseNorm(5)",
    "LocalResponseNorm(5, alpha=1e-3, beta=0.5, k=2.0)",
    "Dropout()",
    "Dropout(0.2)",
    "ReLU()",
    "ReLU(inplace=True)",
    "LeakyReLU(0.2)",
    "ELU()",
    "Sigmoid()",
    "Tanh()",
    "SiLU()",
    "Softmax(dim=1)",
    "LogSoftmax(dim=-1)",
    "CrossEntropyLoss()",
    "NLLLoss()",
    "MSELoss()",
    "Identity()",
    "Flatten()",
    "Flatten(0, 2)",
    "Sequential()",
    "Sequential(Conv2d(1, 2, 3), BatchNorm2d(2), ReLU(), Sequential(Flatten(), Linear(2, 3)))",
    "ModuleList([ReLU(), ReLU(), Linear(2, 3), Linear(2, 3), Linear(2, 3), ReLU()])",
    "ModuleDict({'conv': Conv2d(1, 2, 3), 'act': ReLU()})",
]


def _build(expr: str, ns) -> object:
    return eval(expr, {name: getattr(ns, name) for name in dir(ns) if not name.startswith("_")})


@pytest.mark.parametrize("expr", REPR_CASES)
def test_repr_matches_torch(expr: str):
    assert repr(_build(expr, nn)) == repr(_build(expr, torch.nn))


class TinyNet(nn.Module):
    """Conv-BN-ReLU-Linear with torchvision-style names and a nested block."""

    def __init__(self, lib):
        super().__init__()
        self.conv1 = lib.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = lib.BatchNorm2d(8)
        self.relu = lib.ReLU()
        self.layer1 = lib.Sequential(lib.Conv2d(8, 8, 3, padding=1), lib.BatchNorm2d(8))
        self.pool = lib.AdaptiveAvgPool2d(1)
        self.fc = lib.Linear(8, 10)


def torch_tiny_net():
    """TinyNet written with torch.nn, defined when a test asks for it (so only that test needs PyTorch)."""

    class TorchTinyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(8)
            self.relu = torch.nn.ReLU()
            self.layer1 = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8))
            self.pool = torch.nn.AdaptiveAvgPool2d(1)
            self.fc = torch.nn.Linear(8, 10)

    return TorchTinyNet()


def test_state_dict_keys_shapes_dtypes_match_torch():
    ours, theirs = TinyNet(nn).state_dict(), torch_tiny_net().state_dict()
    assert list(ours) == list(theirs)
    for k in ours:
        assert ours[k].shape == tuple(theirs[k].shape), k
        assert ours[k].dtype == np.dtype(str(theirs[k].dtype).replace("torch.", "")), k
    assert repr(TinyNet(nn)).replace("TinyNet", "X") == repr(torch_tiny_net()).replace("TorchTinyNet", "X")


def test_named_members_and_traversal():
    net = TinyNet(nn)
    assert [n for n, _ in net.named_parameters()] == [
        "conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.weight", "layer1.0.bias", "layer1.1.weight",
        "layer1.1.bias", "fc.weight", "fc.bias"]
    assert [n for n, _ in net.named_buffers()] == [
        "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked", "layer1.1.running_mean",
        "layer1.1.running_var", "layer1.1.num_batches_tracked"]
    assert [n for n, _ in net.named_children()] == ["conv1", "bn1", "relu", "layer1", "pool", "fc"]
    assert [n for n, _ in net.named_modules()] == ["", "conv1", "bn1", "relu", "layer1", "layer1.0", "layer1.1",
                                                   "pool", "fc"]
    assert len(list(net.parameters(recurse=False))) == 0
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert net.get_submodule("layer1.1") is net.layer1[1]
    with pytest.raises(AttributeError, match="no submodule 'nope'"):
        net.get_submodule("layer1.nope")


def test_shared_parameters_are_listed_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # torch keeps both names


def test_attribute_registration_rules():
    m = nn.Module()
    m.w = nn.Parameter(np.ones(2, np.float32))
    m.sub = nn.Linear(2, 2)
    m.plain = 3
    m.register_buffer("buf", Tensor(np.zeros(2, np.float32)))
    m.register_buffer("scratch", np.zeros(1, np.float32), persistent=False)
    assert list(m._parameters) == ["w"] and list(m._modules) == ["sub"] and m.plain == 3
    assert list(m.state_dict()) == ["w", "buf", "sub.weight", "sub.bias"]
    assert [n for n, _ in m.named_buffers()] == ["buf", "scratch"]
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'w'"):
        m.w = Tensor(np.ones(2, np.float32))
    with pytest.raises(TypeError, match="as buffer 'buf'"):
        m.buf = 5
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("plain", None)
    with pytest.raises(KeyError, match='contain "."'):
        m.register_parameter("a.b", None)
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'missing'"):
        _ = m.missing
    m.w = None
    assert "w" not in m.state_dict()
    del m.sub
    assert "sub.weight" not in m.state_dict()

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.ones(1, np.float32))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()


def test_train_eval_zero_grad_apply_hooks():
    net = TinyNet(nn)
    assert net.training and net.layer1[1].training
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    for p in net.parameters():
        p.grad = Tensor(np.ones(p.shape, p.dtype))
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.data == 0) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "TinyNet" and seen[:2] == ["Conv2d", "BatchNorm2d"]

    lin = nn.Linear(2, 2)
    calls = []
    h = lin.register_forward_hook(lambda mod, args, out: calls.append(out.shape))
    pre = lin.register_forward_pre_hook(lambda mod, args: (args[0] * 0.0,))
    out = lin(Tensor(np.ones((1, 2), np.float32)))
    np.testing.assert_allclose(out.data, lin.bias.data[None], rtol=1e-6)
    assert calls == [(1, 2)]
    h.remove()
    pre.remove()
    lin(Tensor(np.ones((1, 2), np.float32)))
    assert calls == [(1, 2)]


def test_load_state_dict_copies_in_place():
    a, b = TinyNet(nn), TinyNet(nn)
    w = b.fc.weight
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert b.fc.weight is w, "parameters keep their identity (optimizers hold them)"
    np.testing.assert_array_equal(b.fc.weight.data, a.fc.weight.data)
    torch_sd = {k: v.numpy() for k, v in torch_tiny_net().state_dict().items()}  # torch's arrays load directly
    b.load_state_dict(torch_sd)
    np.testing.assert_array_equal(b.conv1.weight.data, torch_sd["conv1.weight"])


def test_load_state_dict_errors_name_keys_and_shapes_without_partial_update():
    net = TinyNet(nn)
    before = {k: v.data.copy() for k, v in net.state_dict().items()}
    sd = {k: v.data.copy() + 1 for k, v in TinyNet(nn).state_dict().items()}
    del sd["bn1.running_var"]
    sd["fc.extra"] = np.zeros(1, np.float32)
    sd["fc.weight"] = np.zeros((10, 9), np.float32)
    with pytest.raises(RuntimeError) as e:
        net.load_state_dict(sd)
    msg = str(e.value)
    assert msg.startswith("Error(s) in loading state_dict for TinyNet:")
    assert 'Missing key(s) in state_dict: "bn1.running_var".' in msg
    assert 'Unexpected key(s) in state_dict: "fc.extra".' in msg
    assert ("size mismatch for fc.weight: copying a param with shape (10, 9) from checkpoint, the shape in "
            "current model is (10, 8).") in msg
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.data, before[k], err_msg=f"{k} was changed by a failed load")
    # strict=False tolerates missing/unexpected keys (and reports them), never a wrong shape
    sd["fc.weight"] = np.zeros((10, 8), np.float32)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["bn1.running_var"] and result.unexpected_keys == ["fc.extra"]
    np.testing.assert_array_equal(net.fc.weight.data, 0)


def test_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    seq.append(nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear) and isinstance(seq[1], nn.ReLU)
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    assert isinstance(seq[1:], nn.Sequential) and len(seq[1:]) == 2 and list(seq[1:]._modules) == ["1", "2"]
    seq[1] = nn.Tanh()
    assert list(seq._modules) == ["0", "1", "2"] and isinstance(seq[1], nn.Tanh)
    del seq[0]
    assert list(seq._modules) == ["0", "1"] and isinstance(seq[0], nn.Tanh)
    with pytest.raises(IndexError, match="out of range"):
        seq[5]
    out = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))(Tensor(np.ones((4, 2), np.float32)))
    assert out.shape == (4, 1)
    named = nn.Sequential({"first": nn.Linear(2, 2), "act": nn.ReLU()})
    assert list(named.state_dict()) == ["first.weight", "first.bias"]

    ml = nn.ModuleList([nn.Linear(2, 2)])
    ml.append(nn.ReLU())
    ml += [nn.Tanh()]
    ml.insert(0, nn.Sigmoid())
    assert [type(m).__name__ for m in ml] == ["Sigmoid", "Linear", "ReLU", "Tanh"]
    assert list(ml.state_dict()) == ["1.weight", "1.bias"] and isinstance(ml[1:3], nn.ModuleList)

    md = nn.ModuleDict({"a": nn.Linear(1, 1)})
    md["b"] = nn.ReLU()
    assert list(md) == ["a", "b"] and "a" in md and len(md) == 2
    assert list(md.state_dict()) == ["a.weight", "a.bias"]
    md.pop("a")
    assert list(md.keys()) == ["b"]


def test_module_to_double_keeps_identity():
    lin = nn.Linear(3, 2)
    w = lin.weight
    lin.double()
    assert lin.weight is w and w.dtype == np.float64
    assert lin(Tensor(np.ones((1, 3)))).dtype == np.float64


def test_batchnorm_buffers_update_and_modes():
    engine.manual_seed(0)
    bn = nn.BatchNorm1d(3)
    x = Tensor(np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32))
    bn(x)
    assert int(bn.num_batches_tracked.data) == 1
    assert not np.allclose(bn.running_mean.data, 0)
    bn.eval()
    mean = bn.running_mean.data.copy()
    bn(x)
    np.testing.assert_array_equal(bn.running_mean.data, mean)
    assert int(bn.num_batches_tracked.data) == 1
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        bn(Tensor(np.ones((2, 3, 4, 5), np.float32)))


def test_call_records_the_module_stack_for_observers():
    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    seen = []

    def observer(prim, inputs, attrs, outputs):
        seen.append((prim.name, [type(m).__name__ for m in engine.autograd.current_modules()]))

    with engine.observe(observer):
        net(Tensor(np.ones((1, 2), np.float32)))
    assert seen == [("linear", ["Sequential", "Linear"]), ("relu", ["Sequential", "Sequential", "ReLU"])]
    assert engine.autograd.current_modules() == ()
