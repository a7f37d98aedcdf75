"""Zoo models end to end on the cuda backend (numba's simulator, or a GPU with CONVGRAPH_TEST_CUDA=1), against the
numpy backend: compiled inference of ResNet-18 and MobileNetV2 (depthwise convolutions), eager training of a small
CNN (conv, BatchNorm, ReLU, max-pool, dropout, linear) with SGD-momentum on `model.to("cuda")`, Adam steps of it as
a compile_step training graph on cuda, and `convgraph train lenet5 --device cuda`.

The simulator runs about half a million multiply-adds a second, so the ImageNet models run narrowed (ResNet-18 at
width 8 instead of 64: the same 18 layers, strides, projections and residual adds; MobileNetV2 at width 0.25) on
16x16 inputs, the training checks use a CNN on 8x8 images (the layers LeNet-5 has, plus BatchNorm), and the CLI
trains LeNet-5 on two images (in the simulator only with CONVGRAPH_TEST_ALL_MODELS=1: ~100 s). Full-width
ResNet-18 at 1x3x16x16 also matches (max difference 1.6e-7), but takes ~3 minutes here."""

from __future__ import annotations

import os

import numpy as np
import pytest

import engine
import engine.functional as F
import graph
import zoo.models as zm
from backends.cuda import tiling
from backends.cuda.tiling import Tile
from engine import Tensor, nn, optim
from tests.cuda.small_tiles import use_small_tiles
from tests.null.graph_models import randomize_bn

if "cuda" not in engine.available_backends():
    pytest.skip("needs a GPU or NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)


# one thread per block with many accumulators: the simulator pays per thread and per barrier, so whole models run
# ~5x faster than with the kernel tests' many-thread small tiles (the same kernels; the tiles are parameters)
FAST_TILE = Tile(16, 16, 8, 16, 16)


@pytest.fixture(autouse=True)
def _fast_tiles(monkeypatch):
    use_small_tiles(monkeypatch)
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        monkeypatch.setattr(tiling, "TILES", {"float32": {"128x128": FAST_TILE, "64x64": FAST_TILE},
                                              "float64": {"64x64": FAST_TILE}})


@pytest.mark.parametrize("name, kwargs", [("resnet18", {"width": 8}), ("mobilenet_v2", {"width_mult": 0.25})],
                         ids=["resnet18", "mobilenet_v2"])
def test_compiled_zoo_model_on_cuda_equals_numpy(name, kwargs):
    rng = np.random.default_rng(0)
    model = zm.get(name, num_classes=10, **kwargs).eval()
    randomize_bn(model)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    ref = model(Tensor(x)).numpy()  # eager, numpy backend (the autouse fixture)
    assert np.abs(ref).max() > 0.1  # a test of something: the logits are not all ~0
    cm = graph.compile(model, x, backend="cuda")
    assert cm.report["backend"] == "cuda" and cm.report["transfer"]["h2d_bytes"] == x.nbytes
    out = cm(Tensor(x))  # host in, host out
    assert out.device == "cpu"
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-5)
    on_device = cm(Tensor(x).to("cuda"))  # device in, device out
    assert on_device.device == "cuda"
    np.testing.assert_allclose(on_device.numpy(), ref, rtol=1e-4, atol=1e-5)


def _lenet(seed: int = 0):
    engine.manual_seed(seed)
    return zm.get("lenet5")


def _small_cnn(seed: int = 0) -> nn.Module:
    engine.manual_seed(seed)
    # no bias before BatchNorm: its gradient is rounding noise, which Adam scales up to full-size steps
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Dropout(0.3), nn.Linear(24, 10))


def _batch(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, n)


def _eager_steps(model, make_opt, x, y, steps: int) -> list[float]:
    opt = make_opt(model.parameters())
    xt, yt = Tensor(x), Tensor(y)
    if next(iter(model.parameters())).device == "cuda":
        xt, yt = xt.to("cuda"), yt.to("cuda")
    losses = []
    engine.manual_seed(5)  # the dropout masks: the same generator on every backend
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _weights(model) -> dict[str, np.ndarray]:
    return {k: np.asarray(v.numpy()) for k, v in model.state_dict().items()}


def _assert_same(model, ref, losses, ref_losses):
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    w, w_ref = _weights(model), _weights(ref)
    for k in w_ref:
        np.testing.assert_allclose(w[k], w_ref[k], rtol=1e-4, atol=1e-6, err_msg=k)


def _sgd(params):
    return optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3)


def _adam(params):
    return optim.Adam(params, lr=1e-3)


def test_eager_training_on_cuda_equals_numpy():
    """Two SGD-momentum steps (the second one uses the momentum buffer) of `model.to("cuda")`, op by op."""
    x, y = _batch(2)
    ref = _small_cnn()
    ref_losses = _eager_steps(ref, _sgd, x, y, steps=2)
    model = _small_cnn().to("cuda")
    assert all(p.device == "cuda" for p in model.parameters())
    losses = _eager_steps(model, _sgd, x, y, steps=2)
    assert all(p.device == "cuda" and p.grad.device == "cuda" for p in model.parameters())
    assert ref_losses[1] < ref_losses[0]  # the steps did something
    _assert_same(model, ref, losses, ref_losses)


def test_compile_step_on_cuda_equals_eager():
    """Two Adam steps as one compiled training graph on cuda equal two eager Adam steps on numpy."""
    x, y = _batch(2)
    ref = _small_cnn()
    ref_losses = _eager_steps(ref, _adam, x, y, steps=2)
    model = _small_cnn().to("cuda")
    opt = _adam(model.parameters())
    step = graph.compile_step(model, F.cross_entropy, opt, x, y, backend="cuda")
    engine.manual_seed(5)
    xd, yd = Tensor(x).to("cuda"), Tensor(y).to("cuda")
    losses = [step(xd, yd).item() for _ in range(2)]
    assert all(p.device == "cuda" for p in model.parameters())
    _assert_same(model, ref, losses, ref_losses)


# ~100 s in the simulator (a thread per CUDA thread, every kernel of a whole train/validate/test run), so on CI
# the CLI's device path is held by tests/zoo/test_device_cli.py (a fake device, trained == numpy) and this runs on a
# GPU (CONVGRAPH_TEST_CUDA=1) or by hand
@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
                    and os.environ.get("CONVGRAPH_TEST_ALL_MODELS") != "1",
                    reason="LeNet-5 CLI training in the simulator takes ~100 s: CONVGRAPH_TEST_ALL_MODELS=1 runs it")
def test_cli_train_lenet5_on_cuda(tmp_path):
    """`convgraph train lenet5 --device cuda --epochs 1` on two images (one compiled training step), validated
    on one and tested on two: the run trains on the device and writes its checkpoint and metrics."""
    import json

    from engine import io
    from zoo.cli import main

    args = ["train", "lenet5", "--dataset", "bars", "--epochs", "1", "--limit-train", "2", "--batch-size", "2",
            "--limit-test", "2", "--no-progress", "--no-plots", "--device", "cuda", "--out", str(tmp_path)]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["backend"] == "cuda" and "tensors live on cuda" in metrics["notes"]
    assert np.isfinite(metrics["epochs"][0]["train_loss"]) and metrics["test"]["n"] == 2
    state = io.load_checkpoint(tmp_path / "checkpoint.npz", restore_rng=False)["model"]
    init = _lenet().state_dict()  # --seed 0 builds the same initial weights: the step changed them
    assert not np.array_equal(np.asarray(state["fc2.weight"].numpy()), init["fc2.weight"].numpy())
