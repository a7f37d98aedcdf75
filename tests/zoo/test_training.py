"""zoo.training and the train/eval/predict/inspect commands, end to end through zoo.cli.main on small
synthetic data (oriented bars): outputs, bit-for-bit reproducibility, resume == uninterrupted, random features,
fine-tuning, and the issue-2 acceptance (a small CNN learns oriented bars to >= 95%)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import engine.functional as F
import engine.nn as nn
import graph
from engine import io
from zoo import training
from zoo.cli import main

from .test_data import write_folder


class TinyCNN(nn.Module):
    """conv(8@5) pool conv(16@5) pool dropout fc: a fast stand-in for zoo models in these tests."""

    def __init__(self, num_classes: int = 4, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 5)
        self.conv2 = nn.Conv2d(8, 16, 5)
        self.dropout = nn.Dropout(0.25)
        self.fc = nn.Linear(16 * 4 * 4, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(self.dropout(F.flatten(x, 1)))


@pytest.fixture
def tiny(monkeypatch):
    """Make the model name 'tiny' resolve to TinyCNN (every other name goes to the real zoo)."""
    real = training.zoo_get
    monkeypatch.setattr(training, "zoo_get", lambda name, **kw: TinyCNN(**kw) if name == "tiny" else real(name, **kw))


def weights(path) -> dict[str, np.ndarray]:
    return {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v)
            for k, v in io.load_checkpoint(path, restore_rng=False)["model"].items()}


QUICK = ["--dataset", "bars", "--limit-train", "192", "--batch-size", "32", "--no-progress", "--no-plots"]


def test_cli_train_eval_predict_inspect_on_an_image_folder(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "run"
    write_folder(data, {"flat": 40, "diag": 40, "upright": 40}, "train")
    write_folder(data, {"flat": 8, "diag": 8, "upright": 8}, "test", seed=5)
    assert main(["train", "lenet5", "--dataset", "folder", "--data-dir", str(data), "--epochs", "1",
                 "--batch-size", "32", "--val-size", "12", "--out", str(out), "--seed", "1"]) == 0
    for f in ("checkpoint.npz", "best.npz", "metrics.json", "curves.png", "confusion.png"):
        assert (out / f).is_file(), f
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"]["classes"] == ["diag", "flat", "upright"] and len(m["epochs"]) == 1
    assert 0 <= m["test"]["acc"] <= 1 and m["test"]["n"] == 24
    assert {"data", "step"} <= set(m["epochs"][0]["time_ms_per_step"])  # compiled: one graph per step
    assert m["epochs"][0]["images_per_s"] > 0
    capsys.readouterr()

    # the checkpoint remembers where its data came from: no --data-dir needed
    assert main(["eval", "lenet5", "--checkpoint", str(out / "checkpoint.npz")]) == 0
    assert f"accuracy {100 * m['test']['acc']:.2f}%" in capsys.readouterr().out

    img = next((data / "test" / "flat").iterdir())
    assert main(["predict", "lenet5", "--checkpoint", str(out / "checkpoint.npz"), "--image", str(img)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(":") and [ln.split()[0] for ln in lines[1:4]] == ["1.", "2.", "3."]
    probs = [float(ln.split()[-1].rstrip("%")) for ln in lines[1:4]]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 100) < 0.1  # 3 classes: all of them

    assert main(["inspect", "lenet5", "--checkpoint", str(out / "checkpoint.npz"), "--data-dir", str(data),
                 "--out", str(tmp_path / "insp"), "--layer", "conv2", "--unit", "3", "--count", "4"]) == 0
    for f in ("filters.png", "feature_maps.png", "saliency.png", "top_activations.png"):
        assert (tmp_path / "insp" / f).stat().st_size > 1000, f


def test_seeded_runs_are_bit_for_bit_reproducible(tiny, tmp_path):
    args = ["train", "tiny", *QUICK, "--epochs", "1", "--augment", "--seed", "7"]
    main([*args, "--out", str(tmp_path / "a")])
    main([*args, "--out", str(tmp_path / "b")])
    a, b = weights(tmp_path / "a" / "checkpoint.npz"), weights(tmp_path / "b" / "checkpoint.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    main([*args[:-1], "8", "--out", str(tmp_path / "c")])
    assert not np.array_equal(a["conv1.weight"], weights(tmp_path / "c" / "checkpoint.npz")["conv1.weight"])


@pytest.mark.parametrize("optimizer,scheduler", [("adam", "step"), ("sgd", "plateau")])
def test_resume_after_epoch_1_equals_an_uninterrupted_run(tiny, tmp_path, optimizer, scheduler):
    args = ["train", "tiny", *QUICK, "--epochs", "2", "--augment", "--optimizer", optimizer,
            "--scheduler", scheduler, "--lr", "0.01"]
    main([*args, "--out", str(tmp_path / "full")])
    main([*args, "--out", str(tmp_path / "res"), "--stop-after", "1"])
    assert io.load_checkpoint(tmp_path / "res" / "checkpoint.npz", restore_rng=False)["epoch"] == 1
    main([*args, "--out", str(tmp_path / "res"), "--resume"])
    full, res = weights(tmp_path / "full" / "checkpoint.npz"), weights(tmp_path / "res" / "checkpoint.npz")
    for k in full:
        np.testing.assert_array_equal(full[k], res[k], err_msg=k)
    mf = json.loads((tmp_path / "full" / "metrics.json").read_text())
    mr = json.loads((tmp_path / "res" / "metrics.json").read_text())
    assert [e["train_loss"] for e in mf["epochs"]] == [e["train_loss"] for e in mr["epochs"]]
    assert mf["test"]["acc"] == mr["test"]["acc"]


def test_resume_without_a_checkpoint_is_an_error(tiny, tmp_path, capsys):
    assert main(["train", "tiny", *QUICK, "--out", str(tmp_path), "--resume"]) == 2
    assert "--resume: no checkpoint" in capsys.readouterr().err


def test_small_cnn_learns_oriented_bars(tiny, tmp_path):
    """Issue 2 acceptance: a small CNN trained with this engine reaches >= 95% on a synthetic task."""
    cfg = training.TrainConfig(model="tiny", dataset="bars", epochs=2, batch_size=32, lr=3e-3, limit_train=1500,
                               out=str(tmp_path), progress=False, plots=False)
    metrics = training.train(cfg)
    assert metrics["test"]["acc"] >= 0.95, metrics["test"]["acc"]


def test_train_last_only_keeps_conv_filters_random(tiny, tmp_path, monkeypatch):
    init = {}
    real = training.build_model

    def build_and_keep(*a):  # the seeded initial weights
        model = real(*a)
        init.update({k: v.numpy().copy() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(training, "build_model", build_and_keep)
    main(["train", "tiny", *QUICK, "--epochs", "1", "--seed", "3", "--out", str(tmp_path / "rf"), "--train-last-only"])
    rf = weights(tmp_path / "rf" / "checkpoint.npz")
    for k in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
        np.testing.assert_array_equal(rf[k], init[k], err_msg=k)
    assert not np.array_equal(rf["fc.weight"], init["fc.weight"])
    m = json.loads((tmp_path / "rf" / "metrics.json").read_text())
    assert m["trainable_parameters"] == 16 * 16 * 4 + 4 < m["parameters"]


def test_finetune_replaces_the_head_and_can_freeze_the_body(tiny, tmp_path, capsys):
    main(["train", "tiny", *QUICK, "--epochs", "1", "--out", str(tmp_path / "src")])
    src = weights(tmp_path / "src" / "checkpoint.npz")
    data = tmp_path / "data"
    write_folder(data, {"a": 20, "b": 20, "c": 20}, "train")
    write_folder(data, {"a": 4, "b": 4, "c": 4}, "test", seed=2)
    ft = ["train", "tiny", "--dataset", "folder", "--data-dir", str(data), "--epochs", "1", "--batch-size", "16",
          "--no-progress", "--no-plots", "--finetune", str(tmp_path / "src" / "checkpoint.npz")]
    main([*ft, "--freeze-body", "--out", str(tmp_path / "frozen")])
    assert "new head fc.weight, fc.bias" in capsys.readouterr().out
    frozen = weights(tmp_path / "frozen" / "checkpoint.npz")
    assert frozen["fc.weight"].shape == (3, 256)
    for k in ("conv1.weight", "conv2.weight", "conv2.bias"):
        np.testing.assert_array_equal(frozen[k], src[k], err_msg=k)
    main([*ft, "--out", str(tmp_path / "all")])
    assert not np.array_equal(weights(tmp_path / "all" / "checkpoint.npz")["conv1.weight"], src["conv1.weight"])
    assert main(["train", "tiny", *QUICK, "--freeze-body"]) == 2
    assert "--freeze-body needs --finetune" in capsys.readouterr().err


def test_compile_flag_evaluates_through_graph_compile_with_eager_results(tiny, tmp_path, capsys, monkeypatch):
    calls = []
    real_call = graph.CompiledModule.__call__
    monkeypatch.setattr(graph.CompiledModule, "__call__", lambda cm, *a: (calls.append(cm), real_call(cm, *a))[1])
    args = ["train", "tiny", *QUICK, "--epochs", "1", "--limit-train", "64"]
    main([*args, "--out", str(tmp_path / "eager")])
    assert not calls
    main([*args, "--out", str(tmp_path / "compiled"), "--compile"])
    assert "through graph.compile() on numpy" in capsys.readouterr().out
    assert calls and {cm.backend.name for cm in calls} == {"numpy"}  # validation and test ran compiled
    eager = json.loads((tmp_path / "eager" / "metrics.json").read_text())["test"]
    compiled = json.loads((tmp_path / "compiled" / "metrics.json").read_text())["test"]
    assert compiled["acc"] == eager["acc"]
    assert abs(compiled["loss"] - eager["loss"]) < 1e-4


def test_compile_flag_fails_loudly_when_compilation_fails(tiny, tmp_path, monkeypatch):
    def broken(cm, *args):
        raise NotImplementedError("backend 'numpy' has no kernel for primitive 'conv2d'")

    monkeypatch.setattr(graph.CompiledModule, "__call__", broken)
    with pytest.raises(NotImplementedError, match="no kernel for primitive"):
        main(["train", "tiny", *QUICK, "--epochs", "1", "--limit-train", "64", "--out", str(tmp_path), "--compile"])


@pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Fashion-MNIST not installed (dataset-fashion-mnist)")
def test_demo_command_runs_on_fashion_mnist(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--epochs", "1", "--limit-train", "256", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "LeNet-5 Fashion-MNIST test accuracy:" in out and "after 1 epochs" in out
    for f in ("checkpoint.npz", "curves.png", "confusion.png", "metrics.json"):
        assert (tmp_path / f).is_file(), f
    if shutil.which("dot"):  # `make demo` installs graphviz: then the diagram is part of the demo
        assert f"model diagram: {tmp_path / 'model.svg'}" in out
        assert "<svg" in (tmp_path / "model.svg").read_text()
    else:
        assert "note: model diagram skipped" in out and not (tmp_path / "model.svg").exists()


def test_numba_training_runs_repeat_bit_for_bit_with_deterministic_algorithms(tiny, tmp_path, monkeypatch):
    """Measured conv choices depend on timing (and algorithms round differently), so training switches on
    engine.use_deterministic_algorithms unless CONVGRAPH_CONV_ALGO is set: even under the "measure" policy the
    heuristic runs; the switch is restored afterwards."""
    import engine
    from backends.numba.conv import drivers, select

    monkeypatch.delenv("CONVGRAPH_CONV_ALGO", raising=False)
    seen = []
    real_choose = drivers.choose
    monkeypatch.setattr(drivers, "choose", lambda *a, **k: (seen.append(select.conv_policy()), real_choose(*a, **k))[1])
    args = ["train", "tiny", *QUICK, "--epochs", "1", "--seed", "3", "--backend", "numba"]
    prev = select.set_conv_policy("measure")
    try:
        main([*args, "--out", str(tmp_path / "a")])
        main([*args, "--out", str(tmp_path / "b")])
    finally:
        select.set_conv_policy(prev)
    assert seen and set(seen) == {"heuristic"} and not engine.are_deterministic_algorithms_enabled()
    a, b = weights(tmp_path / "a" / "checkpoint.npz"), weights(tmp_path / "b" / "checkpoint.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)
