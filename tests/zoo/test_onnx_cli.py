"""The graph commands take an .onnx file wherever they take a zoo model name, ``convgraph import`` saves an
imported model's parameters as a checkpoint, and ``convgraph bench --model FILE.onnx`` times it against
onnxruntime (issue 15, CLI and benchmark hooks). The reference is the zoo model the file was exported from."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")

import onnx  # noqa: E402

import engine  # noqa: E402
import graph.onnx as gx  # noqa: E402
from engine import io  # noqa: E402
from zoo import models  # noqa: E402

from .test_cli_errors import run_cli  # noqa: E402

SHAPE = (1, 1, 28, 28)


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """(zoo LeNet-5 in eval mode, path of its export, folder for variants)."""
    engine.manual_seed(0)
    model = models.get("lenet5")
    model.eval()
    folder = tmp_path_factory.mktemp("onnx_cli")
    path = folder / "lenet5.onnx"
    gx.export(model, np.zeros(SHAPE, np.float32), path)
    return model, path, folder


def _with_dims(src, dst, names: dict[int, str]):
    """A copy of ``src`` whose input dims at the given positions are symbolic (dim_param)."""
    m = onnx.load(src)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for i, name in names.items():
        dims[i].ClearField("dim_value")
        dims[i].dim_param = name
    onnx.save(m, dst)
    return dst


def test_summary_of_onnx_file_matches_zoo_model(lenet, capsys):
    model, path, _ = lenet
    code, out, err = run_cli(["summary", str(path), "--json"], capsys)
    assert code == 0, err
    s = json.loads(out)
    assert s["total_params"] == sum(p.data.size for p in model.parameters()) == 431_080
    assert s["input_shape"] == list(SHAPE)
    assert [r["name"] for r in s["rows"] if r["params"]] == ["conv1", "conv2", "fc1", "fc2"]


def test_symbolic_batch_defaults_to_one_other_symbolic_dims_need_input_shape(lenet, capsys):
    _, path, folder = lenet
    batch = _with_dims(path, folder / "batch.onnx", {0: "N"})
    code, out, err = run_cli(["summary", str(batch), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["input_shape"] == [1, 1, 28, 28]

    spatial = _with_dims(path, folder / "spatial.onnx", {0: "N", 2: "H"})
    code, out, err = run_cli(["summary", str(spatial)], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "symbolic dims (?x1x?x28) beyond the batch; give --input-shape" in err

    # a 3-D --input-shape gets batch 1 (the export baked batch 1 into its Reshape, so 1 is what this file takes)
    code, out, err = run_cli(["summary", str(spatial), "--json", "--input-shape", "1,28,28"], capsys)
    assert code == 0, err
    assert json.loads(out)["input_shape"] == [1, 1, 28, 28]


def test_bad_onnx_files_are_one_line_errors(lenet, capsys, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    for argv, needle in ((["summary", str(junk)], "not an ONNX model"),
                         (["compile", str(tmp_path / "missing.onnx")], "No such file"),
                         (["import", str(lenet[1]), "--out", str(tmp_path / "no" / "ck.npz")], "does not exist"),
                         (["import", "lenet5", "--out", str(tmp_path / "ck.npz")], "expected a path ending in .onnx")):
        code, out, err = run_cli(argv, capsys)
        assert code == 2, (argv, err)
        assert len(err.strip().splitlines()) == 1 and needle in err, (argv, err)


def test_compile_render_bottleneck_run_on_onnx_file(lenet, capsys, tmp_path):
    _, path, _ = lenet
    code, out, err = run_cli(["compile", str(path), "--backend", "numpy"], capsys)
    assert code == 0, err
    assert "final: 7 kernels" in out  # conv+relu, pool, conv+relu, pool, reshape, fc1+relu, fc2
    dot = tmp_path / "g.dot"
    code, out, err = run_cli(["render", str(path), "--out", str(dot)], capsys)
    assert code == 0, err
    text = dot.read_text()
    assert "conv2d" in text and "1×20×24×24" in text
    code, out, err = run_cli(["bottleneck", str(path), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)  # LeNet has no 1x1 reduce convs; the report still parses


def test_import_saves_parameters_as_checkpoint(lenet, capsys, tmp_path):
    model, path, _ = lenet
    ck = tmp_path / "lenet.npz"
    code, out, err = run_cli(["import", str(path), "--out", str(ck)], capsys)
    assert code == 0, err
    assert "opset 18" in out and "Conv 2" in out and "Gemm 2" in out and "431,080 parameters in 8 tensors" in out
    fresh = gx.load(path)
    for p in fresh.parameters():
        p.data[...] = 0
    state = io.load_checkpoint(ck, model=fresh)
    assert state["extra"]["input_shapes"] == [[-1, 1, 28, 28]]  # export makes the batch dynamic: -1 = symbolic
    want = model.state_dict()
    got = fresh.state_dict()
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k].data, want[k].data)


def test_bench_onnx_file_against_onnxruntime(lenet, capsys, tmp_path):
    pytest.importorskip("onnxruntime")
    model, path, _ = lenet
    js = tmp_path / "b.json"
    code, out, err = run_cli(["bench", "--model", str(path), "--repeats", "1", "--json", str(js)], capsys)
    assert code == 0, err
    assert "numba-compiled" in out and "onnxruntime" in out
    res = json.loads(js.read_text())
    assert [r["impl"] for r in res["rows"]] == ["numba-compiled", "onnxruntime"]
    assert res["input"] == list(SHAPE)
    for r in res["rows"]:
        assert r["median_ms"] > 0 and r["repeats"] == 1
        assert r["max_abs_diff"] < 1e-4  # both run the same file on the same input
    assert res["rows"][1]["ratio_to_onnxruntime"] == 1.0


def test_bench_without_onnxruntime_says_so(lenet, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    code, out, err = run_cli(["bench", "--model", str(lenet[1]), "--repeats", "1", "--input-shape", "1,28,28"],
                             capsys)
    assert code == 0, err
    assert "onnxruntime is not installed" in out and "[1, 1, 28, 28]" in out
    assert "numba-compiled" in out


def test_bench_workloads_have_an_onnxruntime_row_for_inference_only():
    pytest.importorskip("onnxruntime")
    from zoo.bench import models as bm
    from zoo.cli import bench as bench_cmd

    wls = [bm.tiny(w) for w in bm.MODEL_WORKLOADS if w.model in ("lenet5", "resnet18")][:2]
    assert {w.kind for w in wls} == {"train", "infer"}
    res = bench_cmd.bench(["onnxruntime"], repeats=1, workloads=wls, ops=True, smoke=True)
    (row,) = res["rows"]  # the training workload has no onnxruntime row
    assert row["impl"] == "onnxruntime" and row["kind"] == "infer" and row["median_ms"] > 0
    assert row["input"] == list(bm.TINY_INPUT["resnet18"])
    assert "ops" in res  # the op table runs without an onnxruntime column
