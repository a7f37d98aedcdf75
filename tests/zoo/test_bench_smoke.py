"""Every benchmark workload runs (tiny sizes, no timing assertions): the model workloads on every engine impl and
PyTorch, the op table's conv workloads and GEMM rooflines. The timed suites in bench/ run the same code at full
size; this keeps it from breaking unnoticed, since bench/ is outside the test paths."""

from __future__ import annotations

import pytest

from zoo.bench import models as bm
from zoo.bench import report
from zoo.bench.workloads import CONV_WORKLOADS, MODES
from zoo.cli import bench as bench_cmd

ENGINE_IMPLS = ["numpy", "numba", "numba-compiled"]


@pytest.fixture
def torch_threads():
    """The runners give PyTorch the numba thread count; the suite runs it on one thread (tests/conftest.py)."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_every_model_workload_runs_on_every_engine_impl():
    # ResNet-18 inference at batch 1 and 8 shrink to the same tiny workload: run it once
    wls = list({(w.model, w.kind): bm.tiny(w) for w in bm.MODEL_WORKLOADS}.values())
    assert len(wls) == 3
    res = bench_cmd.bench(ENGINE_IMPLS, workloads=wls, ops=False, smoke=True)
    expected = [(w.name, i) for w in wls for i in ENGINE_IMPLS]
    assert [(r["workload"], r["impl"]) for r in res["rows"]] == expected
    assert {r["impl"] for r in res["rows"]} == set(ENGINE_IMPLS)
    assert all(r["repeats"] == 1 and r["median_ms"] > 0 and r["batch"] == 2 for r in res["rows"])


# the opt-in workloads too: their PyTorch models are the torch and torch-compile peers' (torch-compile itself is
# left out here, its inductor compile takes tens of seconds: tests/zoo/test_bench_cli.py runs its code path)
@pytest.mark.parametrize("wl", bm.MODEL_WORKLOADS + bm.EXTRA_WORKLOADS, ids=lambda w: w.name.replace(" ", "_"))
def test_every_model_workload_runs_on_torch(wl, torch_threads):
    step = bm.model_runner("torch", bm.tiny(wl))
    step()
    step()


def test_torch_row_runs_in_its_own_process():
    pytest.importorskip("torch")
    row = bm.torch_row_isolated(bm.tiny(bm.MODEL_WORKLOADS[0]), repeats=1, warmup=0)
    assert row["repeats"] == 1 and row["median_ms"] > 0 and row["peak_rss_mib"] > 0


def test_op_table_runs_every_conv_workload(torch_threads, capsys):
    impls = ["numpy", "numba", "torch"]
    res = report.run(impls, quick=False, tiny_sizes=True)
    assert [(r["workload"], r["mode"], r["impl"]) for r in res["rows"]] == [
        (w.name, m, i) for w in CONV_WORKLOADS for m in MODES for i in impls]
    assert res["sgemm_gflops"] > 0 and res["numba_gemm_gflops"] > 0
    assert all(r["median_ms"] > 0 and r["ratio_to_torch"] is not None for r in res["rows"])
    assert all(r["algorithm"] for r in res["rows"] if r["impl"] == "numba")
    report.print_table(res)
    assert CONV_WORKLOADS[0].name in capsys.readouterr().out
