"""Op benchmark report: one run times every workload on numpy-reference, numba and PyTorch, plus numpy's SGEMM
as the roofline, and prints one table.

    python -m zoo.bench.report [--quick] [--impls numpy,numba,torch] [--json FILE] [--jit]

Columns: median ms per call (JIT compile excluded: untimed warm-up calls first), ratio to PyTorch
(time / torch time; < 1 is faster than PyTorch), GFLOP/s (FLOPs = 2 x MACs; fwd+bwd counts 3 x the forward),
and % of the SGEMM GFLOP/s measured in the same run. ``--jit`` also measures the JIT cost of the kernel set a
ResNet-18 forward+backward needs (zoo/bench/jit_cost.py): cold (empty NUMBA_CACHE_DIR) and warm (cached).
"""

from __future__ import annotations

import argparse
import json
import os
import platform

from .workloads import (
    CONV_WORKLOADS,
    MODES,
    engine_runner,
    numba_gemm_runner,
    sgemm_runner,
    time_median,
    tiny,
    torch_runner,
    without_missing_torch,
)


def _runner(impl: str, wl, mode: str):
    return torch_runner(wl, mode) if impl == "torch" else engine_runner(impl, wl, mode)


def _algorithms(impl: str, wl, mode: str) -> str:
    """The numba conv algorithm per role that the timed calls ran (the measured choice cached per shape)."""
    if impl != "numba":
        return ""
    from backends.numba.conv.select import choose

    roles = ("forward",) if mode == "fwd" else ("forward", "weight_grad", "input_grad")
    return " / ".join(choose(r, wl.x, wl.w, wl.attrs, "float32", None).algorithm for r in roles)


def run(impls: list[str], quick: bool, tiny_sizes: bool = False) -> dict:
    """Time the conv workloads (``quick``: fewer, shorter). ``tiny_sizes``: every workload shrunk to a few
    channels and an 8x8 image and a 64^3 SGEMM, 3 calls each: checks that the table runs, measures nothing."""
    import numba

    quick = quick and not tiny_sizes
    min_time = 0.0 if tiny_sizes else 0.2 if quick else 1.0
    n = 64 if tiny_sizes else 1024 if quick else 2048
    fn, flops = sgemm_runner(n)
    t = time_median(fn, min_time=min_time)
    sgemm = flops / t / 1e9
    numba_gemm = None
    if "numba" in impls:
        fn, flops = numba_gemm_runner(n)
        numba_gemm = flops / time_median(fn, min_time=min_time) / 1e9
    rows = []
    workloads = CONV_WORKLOADS[:1] + CONV_WORKLOADS[4:] if quick else CONV_WORKLOADS
    if tiny_sizes:
        workloads = [tiny(w) for w in workloads]
    for wl in workloads:
        for mode in MODES:
            for impl in impls:
                if impl == "numpy" and quick and mode == "fwd+bwd":
                    continue
                t = time_median(_runner(impl, wl, mode), min_time=min_time, max_reps=10 if impl == "numpy" else 50)
                fl = wl.flops * (1 if mode == "fwd" else 3)
                rows.append({"workload": wl.name, "mode": mode, "impl": impl, "median_ms": t * 1e3,
                             "gflops": fl / t / 1e9, "algorithm": _algorithms(impl, wl, mode)})
    for r in rows:
        ref = next((q for q in rows if q["impl"] == "torch" and q["workload"] == r["workload"]
                    and q["mode"] == r["mode"]), None)
        r["ratio_to_torch"] = r["median_ms"] / ref["median_ms"] if ref else None
        r["pct_sgemm"] = 100 * r["gflops"] / sgemm
    import engine

    return {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
            "threads": numba.config.NUMBA_NUM_THREADS, "blas": engine.blas_description(), "sgemm_gflops": sgemm,
            "numba_gemm_gflops": numba_gemm, "rows": rows}


def print_table(res: dict) -> None:
    print(f"# {res['machine']}; NUMBA_NUM_THREADS={res['threads']}; {res.get('blas', '')}; "
          f"SGEMM (numpy BLAS) this run: {res['sgemm_gflops']:.1f} GFLOP/s"
          + (f"; numba GEMM (same size): {res['numba_gemm_gflops']:.1f} GFLOP/s" if res.get("numba_gemm_gflops")
             else ""))
    print("# GFLOP/s = direct-convolution FLOPs (2 x MACs; fwd+bwd = 3 x fwd) / time: effective for Winograd")
    head = (f"{'workload':36s} {'mode':8s} {'impl':6s} {'median ms':>10s} {'x torch':>8s} {'GFLOP/s':>8s} "
            f"{'%SGEMM':>7s}  algorithm (fwd / wgrad / igrad)")
    print(head)
    print("-" * len(head))
    for r in res["rows"]:
        ratio = f"{r['ratio_to_torch']:.2f}" if r["ratio_to_torch"] is not None else "-"
        print(f"{r['workload']:36s} {r['mode']:8s} {r['impl']:6s} {r['median_ms']:10.2f} {ratio:>8s} "
              f"{r['gflops']:8.1f} {r['pct_sgemm']:6.0f}%  {r.get('algorithm', '')}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer workloads and shorter timing")
    ap.add_argument("--impls", default="numpy,numba,torch")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--jit", action="store_true", help="also measure cold/warm JIT cost (ResNet-18 kernel set)")
    args = ap.parse_args(argv)
    res = run(without_missing_torch(args.impls.split(",")), args.quick)
    print_table(res)
    if args.jit:
        from .jit_cost import measure

        res["jit"] = measure()
        print(f"# JIT, ResNet-18 fwd+bwd kernel set: cold {res['jit']['cold_s']:.1f} s, "
              f"warm {res['jit']['warm_s']:.2f} s (first step minus steady step; steady {res['jit']['step_s']:.2f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
