"""An .onnx file benchmarked two ways on the same input: imported with ``graph.onnx.load`` and compiled
(``graph.compile``, numba backend by default), and run by onnxruntime (CPU execution provider, as many intra-op
threads as numba uses). Used by ``convgraph bench --model FILE.onnx``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .models import peak_rss_mib, time_workload

ORT_MISSING = "onnxruntime is not installed (pip install 'convgraph[onnx]'): its row is skipped"


def numba_threads() -> int:
    import numba

    return int(numba.get_num_threads())


def compiled_runner(model: Any, x: np.ndarray, backend: str = "numba") -> tuple[Callable[[], Any], Callable]:
    """A zero-argument callable running the compiled model on ``x`` (compiling on its first call), and a getter
    for the last output as a numpy array."""
    import graph

    state: dict[str, Any] = {}

    def step() -> None:
        if "cm" not in state:
            state["cm"] = graph.compile(model, x, backend=backend)
        state["out"] = state["cm"](x)

    def output() -> np.ndarray:
        out = state["out"]
        out = out[0] if isinstance(out, (tuple, list)) else out
        return np.asarray(getattr(out, "data", out))

    return step, output


def onnxruntime_runner(path: str | bytes, x: np.ndarray, threads: int) -> tuple[Callable[[], Any], Callable] | None:
    """The same for an onnxruntime InferenceSession on ``path`` (or a serialized model; session creation in the
    first call); None when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    state: dict[str, Any] = {}

    def step() -> None:
        if "sess" not in state:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            src = path if isinstance(path, bytes) else os.fspath(path)
            sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
            state["sess"], state["name"] = sess, sess.get_inputs()[0].name
        state["out"] = state["sess"].run(None, {state["name"]: x})

    return step, lambda: np.asarray(state["out"][0])


def bench_onnx_file(path: str, model: Any, shape: tuple[int, ...], repeats: int, warmup: int = 1,
                    backend: str = "numba", log: Callable[[str], None] | None = None) -> dict:
    """Rows ``{"impl", "median_ms", "min_ms", "first_call_ms", "images_per_s", "peak_rss_mib",
    "ratio_to_onnxruntime", "max_abs_diff"}`` for the compiled model and onnxruntime (when installed), on one
    seeded float32 input of ``shape``; ``max_abs_diff`` compares each row's output with the first row's."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    threads = numba_threads()
    runners = [(f"{backend}-compiled", compiled_runner(model, x, backend))]
    ort_runner = onnxruntime_runner(path, x, threads)
    if ort_runner is not None:
        runners.append(("onnxruntime", ort_runner))
    rows, ref = [], None
    for impl, (step, output) in runners:
        if log:
            log(f"{os.path.basename(path)} {list(shape)} / {impl} ...")
        t = time_workload(step, repeats, warmup)
        out = output()
        ref = out if ref is None else ref
        diff = float(np.max(np.abs(out.astype(np.float64) - ref))) if out.shape == ref.shape else float("nan")
        rows.append({"impl": impl, **t, "images_per_s": shape[0] / (t["median_ms"] / 1e3),
                     "peak_rss_mib": peak_rss_mib(), "max_abs_diff": diff})
    peer = next((r for r in rows if r["impl"] == "onnxruntime"), None)
    for r in rows:
        r["ratio_to_onnxruntime"] = r["median_ms"] / peer["median_ms"] if peer else None
    return {"model": path, "input": list(shape), "threads": threads, "onnxruntime": ort_runner is not None,
            "rows": rows}
