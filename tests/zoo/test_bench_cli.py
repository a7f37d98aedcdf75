"""``convgraph bench``: the command's core on a tiny workload (numpy reference only, 1 repeat, no op table);
checks the JSON rows' fields and units. No timing assertions."""

from __future__ import annotations

import json

import numpy as np
import pytest

import engine
import zoo
from zoo.bench import models as bm
from zoo.cli import bench as bench_cmd
from zoo.cli import build_parser

ROW_FIELDS = {"workload", "model", "kind", "batch", "input", "impl", "median_ms", "min_ms", "first_call_ms",
              "repeats", "images_per_s", "peak_rss_mib", "ratio_to_torch"}


def _tiny():
    lenet = next(w for w in bm.MODEL_WORKLOADS if w.model == "lenet5")
    return [lenet.scaled(batch=4)]


def test_parser_has_bench():
    args = build_parser().parse_args(["bench", "--quick", "--no-ops", "--json", "x.json", "--impls", "numpy"])
    assert args.quick and not args.ops and args.json == "x.json" and args.impls == "numpy"
    assert args.func is bench_cmd.run


def test_opt_in_resnet50_workload_is_selected_by_name_only():
    assert all(w.model != "resnet50" for w in bm.MODEL_WORKLOADS)  # not in the default run
    assert [(w.model, w.batch) for w in bench_cmd.select_workloads("resnet50 224 infer b1,resnet18 224 infer b8")] \
        == [("resnet18", 8), ("resnet50", 1)]
    assert bm.tiny(bench_cmd.select_workloads("resnet50")[0]).input == (3, 32, 32)


def test_bench_core_rows(tmp_path):
    res = bench_cmd.bench(["numpy"], quick=True, repeats=1, workloads=_tiny(), ops=False)
    assert res["units"]["median_ms"] == "ms" and res["units"]["peak_rss_mib"] == "MiB"
    assert res["units"]["images_per_s"] == "images/s" and "ru_maxrss" in res["rss_method"]
    assert "ops" not in res
    (row,) = res["rows"]
    assert ROW_FIELDS <= set(row)
    assert row["impl"] == "numpy" and row["kind"] == "train" and row["batch"] == 4 and row["repeats"] == 1
    assert row["median_ms"] > 0 and row["first_call_ms"] > 0 and row["images_per_s"] > 0 and row["peak_rss_mib"] > 0
    assert row["ratio_to_torch"] is None  # no torch row in this run
    path = tmp_path / "b.json"
    path.write_text(json.dumps(res))
    assert json.loads(path.read_text())["rows"][0]["workload"] == row["workload"]


def test_compiled_train_rows_run_compile_step_and_train_like_eager():
    wl = bm.tiny(next(w for w in bm.MODEL_WORKLOADS if w.model == "lenet5"))
    runners = []
    for impl in ("numba", "numba-compiled"):  # one after the other: both draw the same dropout masks
        runners.append(bm.engine_model_runner(impl, wl))
        engine.manual_seed(1)
        for _ in range(2):
            runners[-1]()
    eager, compiled = runners
    for (k, a), b in zip(eager.model.state_dict().items(), compiled.model.state_dict().values()):
        np.testing.assert_allclose(b.data, a.data, rtol=1e-4, atol=1e-6, err_msg=k)


def test_profile_tables_attribute_time_to_layers(capsys):
    resnet = next(w for w in bm.MODEL_WORKLOADS if w.model == "resnet18" and w.batch == 1)
    wls = _tiny() + [resnet.scaled(batch=1, input=(3, 32, 32))]
    res = bench_cmd.bench(["numpy"], quick=True, repeats=1, workloads=wls, ops=False)
    profiles = bench_cmd.profile_tables(wls, res["rows"], top=5)
    assert [p["workload"] for p in profiles] == [w.name for w in wls]
    train, infer = profiles
    assert {r["phase"] for r in train["by_op"]} >= {"forward", "backward", "optimizer"}
    assert {r["phase"] for r in infer["by_op"]} >= {"forward"}
    assert any(r["layer"] == "conv1" and r["op"] == "conv2d" for r in train["by_layer"])
    assert all(p["wall_ms"] > 0 for p in profiles)
    assert all(p["graph_overhead"]["runs"] == 0 for p in profiles)  # eager rows run no compiled graph
    assert "profile by layer" in capsys.readouterr().out


