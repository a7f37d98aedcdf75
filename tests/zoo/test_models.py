"""The model zoo: exact parameter counts, forward on small inputs, backward, torchvision state_dict keys, registry.

Building a model runs its initializers, which for the VGGs means drawing ~130M random numbers (tens of
seconds). Parameter counts only need shapes, so they build with the initializers switched off (parameters
stay `np.empty`, never touched); forward smoke tests fill parameters from a small tiled random pool with the
initializer's own scale (`fast_init`). The backward tests and the init tests build with the real initializers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import engine
import engine.functional as F
import engine.init as init
import engine.nn as nn
import graph
import zoo
import zoo.models as zm
from tests.null.graph_models import randomize_bn
from zoo.models.xception import MaxPool2dSame

# torchvision's parameter counts at 1000 classes (googlenet without its auxiliary heads).
TORCHVISION_PARAMS = {
    "alexnet": 61_100_840, "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544,
    "vgg19": 143_667_240, "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248, "googlenet": 6_624_904, "inception_v3": 27_161_264, "resnet18": 11_689_512,
    "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160, "resnet152": 60_192_808,
    "densenet121": 7_978_856, "densenet169": 14_149_480, "densenet201": 20_013_928, "mobilenet_v2": 3_504_872,
    "efficientnet_b0": 5_288_548, "efficientnet_b2": 9_109_994,
}
# Models torchvision does not have, counted by hand from their definitions.
OTHER_PARAMS = {
    "lenet5": 431_080,  # 520 + 25,050 + 400,500 + 5,010 (10 classes)
    "convnetjs_cifar10": 22_466,  # 1216 + 8020 + 10020 + 3210 (10 classes)
    "alexnet_2012": 60_965_224,  # the Caffe "bvlc_alexnet" count
    "vgg11_lrn": 132_863_336,  # LRN has no parameters: same as vgg11
    "vgg16_c": 133_638_952,  # vgg16 with three 3x3 convs made 1x1: minus 8 * (256^2 + 2 * 512^2)
    "vgg16_c_bn": 133_647_400,
    "resnet18_cifar": 11_173_962,  # 3x3 stem, 10 classes
    # Table 1's 6,990,272 weights + 8,280 biases; aux heads 128 * (512 + 528) + 2 * (128 + 2048*1024 + 1024 + 1,025,000)
    "googlenet_2014": 13_378_280,
}
KERAS_XCEPTION_PARAMS = 22_910_480  # Keras' model.count_params(): includes BN moving mean/variance
KERAS_XCEPTION_TRAINABLE = 22_855_952

_INIT_FILLS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "kaiming_uniform_",
               "kaiming_normal_", "xavier_uniform_", "xavier_normal_")


def _skip(tensor, *args, **kwargs):
    return tensor


@pytest.fixture
def no_init(monkeypatch):
    """Build models without running initializers: shapes only, no memory touched."""
    for name in _INIT_FILLS:
        monkeypatch.setattr(init, name, _skip)


_POOL = np.random.default_rng(0).standard_normal(1 << 16).astype(np.float32)


def _fill_from_pool(tensor, std: float, mean: float = 0.0):
    flat = tensor.data.reshape(-1)
    offset = int(engine.random.generator().integers(_POOL.size))
    pool = np.roll(_POOL, offset) * np.float32(std) + np.float32(mean)
    for i in range(0, flat.size, pool.size):
        n = min(pool.size, flat.size - i)
        flat[i:i + n] = pool[:n]
    return tensor


def _fast_kaiming(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    fan_in, fan_out = init.fan_in_and_fan_out(tensor)
    return _fill_from_pool(tensor, init.calculate_gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in"
                                                                                    else fan_out))


@pytest.fixture
def fast_init(monkeypatch):
    """Initializers with the right scale but no big random draws (a tiled pool of 65,536 normals)."""
    monkeypatch.setattr(init, "normal_", lambda t, mean=0.0, std=1.0: _fill_from_pool(t, std, mean))
    monkeypatch.setattr(init, "trunc_normal_", lambda t, mean=0.0, std=1.0, a=-2, b=2: _fill_from_pool(t, std, mean))
    monkeypatch.setattr(init, "uniform_", lambda t, a=0.0, b=1.0: _fill_from_pool(t, (b - a) / math.sqrt(12),
                                                                                  (a + b) / 2))
    monkeypatch.setattr(init, "kaiming_uniform_", _fast_kaiming)
    monkeypatch.setattr(init, "kaiming_normal_", _fast_kaiming)


def _kwargs(name: str) -> dict:
    return {"num_classes": 1000} if zm.spec(name).default_num_classes == 1000 else {}


def _abstract_input(*shape: int) -> engine.Tensor:
    """A shape-only tensor: under engine.abstract() models run shape rules, no kernels."""
    return engine.Tensor._make(None, engine.Spec(shape, np.dtype(np.float32)))


def _count(model: nn.Module, skip_prefixes: tuple[str, ...] = ()) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith(skip_prefixes))


# --- parameter counts -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_param_count_equals_torchvision(name, no_init):
    model = zm.get(name, **_kwargs(name))
    assert _count(model, ("aux1.", "aux2.")) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", sorted(OTHER_PARAMS))
def test_param_count_other_models(name, no_init):
    assert _count(zm.get(name)) == OTHER_PARAMS[name]


def test_param_count_per_layer_convnetjs():
    model = zm.get("convnetjs_cifar10")
    per_layer = [sum(p.numel() for p in m.parameters()) for m in (model.conv1, model.conv2, model.conv3, model.fc)]
    assert per_layer == [1216, 8020, 10020, 3210]


def test_param_count_xception_matches_keras(no_init):
    # Keras counts BatchNorm's moving mean and variance as (non-trainable) params; ours are buffers.
    model = zm.get("xception", num_classes=1000)
    trainable = _count(model)
    moving_stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert trainable == KERAS_XCEPTION_TRAINABLE
    assert trainable + moving_stats == KERAS_XCEPTION_PARAMS


def test_googlenet_aux_heads_and_switch(no_init):
    with_aux = zm.get("googlenet", num_classes=1000)
    without = zm.get("googlenet", num_classes=1000, aux_logits=False)
    assert _count(without) == TORCHVISION_PARAMS["googlenet"]
    head = 128 * 2 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000  # BN(128), fc1, fc2
    assert _count(with_aux) - _count(without) == 128 * 512 + 128 * 528 + 2 * head  # 1x1 convs on 512 / 528 channels


def test_num_classes_changes_only_the_head(no_init):
    a, b = zm.get("resnet50", num_classes=1000), zm.get("resnet50", num_classes=10)
    assert _count(a) - _count(b) == 990 * (2048 + 1)


def test_resnet_width_narrows_every_stage_and_keeps_the_layout(no_init):
    """width=8 is ResNet-18 at an eighth of the channels (the simulator tests use it): the same modules, every
    conv's channels divided by 8 (the stem's input channels stay 3)."""
    full, narrow = zm.get("resnet18"), zm.get("resnet18", width=8)
    convs = {n: m.weight.shape for n, m in full.named_modules() if isinstance(m, nn.Conv2d)}
    narrow_convs = {n: m.weight.shape for n, m in narrow.named_modules() if isinstance(m, nn.Conv2d)}
    assert narrow_convs.keys() == convs.keys()
    for n, (o, c, kh, kw) in convs.items():
        assert narrow_convs[n] == (o // 8, c if n == "conv1" else c // 8, kh, kw), n
    assert narrow.fc.weight.shape == (1000, 64)
    with pytest.raises(ValueError, match="ResNet: width .* must be a positive int, got 0"):
        zm.get("resnet18", width=0)


# --- forward on small inputs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", zm.list_models())
def test_forward_small_input(name, fast_init):
    engine.manual_seed(0)
    model = randomize_bn(zm.get(name, num_classes=7)).eval()  # so the compiled graph's BN folding is exercised
    x = engine.randn(2, *zm.small_input_size(name))
    with engine.no_grad():
        y = model(x)
    assert y.shape == (2, 7)
    assert np.isfinite(y.numpy()).all()
    # the compiled graph (BN folded, epilogues fused, one memory arena) computes the same function
    compiled = graph.compile(model, x)
    eager = y.numpy()
    got = np.asarray(compiled(x))
    assert np.abs(got - eager).max() <= 1e-4 * max(np.abs(eager).max(), 1e-6), name


@pytest.mark.parametrize("name", ["lenet5", "resnet18", "mobilenet_v2"])
def test_forward_default_input_size_shape_only(name, no_init):
    # abstract evaluation: shape rules only, so the full-size input costs nothing
    model = zm.get(name, num_classes=5).eval()
    with engine.abstract():
        y = model(_abstract_input(1, *zm.input_size(name)))
    assert y.shape == (1, 5)


@pytest.mark.parametrize("name, size", [("inception_v3", 299), ("xception", 299), ("alexnet_2012", 227),
                                        ("googlenet", 224), ("googlenet_2014", 224), ("efficientnet_b2", 260)])
def test_paper_input_sizes_shape_only(name, size, no_init):
    model = zm.get(name, num_classes=5)  # training mode: inception_v3's aux head needs the full 299x299
    with engine.abstract():
        out = model(_abstract_input(2, 3, size, size))
    outs = out if isinstance(out, tuple) else (out,)
    assert [o.shape for o in outs] == [(2, 5)] * len(outs)


# --- one training step ---------------------------------------------------------------------------------------
BACKWARD = [("lenet5", 28), ("convnetjs_cifar10", 32), ("resnet18", 32), ("googlenet", 64), ("densenet121", 32),
            ("mobilenet_v2", 32), ("efficientnet_b0", 32), ("xception", 71)]


# Every other model, built with fast_init (the real initializers would cost tens of seconds for the VGGs).
BACKWARD_MORE = [("alexnet_2012", 67), ("resnet50", 32), ("inception_v3", 75), ("resnet18_cifar", 32),
                 ("efficientnet_b2", 32), ("alexnet", 63), ("resnet34", 32), ("resnet101", 32), ("resnet152", 32),
                 ("densenet169", 32), ("densenet201", 32), ("googlenet_2014", 64)]
# VGGs: ~130M gradients each; one step per config still proves every layer of every variant trains.
BACKWARD_MORE += [(name, 32) for name in ("vgg11", "vgg11_lrn", "vgg13", "vgg16_c", "vgg16", "vgg19", "vgg11_bn",
                                          "vgg13_bn", "vgg16_c_bn", "vgg16_bn", "vgg19_bn")]


@pytest.mark.parametrize("name, size", BACKWARD)
def test_backward_every_parameter_gets_a_finite_grad(name, size):
    _check_backward(name, size)


@pytest.mark.parametrize("name, size", BACKWARD_MORE)
def test_backward_more_models(name, size, fast_init):
    _check_backward(name, size, **({"aux_logits": False} if name in ("inception_v3", "googlenet_2014") else {}))


def _check_backward(name: str, size: int, **kwargs) -> None:
    engine.manual_seed(0)
    model = zm.get(name, num_classes=5, **kwargs).train()
    channels = zm.small_input_size(name)[0]
    x = engine.randn(2, channels, size, size)
    target = engine.tensor(np.array([1, 3]))
    loss = zm.loss_with_aux(model(x), target)
    loss.backward()
    assert np.isfinite(loss.item())
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert p.grad.shape == p.shape
        assert np.isfinite(p.grad.numpy()).all(), f"{name}: {pname} has a non-finite gradient"


def test_googlenet_training_returns_aux_outputs_and_loss_weights_them(fast_init):
    engine.manual_seed(0)
    model = zm.get("googlenet", num_classes=4).train()
    x, target = engine.randn(2, 3, 32, 32), engine.tensor(np.array([0, 2]))
    out = model(x)
    assert isinstance(out, zm.GoogLeNetOutputs)
    assert [o.shape for o in out] == [(2, 4)] * 3
    expected = sum(w * F.cross_entropy(o, target).item() for w, o in zip((1.0, 0.3, 0.3), out))
    assert zm.loss_with_aux(out, target).item() == pytest.approx(expected, rel=1e-5)
    assert zm.main_logits(out) is out.logits
    with engine.no_grad():
        assert model.eval()(x).shape == (2, 4)  # eval mode: plain logits, aux heads skipped


def test_inception_v3_aux_head_needs_full_size_input(no_init):
    model = zm.get("inception_v3", num_classes=3).train()
    with engine.abstract(), pytest.raises(ValueError, match="aux_logits=False"):
        model(_abstract_input(1, 3, 75, 75))


def test_googlenet_2014_is_the_paper_network(no_init):
    """5x5 branches, LRN, conv biases and no BatchNorm (torchvision's googlenet differs in each); aux heads in
    training need the 224x224 grid and say so otherwise."""
    model = zm.get("googlenet_2014")
    kinds = {type(m).__name__ for m in model.modules()}
    assert "LocalResponseNorm" in kinds and not kinds & {"BatchNorm2d", "BatchNorm1d"}
    assert model.inception4a.branch3[1].conv.weight.shape == (48, 16, 5, 5)
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))
    with engine.abstract():
        out = model.train()(_abstract_input(1, 3, 224, 224))
        assert isinstance(out, zm.GoogLeNetOutputs) and [o.shape for o in out] == [(1, 1000)] * 3
        with pytest.raises(ValueError, match="after inception4a needs a 4x4 map .* got 2x2 from a 8x8 grid"):
            model(_abstract_input(1, 3, 128, 128))
        assert zm.get("googlenet_2014", aux_logits=False).train()(_abstract_input(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize("size", [6, 7, 8, 9])
def test_xception_max_pool_uses_keras_same_padding(size):
    # TensorFlow "same": ceil(size / 2) outputs; for even sizes the one padding row goes at the bottom/right
    x = np.random.default_rng(size).standard_normal((1, 2, size, size)).astype(np.float32)
    total = max((math.ceil(size / 2) - 1) * 2 + 3 - size, 0)
    padded = np.pad(x, ((0, 0), (0, 0), (total // 2, total - total // 2), (total // 2, total - total // 2)),
                    constant_values=-np.inf)
    out = math.ceil(size / 2)
    expected = np.array([[padded[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(2, 3)) for j in range(out)]
                         for i in range(out)]).transpose(2, 3, 0, 1)
    y = MaxPool2dSame(3, 2)(engine.tensor(x)).numpy()
    np.testing.assert_array_equal(y, expected)


# --- initialization (the real initializers) ------------------------------------------------------------------
def test_seeded_build_is_reproducible():
    engine.manual_seed(3)
    a = zm.get("lenet5").state_dict()
    engine.manual_seed(3)
    b = zm.get("lenet5").state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_resnet_init_follows_torchvision():
    engine.manual_seed(0)
    model = zm.get("resnet18", num_classes=10)
    w = model.layer3[0].conv1.weight.numpy()  # kaiming_normal(fan_out, relu): std sqrt(2 / (256 * 9))
    assert w.std() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.02)
    assert (model.layer3[0].bn1.weight.numpy() == 1).all() and (model.layer3[0].bn1.bias.numpy() == 0).all()
    zero = zm.get("resnet18", num_classes=10, zero_init_residual=True)
    assert (zero.layer1[0].bn2.weight.numpy() == 0).all()


def test_mobilenet_and_efficientnet_classifier_init():
    engine.manual_seed(0)
    w = zm.get("mobilenet_v2", num_classes=100).classifier[1].weight.numpy()
    assert w.std() == pytest.approx(0.01, rel=0.05)
    w = zm.get("efficientnet_b0", num_classes=100).classifier[1].weight.numpy()
    assert np.abs(w).max() <= 0.1 and w.std() == pytest.approx(0.1 / math.sqrt(3), rel=0.05)


# --- state_dict keys as torchvision names them ---------------------------------------------------------------
def _bn(prefix: str) -> list[str]:
    return [f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def _torchvision_resnet18_keys() -> list[str]:
    keys = ["conv1.weight", *_bn("bn1")]
    for layer, planes_changed in ((1, False), (2, True), (3, True), (4, True)):
        for block in (0, 1):
            p = f"layer{layer}.{block}"
            keys += [f"{p}.conv1.weight", *_bn(f"{p}.bn1"), f"{p}.conv2.weight", *_bn(f"{p}.bn2")]
            if block == 0 and planes_changed:
                keys += [f"{p}.downsample.0.weight", *_bn(f"{p}.downsample.1")]
    return keys + ["fc.weight", "fc.bias"]


def _torchvision_densenet121_keys() -> list[str]:
    keys = ["features.conv0.weight", *_bn("features.norm0")]
    for b, n in enumerate((6, 12, 24, 16), start=1):
        for i in range(1, n + 1):
            p = f"features.denseblock{b}.denselayer{i}"
            keys += [*_bn(f"{p}.norm1"), f"{p}.conv1.weight", *_bn(f"{p}.norm2"), f"{p}.conv2.weight"]
        if b < 4:
            keys += [*_bn(f"features.transition{b}.norm"), f"features.transition{b}.conv.weight"]
    return keys + [*_bn("features.norm5"), "classifier.weight", "classifier.bias"]


def test_state_dict_keys_resnet18(no_init):
    keys = list(zm.get("resnet18").state_dict())
    assert keys[:7] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                        "bn1.num_batches_tracked", "layer1.0.conv1.weight"]
    assert keys == _torchvision_resnet18_keys()
    assert len(keys) == 122


def test_state_dict_keys_densenet121(no_init):
    keys = list(zm.get("densenet121").state_dict())
    assert keys == _torchvision_densenet121_keys()
    assert "features.denseblock4.denselayer16.conv2.weight" in keys


@pytest.mark.parametrize("name, expected", [
    ("alexnet", ["features.0.weight", "features.10.bias", "classifier.1.weight", "classifier.4.weight",
                 "classifier.6.bias"]),
    ("vgg16", ["features.0.weight", "features.28.weight", "classifier.0.weight", "classifier.3.weight",
               "classifier.6.bias"]),
    ("vgg16_bn", ["features.1.running_var", "features.40.weight", "features.41.running_mean"]),
    ("googlenet_2014", ["conv1.conv.weight", "conv2.1.conv.bias", "inception3a.branch3.1.conv.weight",
                        "inception5b.branch4.1.conv.bias", "aux1.conv.conv.weight", "aux2.fc2.bias", "fc.weight"]),
    ("googlenet", ["conv1.conv.weight", "conv1.bn.running_mean", "inception3a.branch2.1.conv.weight",
                   "inception5b.branch4.1.bn.bias", "aux1.conv.conv.weight", "aux2.fc2.bias", "fc.weight"]),
    ("inception_v3", ["Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch5x5_2.bn.weight",
                      "Mixed_6e.branch7x7dbl_5.conv.weight", "AuxLogits.conv1.conv.weight", "AuxLogits.fc.bias",
                      "Mixed_7c.branch3x3dbl_3b.bn.running_var", "fc.bias"]),
    ("resnet50", ["layer1.0.conv3.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.running_mean"]),
    ("mobilenet_v2", ["features.0.0.weight", "features.0.1.running_mean", "features.1.conv.0.0.weight",
                      "features.1.conv.1.weight", "features.1.conv.2.bias", "features.2.conv.0.0.weight",
                      "features.2.conv.1.0.weight", "features.2.conv.3.running_var", "features.18.0.weight",
                      "classifier.1.weight"]),
    ("efficientnet_b0", ["features.0.0.weight", "features.1.0.block.0.0.weight", "features.1.0.block.1.fc1.weight",
                         "features.1.0.block.2.1.running_var", "features.2.0.block.0.0.weight",
                         "features.2.0.block.2.fc2.bias", "features.7.0.block.3.0.weight", "features.8.0.weight",
                         "classifier.1.weight"]),
    ("xception", ["conv1.weight", "bn2.running_var", "block1.skip.weight", "block1.skipbn.bias",
                  "block1.rep.0.conv1.weight", "block1.rep.0.pointwise.weight", "block4.rep.1.conv1.weight",
                  "block12.rep.4.pointwise.weight", "conv4.pointwise.weight", "bn4.weight", "fc.weight"]),
])
def test_state_dict_key_spot_checks(name, expected, no_init):
    keys = zm.get(name).state_dict()
    missing = [k for k in expected if k not in keys]
    assert not missing, f"{name}: keys not found: {missing}"


def test_state_dict_round_trip(fast_init):
    a, b = zm.get("resnet18_cifar"), zm.get("resnet18_cifar")
    b.load_state_dict(a.state_dict())
    x = engine.randn(1, 3, 32, 32)
    with engine.no_grad():
        assert np.array_equal(a.eval()(x).numpy(), b.eval()(x).numpy())


# --- registry -------------------------------------------------------------------------------------------------
def test_registry_lists_every_required_model():
    required = {"lenet5", "convnetjs_cifar10", "alexnet", "alexnet_2012", "vgg11", "vgg11_lrn", "vgg13", "vgg16_c",
                "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "googlenet", "inception_v3",
                "xception", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet18_cifar",
                "densenet121", "densenet169", "densenet201", "mobilenet_v2", "efficientnet_b0", "efficientnet_b2"}
    assert required <= set(zoo.list_models())
    assert zoo.list_models() == zm.list_models()


def test_registry_unknown_name_lists_available_models():
    with pytest.raises(KeyError, match="unknown model 'resnet19'.*resnet18.*densenet121"):
        zoo.get("resnet19")


def test_registry_input_sizes():
    assert zm.input_size("lenet5") == (1, 28, 28)
    assert zm.input_size("resnet50") == (3, 224, 224)
    assert zm.input_size("inception_v3") == (3, 299, 299)
    assert zm.small_input_size("resnet50") == (3, 32, 32)
    assert zm.spec("lenet5").default_num_classes == 10


def test_registry_passes_keyword_arguments(no_init):
    model = zoo.get("resnet18", num_classes=10, in_channels=1)
    assert model.fc.out_features == 10 and model.conv1.weight.shape == (64, 1, 7, 7)
    assert isinstance(zoo.get("resnet18_cifar").maxpool, nn.Identity)


def test_stochastic_depth_drops_whole_samples_in_training_only():
    from zoo.models.efficientnet import StochasticDepth

    layer, x = StochasticDepth(0.25), engine.ones(4000, 2, 1, 1)
    y = layer(x).numpy()
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert (y[:, 0] == y[:, 1]).all()  # one draw per sample ("row" mode)
    assert y.mean() == pytest.approx(1.0, abs=0.05)
    assert layer.eval()(x) is x
