"""Model-level pytest-benchmark suite: ResNet-18 224x224 inference batch 1 and 8 (eager and compiled), LeNet-5
training step batch 64 and ResNet-18 CIFAR training step batch 32, on the numpy reference, numba eager, numba
compiled, onnxruntime and torch.compile (inference only) and PyTorch (when installed). Definitions and runners live in
zoo/bench/models.py (shared with ``convgraph bench``). With ``--benchmark-disable`` (the default addopts) each
case runs once at a tiny size (batch 2, small input) as a smoke test.

    .venv/bin/python -m pytest bench/test_models_bench.py --benchmark-enable --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import pytest

from zoo.bench.models import IMPLS, INFER_ONLY, MODEL_WORKLOADS, model_runner, tiny

# onnxruntime runs the exported model, torch-compile an inductor-compiled one: inference workloads only
CASES = [(wl, impl) for wl in MODEL_WORKLOADS for impl in IMPLS if impl not in INFER_ONLY or wl.kind == "infer"]


@pytest.mark.parametrize("wl,impl", CASES, ids=[f"{w.name.replace(' ', '_')}-{i}" for w, i in CASES])
def test_model(benchmark, wl, impl):
    if impl in ("torch", "onnxruntime", "torch-compile"):
        pytest.importorskip(impl.removesuffix("-compile"))
    if benchmark.disabled and impl == "torch-compile":
        pytest.skip("torch-compile: an inductor compile takes tens of seconds, too long for the smoke run")
    if benchmark.disabled:
        wl = tiny(wl)
    fn = model_runner(impl, wl)
    fn()  # JIT / graph compile and first touch, untimed
    benchmark.pedantic(fn, rounds=1 if benchmark.disabled else 5, iterations=1,
                       warmup_rounds=0 if benchmark.disabled else 1)
