"""``--device`` on the command line, and zoo training on a device: without a GPU (and without the simulator)
``--device cuda`` / ``--backend cuda`` is one line on stderr; a training run on the fake device backend
(tests/null/fake_device.py) equals the same run on the numpy backend."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine import io
from tests.null.fake_device import DEVICE, fake_backend
from zoo import training

from .test_cli_errors import run_cli
from .test_training import QUICK, tiny  # noqa: F401  (tiny is a fixture)

no_cuda = pytest.mark.skipif("cuda" in engine.available_backends(), reason="a GPU or the simulator is present")


@no_cuda
@pytest.mark.parametrize("argv", [["train", "tiny", *QUICK, "--epochs", "1", "--device", "cuda"],
                                  ["train", "tiny", *QUICK, "--epochs", "1", "--backend", "cuda"],
                                  ["compile", "lenet5", "--device", "cuda"],
                                  ["bench", "--smoke", "--device", "cuda", "--workloads", "lenet"],
                                  ["bench", "--smoke", "--impls", "cuda-compiled", "--workloads", "lenet"]],
                         ids=["train-device", "train-backend", "compile", "bench", "bench-impls"])
def test_cuda_without_a_gpu_is_one_line(argv, tmp_path, capsys, tiny):  # noqa: F811
    code, _, err = run_cli([*argv, "--out", str(tmp_path / "run")] if argv[0] == "train" else argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "cuda" in err and "NUMBA_ENABLE_CUDASIM" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_device_and_backend_must_agree(tmp_path, capsys, tiny):  # noqa: F811
    code, _, err = run_cli(["train", "tiny", *QUICK, "--device", "cuda", "--backend", "numpy",
                            "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "--device cuda and --backend numpy disagree" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "compile_step"])
def test_training_on_a_device_equals_numpy(tiny, tmp_path, eager):  # noqa: F811
    fake_backend()
    runs = {}
    for backend in ("numpy", DEVICE):
        cfg = training.TrainConfig(model="tiny", dataset="bars", epochs=1, batch_size=32, limit_train=96, lr=3e-3,
                                   backend=backend,
                                   eager=eager, compile=True, out=str(tmp_path / backend), progress=False,
                                   plots=False)
        metrics = training.train(cfg)
        state = io.load_checkpoint(tmp_path / backend / "checkpoint.npz", restore_rng=False)
        runs[backend] = metrics, {k: np.asarray(v.numpy()) for k, v in state["model"].items()}
    (m_ref, w_ref), (m_dev, w_dev) = runs["numpy"], runs[DEVICE]
    assert f"tensors live on {DEVICE}" in m_dev["notes"] and not any("tensors live" in n for n in m_ref["notes"])
    for k in w_ref:
        np.testing.assert_allclose(w_dev[k], w_ref[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert m_dev["test"]["acc"] == pytest.approx(m_ref["test"]["acc"], abs=0.02)
    assert m_dev["epochs"][0]["train_loss"] == pytest.approx(m_ref["epochs"][0]["train_loss"], rel=1e-4)


def test_predict_runs_where_the_model_lives():
    from zoo.cli.predict import predict
    from zoo.datasets import DatasetInfo

    from .test_training import TinyCNN

    fake_backend()
    model = TinyCNN(num_classes=3).eval()
    info = DatasetInfo("x", 1, (28, 28), ["a", "b", "c"], [0.5], [0.5])
    images = (np.random.default_rng(0).random((2, 1, 28, 28)) * 255).astype(np.uint8)
    with engine.use_backend("numpy"):
        ref = predict(model, info, images)
        model.to(DEVICE)
        assert training.model_device(model) == DEVICE
        assert predict(model, info, images) == ref
