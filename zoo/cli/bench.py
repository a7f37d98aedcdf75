"""``convgraph bench``: in one run, time the model workloads (ResNet-18 224x224 inference batch 1 and 8, LeNet-5
training step batch 64, ResNet-18 CIFAR training step batch 32) on the numpy reference (eager), numba eager,
numba compiled (graph.compile, inference only), onnxruntime (the exported zoo model, inference workloads only)
and PyTorch CPU when importable (eager; ``torch-compile``, opt-in: torch.compile with inductor freezing, inference
workloads only, its compile reported as ``compile_ms``), then the op-level table
(zoo/bench/report.py) unless ``--no-ops``. ``--smoke`` runs every selected workload once at a tiny size
(a check that the benchmark works, not a measurement). ``--model FILE.onnx`` instead times that file imported
and compiled (numba) against onnxruntime running the same file (CPU execution provider, intra-op threads = numba's
thread count) on the same input, median of ``--repeats``.

Columns: median ms per step (after a separately timed first call, which holds JIT / graph compile, and one
untimed warm-up call), first-call ms, ratio to PyTorch eager (< 1 is faster), images/s, and peak RSS MiB
(``resource.getrusage`` ``ru_maxrss``: the process high-water mark after the row, so it only grows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import numba

import engine

from ..bench import models as bm
from ..bench import report
from .common import check_output_file, is_onnx_path, model_and_shape, parse_shape, positive_int

DEFAULT_IMPLS = {"cpu": "numpy,numba,numba-compiled,onnxruntime,torch", "cuda": "cuda,cuda-compiled"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="benchmark models and ops against PyTorch", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 repeats; numpy reference skipped at ResNet-18 batch 8")
    p.add_argument("--smoke", action="store_true",
                   help="each workload once at a tiny size (batch 2, small inputs), op table on tiny convs: checks "
                        "that the benchmark runs, in seconds; the numbers mean nothing")
    p.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    p.add_argument("--impls", default=None,
                   help="comma list of numpy,numba,numba-compiled,cuda,cuda-compiled,onnxruntime,torch,"
                        "torch-compile (default numpy,numba,numba-compiled,onnxruntime,torch; with --device cuda: "
                        "cuda,cuda-compiled; 'numba' in the op table covers both; onnxruntime and torch-compile "
                        "(inductor compile: tens of seconds to minutes per model): inference workloads only; the "
                        "op table is of host impls)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="cuda: benchmark the cuda backend (a CUDA GPU, or numba's simulator with "
                        "NUMBA_ENABLE_CUDASIM=1)")
    p.add_argument("--repeats", type=positive_int, default=None, help="timed repeats per row (default 10, --quick 3)")
    p.add_argument("--rounds", type=positive_int, default=1,
                   help="above 1: a workload's in-process impls (not the PyTorch ones, each in its own child) take "
                        "turns, --repeats calls each per round, the order rotating; rows add the per-round medians "
                        "and the median of the per-round ratios to onnxruntime (steadier than one run of each on a "
                        "shared machine)")
    p.add_argument("--workloads", default=None, help="comma list of substrings selecting model workloads (also "
                   "the opt-in ones: 'resnet50 224 infer b1', 'mobilenet_v2 224 infer b1', "
                   "'densenet121 224 infer b1')")
    p.add_argument("--ops", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the op-level table (zoo/bench/report.py)")
    p.add_argument("--profile", action="store_true",
                   help="after timing, profile each engine impl per layer and per op (where the time goes)")
    p.add_argument("--top", type=positive_int, default=15, help="rows per --profile table")
    p.add_argument("--model", default=None, metavar="FILE.onnx",
                   help="benchmark this .onnx file compiled (numba) against onnxruntime instead of the workloads")
    p.add_argument("--input-shape", type=parse_shape, default=None,
                   help="with --model: input shape (default: the file's declared one, batch 1 where symbolic)")
    p.set_defaults(func=run)


def bench(impls: list[str], quick: bool = False, repeats: int | None = None, workloads: list | None = None,
          ops: bool = True, log=None, smoke: bool = False, rounds: int = 1) -> dict:
    """The command's core: returns ``{"machine", "threads", "torch", "rss_method", "units", "rows", "ops"?}``.
    ``smoke``: 1 repeat and the op table on tiny convs (pass tiny ``workloads``, :func:`zoo.bench.models.tiny`)."""
    impls = bm.available_impls(impls)
    wls = bm.MODEL_WORKLOADS if workloads is None else workloads
    repeats = repeats if repeats is not None else (1 if smoke else 3 if quick else 10)

    def skip(wl, impl: str) -> bool:  # the numpy reference at ResNet-18 224 batch 8 takes ~10 s a step
        return quick and impl == "numpy" and wl.model == "resnet18" and wl.batch >= 8

    torch_version = None
    if "torch" in impls:  # available_impls dropped it when PyTorch is not installed
        import torch

        torch_version = torch.__version__
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
           "threads": numba.config.NUMBA_NUM_THREADS, "torch": torch_version, "quick": quick, "smoke": smoke,
           "rss_method": bm.RSS_METHOD,
           "units": {"median_ms": "ms", "min_ms": "ms", "first_call_ms": "ms", "images_per_s": "images/s",
                     "peak_rss_mib": "MiB", "ratio_to_torch": "median_ms / torch median_ms",
                     "round_medians_ms": "ms", "ratio_to_onnxruntime": "median of per-round median_ms ratios"},
           "rows": bm.run_models(impls, wls, repeats=repeats, skip=skip, log=log, rounds=rounds)}
    if ops:
        order = ["numpy", "numba", "torch"]
        op_impls = sorted({"numba" if i.startswith("numba") else i for i in impls
                           if i in order or i == "numba-compiled"}, key=order.index)
        res["ops"] = report.run(op_impls, quick, tiny_sizes=smoke)
    return res


def print_models_table(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    title = (f"models: {res['machine']}; NUMBA_NUM_THREADS={res['threads']}; torch {res['torch'] or '-'}; "
             f"peak RSS = ru_maxrss high-water mark")
    t = Table(title=title)
    for col in ("workload", "impl", "median ms", "first call ms", "x torch", "images/s", "peak RSS MiB"):
        t.add_column(col, justify="left" if col in ("workload", "impl") else "right")
    for r in res["rows"]:
        ratio = f"{r['ratio_to_torch']:.2f}" if r["ratio_to_torch"] is not None else "-"
        t.add_row(r["workload"], r["impl"], f"{r['median_ms']:.1f}", f"{r['first_call_ms']:.0f}", ratio,
                  f"{r['images_per_s']:.1f}", f"{r['peak_rss_mib']:.0f}")
    Console(width=140).print(t)
    for r in res["rows"]:
        if "ratio_to_onnxruntime" in r:
            per = ", ".join(f"{m:.2f}" for m in r["round_medians_ms"])
            print(f"{r['workload']} / {r['impl']} ÷ onnxruntime: {r['ratio_to_onnxruntime']:.3f} (median of "
                  f"{len(r['round_medians_ms'])} per-round ratios; its round medians ms: {per})")


def profile_tables(workloads: list, rows: list[dict], top: int) -> list[dict]:
    """Per-layer and per-op profile of every timed engine row (2 steps each); prints the tables, returns them."""
    out = []
    by_name = {w.name: w for w in workloads}
    for r in rows:
        if r["impl"] in bm.PEER_IMPLS:  # profiles are of the engine's own layers and ops
            continue
        prof = bm.profile_workload(r["impl"], by_name[r["workload"]])
        title = f"{r['workload']} / {r['impl']} (2 steps)"
        prof.print("layer", top=top, title=title)
        prof.print("op", top=top, title=title)
        out.append({"workload": r["workload"], "impl": r["impl"], "steps": 2, "wall_ms": prof.wall_s * 1e3,
                    "by_layer": prof.rows("layer"), "by_op": prof.rows("op"), "graph_overhead": prof.graph_overhead()})
    return out


def print_onnx_table(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{res['model']} {res['input']}: NUMBA_NUM_THREADS = onnxruntime intra_op_num_threads = "
                    f"{res['threads']}; max |diff| against the first row's output")
    for col in ("impl", "median ms", "first call ms", "x onnxruntime", "images/s", "max |diff|"):
        t.add_column(col, justify="left" if col == "impl" else "right")
    for r in res["rows"]:
        ratio = f"{r['ratio_to_onnxruntime']:.2f}" if r["ratio_to_onnxruntime"] is not None else "-"
        t.add_row(r["impl"], f"{r['median_ms']:.2f}", f"{r['first_call_ms']:.0f}", ratio, f"{r['images_per_s']:.1f}",
                  f"{r['max_abs_diff']:.2g}")
    Console(width=140).print(t)


def run_onnx(args: argparse.Namespace) -> int:
    from ..bench.onnx_peer import ORT_MISSING, bench_onnx_file

    if not is_onnx_path(args.model):
        raise ValueError(f"--model {args.model}: expected a path ending in .onnx (zoo workloads are chosen with "
                         "--workloads)")
    model, shape = model_and_shape(args)
    res = bench_onnx_file(args.model, model, shape, repeats=args.repeats or (3 if args.quick else 10),
                          log=lambda s: print(f"# {s}", file=sys.stderr, flush=True))
    if not res["onnxruntime"]:
        print(f"# {ORT_MISSING}")
    print_onnx_table(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
        print(f"# wrote {args.json}")
    return 0


def select_workloads(spec: str) -> list:
    """The workloads (default and opt-in) whose names contain one of the comma-separated substrings."""
    keys = [k.strip() for k in spec.split(",") if k.strip()]
    return [w for w in bm.MODEL_WORKLOADS + bm.EXTRA_WORKLOADS if any(k in w.name for k in keys)]


def run(args: argparse.Namespace) -> int:
    wls = bm.MODEL_WORKLOADS
    if args.json:
        check_output_file(args.json, "--json")
    if args.model is not None:
        return run_onnx(args)
    if args.workloads:
        wls = select_workloads(args.workloads)
    if args.smoke:
        wls = [bm.tiny(w) for w in wls]
    impls = args.impls or DEFAULT_IMPLS[args.device]
    if args.device == "cuda" or any(i.startswith("cuda") for i in impls.split(",")):
        engine.get_backend("cuda")  # without a GPU or the simulator: its one-line reason
    res = bench(impls.split(","), quick=args.quick, repeats=args.repeats, workloads=wls, ops=args.ops,
                log=lambda s: print(f"# {s}", file=sys.stderr, flush=True), smoke=args.smoke, rounds=args.rounds)
    if args.smoke:
        print("# --smoke: every workload at a tiny size (the names keep the full-size ones); these numbers measure "
              "nothing")
    print_models_table(res)
    if args.profile:
        res["profiles"] = profile_tables(wls, res["rows"], args.top)
    if args.ops:
        print()
        report.print_table(res["ops"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
        print(f"# wrote {args.json}")
    return 0