def test_opt_in_issue16_workloads_are_selected_and_shrink():
    wls = bench_cmd.select_workloads("mobilenet_v2 224 infer b1,densenet121 224 infer b1")
    assert [(w.model, w.batch, w.kind) for w in wls] == [("mobilenet_v2", 1, "infer"), ("densenet121", 1, "infer")]
    assert all(bm.tiny(w).input == (3, 32, 32) for w in wls)


def test_torch_peer_models_match_the_zoo_architectures():
    torch_models = bm._torch_models()
    for name in ("mobilenet_v2", "densenet121"):
        ours = sum(p.data.size for p in zoo.get(name, num_classes=10).parameters())
        assert sum(p.numel() for p in torch_models[name](10).parameters()) == ours, name


# torch-compile: the structure (eval, no_grad, freezing on while compiling and restored, threads, compile timed
# apart, one compile) is checked with a recording dynamo backend instead of inductor, whose C++ compile takes
# 15-40 s even for a tiny model on this machine; the real inductor row runs in `convgraph bench` only.
@pytest.fixture
def torch_state():
    torch = pytest.importorskip("torch")
    import torch._inductor.config as inductor_config

    n, frozen = torch.get_num_threads(), inductor_config.freezing
    yield torch, inductor_config
    torch.set_num_threads(n)
    assert inductor_config.freezing == frozen  # the runner restored it


def test_torch_compile_runner_compiles_once_frozen_without_grad(torch_state):
    import numba

    torch, inductor_config = torch_state
    seen = []

    def recording(gm, example_inputs):
        seen.append((inductor_config.freezing, torch.is_grad_enabled(), torch.get_num_threads()))
        return gm.forward

    wl = bm.tiny(bench_cmd.select_workloads("mobilenet_v2")[0])
    fn = bm.torch_compile_model_runner(wl, backend=recording)
    assert fn.compile_ms is None
    t = bm.time_workload(fn, repeats=2, warmup=1)
    assert seen == [(True, False, numba.config.NUMBA_NUM_THREADS)]  # compiled once, in the first call
    assert not inductor_config.freezing and not fn.model.training
    assert 0 < fn.compile_ms and t["repeats"] == 2 and t["median_ms"] > 0


def test_torch_compile_failure_is_a_one_line_skip(torch_state, monkeypatch, capsys):
    _, inductor_config = torch_state

    def no_compiler(gm, example_inputs):
        raise RuntimeError("no C++ compiler found\nsecond line")

    wl = bm.tiny(bench_cmd.select_workloads("resnet50")[0])
    with pytest.raises(bm.TorchCompileUnavailable, match=r"^torch-compile: no_compiler could not compile resnet50 "
                       r"224 infer b1 here \(.*no C\+\+ compiler found\); row skipped$"):
        bm.torch_compile_model_runner(wl, backend=no_compiler)()
    assert not inductor_config.freezing
    with pytest.raises(ValueError, match="torch-compile runs inference workloads only"):
        bm.torch_compile_model_runner(_tiny()[0])

    # run_models leaves the row out and says why on one line (and runs no torch-compile row for training)
    monkeypatch.setattr(bm, "torch_row_isolated", lambda *a: {"skipped": "torch-compile: reason; row skipped"})
    assert bm.run_models(["torch-compile"], _tiny() + [wl], repeats=1) == []
    assert capsys.readouterr().err == "# torch-compile: reason; row skipped\n"


def test_interleaved_rounds_rows():
    """--rounds: the in-process impls take turns round by round; each row's repeats are rounds x --repeats, with one
    median per round, and beside an onnxruntime row the median of the per-round ratios to it."""
    impls = ["numba", "numba-compiled"] + (["onnxruntime"] if "onnxruntime" in bm.available_impls(["onnxruntime"])
                                           else [])
    lenet = next(w for w in bm.MODEL_WORKLOADS if w.model == "lenet5")
    wl = bm.ModelWorkload("lenet5 infer b2", lenet.model, "infer", 2, lenet.input, lenet.num_classes)
    rows = bm.run_models(impls, [wl], repeats=2, rounds=3)
    assert [r["impl"] for r in rows] == impls
    for r in rows:
        assert r["repeats"] == 6 and len(r["round_medians_ms"]) == 3
        assert r["min_ms"] <= r["median_ms"] and all(m > 0 for m in r["round_medians_ms"])
        if "onnxruntime" in impls and r["impl"] != "onnxruntime":
            ort = rows[-1]["round_medians_ms"]
            assert r["ratio_to_onnxruntime"] == pytest.approx(np.median(np.array(r["round_medians_ms"]) /
                                                                        np.array(ort)))
    if "onnxruntime" not in impls:
        assert all("ratio_to_onnxruntime" not in r for r in rows)
