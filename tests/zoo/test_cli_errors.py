"""The command line keeps work and speaks in one line (issue 13, section 3).

Every subcommand, given one bad input, exits non-zero with exactly one line on stderr, no traceback, and changes no
file; ``--debug`` shows the traceback. Training never overwrites a run: an existing run folder needs --resume or
--force, best.npz is replaced only by a better model, the folder appears only once the run starts and goes again
if nothing was written; Ctrl-C says where to continue and exits 130.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from engine import io
from zoo import training
from zoo.cli import main

from .test_data import write_folder
from .test_training import QUICK, TinyCNN, tiny  # noqa: F401  (tiny is a fixture)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``convgraph argv`` run in this process (argparse errors exit via SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``roots`` with its size and modification time."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                st = os.stat(os.path.join(dirpath, name))
                out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def files(tmp_path):
    """A folder with a corrupt checkpoint, a state file that is not a training checkpoint, an unreadable image and a
    run folder (a checkpoint file is enough for the refusal) -- the bad inputs of the walk below."""
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip file")
    (tmp_path / "corrupt.onnx").write_bytes(b"not a protobuf message")
    io.save({"w": np.zeros(3)}, tmp_path / "state.npz")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG but not really")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.npz").write_bytes(b"x")
    (tmp_path / "a-file").write_text("")
    return tmp_path


def bad_inputs(d: Path) -> dict[str, list[str]]:
    """One bad input per subcommand."""
    return {
        "demo": ["demo", "--epochs", "0"],
        "train": ["train", "lenet5", *QUICK, "--out", str(d / "run")],  # a run is there: needs --resume or --force
        "train-limit": ["train", "lenet5", *QUICK, "--limit-train", "-5", "--out", str(d / "new")],
        "train-lr": ["train", "lenet5", *QUICK, "--lr", "nan", "--out", str(d / "new")],
        "train-model": ["train", "nosuchnet", *QUICK, "--out", str(d / "new")],
        "train-out": ["train", "lenet5", *QUICK, "--out", str(d / "a-file" / "sub")],  # cannot be written
        "eval": ["eval", "lenet5", "--checkpoint", str(d / "corrupt.npz")],
        "predict": ["predict", "lenet5", "--checkpoint", str(d / "missing.npz"), "--image", str(d / "broken.png")],
        "predict-topk": ["predict", "lenet5", "--checkpoint", str(d / "state.npz"), "--image", "x.png", "--topk",
                         "0"],
        "inspect": ["inspect", "lenet5", "--checkpoint", str(d / "state.npz"), "--out", str(d / "insp")],
        "inspect-count": ["inspect", "lenet5", "--checkpoint", str(d / "state.npz"), "--count", "-1"],
        "models": ["models", "--params", "--num-classes", "0"],
        "compile": ["compile", "nosuchnet"],
        "summary": ["summary", "lenet5", "--depth", "0"],
        "summary-shape": ["summary", "lenet5", "--input-shape", "1,5,5"],
        "bottleneck": ["bottleneck", "resnet18", "--input-shape", "3,x,7"],
        "render": ["render", "lenet5", "--out", str(d / "no" / "such" / "folder" / "g.svg")],
        "bench": ["bench", "--repeats", "0"],
        "bench-model": ["bench", "--model", "lenet5"],  # --model takes an .onnx file
        "import": ["import", str(d / "missing.onnx"), "--out", str(d / "ck.npz")],
        "summary-onnx": ["summary", str(d / "corrupt.onnx")],
    }


def test_every_subcommand_reports_bad_input_in_one_line_and_changes_nothing(files, capsys, monkeypatch):
    from zoo.cli import COMMANDS

    monkeypatch.chdir(files)  # a default output folder (runs/...) would appear here
    cases = bad_inputs(files)
    covered = {argv[0] for argv in cases.values()}
    assert covered == {c.__name__.rsplit(".", 1)[-1].replace("evaluate", "eval").replace("import_onnx", "import")
                       for c in COMMANDS}
    before = snapshot(files)
    for name, argv in cases.items():
        code, _, err = run_cli(argv, capsys)
        lines = err.splitlines()
        assert code not in (0, None), (name, code, err)
        assert len(lines) == 1 and lines[0].startswith(f"convgraph {argv[0]}"), (name, err)
        assert "Traceback" not in err, name
        assert snapshot(files) == before, name


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(KeyError, match="unknown model 'nosuchnet'"):
        main(["compile", "nosuchnet", "--debug"])


def test_predict_skips_an_unreadable_file_and_inspect_checks_its_options_first(tiny, tmp_path, capsys):  # noqa: F811
    assert main(["train", "tiny", *QUICK, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    good = tmp_path / "bar.png"
    write_folder(tmp_path / "imgs", {"a": 1}, "x")
    os.replace(next((tmp_path / "imgs" / "x" / "a").iterdir()), good)
    (tmp_path / "broken.png").write_bytes(b"garbage")
    capsys.readouterr()
    code, out, err = run_cli(["predict", "tiny", "--checkpoint", str(tmp_path / "run" / "checkpoint.npz"),
                              "--image", str(tmp_path / "broken.png"), str(good)], capsys)
    assert code == 1 and out.startswith(f"{good}:") and len(out.splitlines()) == 4
    assert err.count("\n") == 1 and "broken.png" in err and "skipped" in err
    # inspect checks --layer and --unit before it writes anything
    for bad, said in ((["--unit", "99"], "--unit 99 out of range: conv1 has 8 channels"),
                      (["--layer", "nope"], "--layer 'nope'")):
        code, _, err = run_cli(["inspect", "tiny", "--checkpoint", str(tmp_path / "run" / "checkpoint.npz"),
                                "--image", str(good), "--out", str(tmp_path / "insp"), *bad], capsys)
        assert code == 2 and said in err and not (tmp_path / "insp").exists()


# --- run folders --------------------------------------------------------------------------------------------------
def test_a_run_is_continued_or_forced_never_overwritten_and_best_npz_only_improves(tiny, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    args = ["train", "tiny", *QUICK, "--epochs", "1", "--out", str(out)]
    assert main([*args, "--lr", "3e-3"]) == 0
    best = (out / "best.npz").read_bytes()
    trained_acc = json.loads((out / "metrics.json").read_text())["epochs"][0]["val_acc"]
    capsys.readouterr()
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "already holds a run" in err and (out / "best.npz").read_bytes() == best
    # --force starts over; with a learning rate this small the new model is worse, so best.npz stays
    code, stdout, _ = run_cli([*args, "--force", "--lr", "1e-9"], capsys)
    m = json.loads((out / "metrics.json").read_text())
    assert code == 0 and m["epochs"][0]["val_acc"] < trained_acc and "best.npz" in stdout
    assert (out / "best.npz").read_bytes() == best


def test_resume_names_what_differs_and_records_an_lr_override(tiny, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    assert main(["train", "tiny", *QUICK, "--epochs", "2", "--stop-after", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    ck = (out / "checkpoint.npz").read_bytes()
    code, _, err = run_cli(["train", "tiny", "--resume", "--out", str(out), "--optimizer", "sgd"], capsys)
    assert code == 2 and "optimizer 'sgd' (checkpoint: 'adam')" in err and (out / "checkpoint.npz").read_bytes() == ck
    # the options left out come from the checkpoint; a new --lr is an override, recorded
    assert main(["train", "tiny", "--resume", "--out", str(out), "--lr", "0.01", "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert [e["lr"] for e in m["epochs"]] == [1e-3, 0.01] and m["config"]["dataset"] == "bars"
    assert any("--lr 0.01 overrides the checkpoint's 0.001 from epoch 2" in n for n in m["notes"])


def test_ctrl_c_says_where_to_continue_and_exits_130(tiny, tmp_path, capsys, monkeypatch):  # noqa: F811
    real = training.train_one_epoch

    def interrupted_in(epoch_to_stop: int):
        def one_epoch(model, loader, step, epoch, *a, **k):
            if epoch == epoch_to_stop:
                raise KeyboardInterrupt
            return real(model, loader, step, epoch, *a, **k)
        return one_epoch

    monkeypatch.setattr(training, "train_one_epoch", interrupted_in(2))
    code, _, err = run_cli(["train", "tiny", *QUICK, "--epochs", "3", "--out", str(tmp_path / "a")], capsys)
    assert code == 130 and err == "convgraph train: interrupted after epoch 1; continue with --resume\n"
    assert io.load_checkpoint(tmp_path / "a" / "checkpoint.npz", restore_rng=False)["epoch"] == 1
    monkeypatch.setattr(training, "train_one_epoch", interrupted_in(1))
    code, _, err = run_cli(["train", "tiny", *QUICK, "--out", str(tmp_path / "b" / "c")], capsys)
    assert code == 130 and "nothing was saved" in err
    assert not (tmp_path / "b").exists()  # the folders the run created are gone again


def test_image_folders_take_an_image_size_and_mismatched_sizes_are_a_clear_error(tmp_path, capsys):
    from PIL import Image

    data = tmp_path / "data"
    write_folder(data, {"a": 12, "b": 12}, "train")
    write_folder(data, {"a": 4, "b": 4}, "test", seed=3)
    for f in data.rglob("*.png"):
        Image.open(f).resize((20, 20)).save(f)
    args = ["train", "lenet5", "--dataset", "folder", "--data-dir", str(data), "--epochs", "1", "--batch-size", "8",
            "--no-progress", "--no-plots", "--out", str(tmp_path / "run")]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "20x20" in err and "--image-size" in err and not (tmp_path / "run").exists()
    assert main([*args, "--image-size", "28", "28"]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["dataset"]["size"] == [28, 28]


def test_sixteen_bit_pngs_are_scaled_not_saturated(tmp_path):
    from PIL import Image

    from engine.data import load_image

    a = (np.arange(16).reshape(4, 4) * 4369).astype(np.uint16)  # 0 .. 65535
    Image.fromarray(a).save(tmp_path / "deep.png")
    got = load_image(tmp_path / "deep.png", channels=1)[0]
    np.testing.assert_array_equal(got, np.arange(16).reshape(4, 4) * 17)  # 65535 / 255 = 257 = 4369 / 17


def test_progress_is_one_line_per_epoch_when_not_a_terminal(tiny, tmp_path, capfd):  # noqa: F811
    assert main(["train", "tiny", "--dataset", "bars", "--limit-train", "192", "--batch-size", "16", "--no-plots",
                 "--epochs", "2", "--out", str(tmp_path)]) == 0
    out, err = capfd.readouterr()
    assert err == "" and sum(line.startswith("epoch ") for line in out.splitlines()) == 2


def test_eager_training_stays_available_and_matches_compiled(tiny, tmp_path):  # noqa: F811
    args = ["train", "tiny", *QUICK, "--epochs", "1", "--seed", "5"]
    assert main([*args, "--out", str(tmp_path / "compiled")]) == 0
    assert main([*args, "--out", str(tmp_path / "eager"), "--eager"]) == 0
    got = {k: v for k, v in io.load_checkpoint(tmp_path / "compiled" / "checkpoint.npz", restore_rng=False)
           ["model"].items()}
    want = io.load_checkpoint(tmp_path / "eager" / "checkpoint.npz", restore_rng=False)["model"]
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=1e-4, atol=1e-5, err_msg=k)
    m = json.loads((tmp_path / "eager" / "metrics.json").read_text())
    assert {"forward", "backward", "step"} <= set(m["epochs"][0]["time_ms_per_step"])
    assert "compile_step" not in " ".join(m["notes"])


def test_train_passes_the_memory_budget_to_compile_step(tiny, tmp_path, monkeypatch):  # noqa: F811
    import graph

    seen = []
    real = graph.compile_step
    monkeypatch.setattr(graph, "compile_step", lambda *a, **k: (seen.append(k["memory_budget"]), real(*a, **k))[1])
    assert main(["train", "tiny", *QUICK, "--epochs", "2", "--limit-train", "200", "--memory-budget", "1",
                 "--out", str(tmp_path)]) == 0
    # 200 images = 6 x 32 + 8: the last, smaller batch compiles once, one step graph per batch shape, not one per
    # change of shape (4 in two epochs)
    assert seen == [1.0, 1.0]


def test_render_train_draws_the_training_step(tmp_path, capsys):
    assert main(["render", "lenet5", "--train", "--out", str(tmp_path / "step.dot")]) == 0
    dot = (tmp_path / "step.dot").read_text()
    assert "conv2d_weight_grad" in dot and "optimizer_update" in dot


def test_cold_kernel_cache_is_announced_and_timed(tmp_path, monkeypatch, capsys):
    from zoo import kernel_cache

    counts = iter([0, 7])
    monkeypatch.setattr(kernel_cache, "cached_kernels", lambda: next(counts))
    with kernel_cache.KernelWatch("numba", "lenet5") as w:
        pass
    assert "compiling numba kernels for lenet5" in capsys.readouterr().err
    assert w.compiled == 7 and "JIT-compiling 7 numba kernel signatures" in str(w)
