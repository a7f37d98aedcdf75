"""bench/cuda_peers.py (the real-GPU comparison with cuBLAS / cuDNN / PyTorch, run by bench/cuda_gpu.sh) works
before a GPU is ever lent: its arguments, its table, and our side of every row at --tiny sizes on the simulator."""

from __future__ import annotations

import pytest

import engine
from bench import cuda_peers as cp

if "cuda" not in engine.available_backends():
    pytest.skip("needs a GPU or NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)


def test_arguments():
    args = cp.parse_args(["--only", "sgemm, conv", "--repeats", "2", "--tiny"])
    assert args.only == ["sgemm", "conv"] and args.repeats == 2 and args.tiny
    assert cp.parse_args([]).only == list(cp.ROWS)
    for bad in (["--only", "sgemm,fft"], ["--repeats", "0"]):
        with pytest.raises(SystemExit):
            cp.parse_args(bad)


def test_table_ratios_say_how_far_behind_ours_is():
    rows = [cp.Row("SGEMM", 20000.0, 50000.0, "GFLOP/s", "cuBLAS"), cp.Row("conv fwd", 3.0, 1.0, "ms", "cuDNN"),
            cp.Row("peak", 3 * 2**20, 2 * 2**20, "B", "max_memory_allocated"), cp.Row("x", 1.0)]
    assert [r.ratio for r in rows] == [2.5, 3.0, 1.5, None]
    text = cp.table(rows, "H100")
    assert "40% of cuBLAS" in text and "3.00x cuDNN" in text and "3 MiB" in text and text.startswith("device: H100")


def test_our_side_runs_at_tiny_sizes(capsys, tmp_path):
    assert cp.main(["--tiny", "--only", "sgemm,conv", "--repeats", "1", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "SGEMM 16^3" in out and "conv3x3 4ch 6x6/2 b2 bwd (dx+dw)" in out
    assert (tmp_path / "r.json").read_text().count('"what"') == 1 + 2 * len(cp.TINY.convs)
