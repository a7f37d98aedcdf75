"""``convgraph render MODEL --out FILE``: draw the graph (graphviz), the graph before and after passes, its memory
plan, or (``--train``) the whole training step: forward, backward and optimizer-update nodes."""

from __future__ import annotations

import argparse

import numpy as np

from graph.memory import plan_memory
from graph.passes import run_passes
from graph.render import render, render_before_after, render_memory_plan
from graph.summary import trace_shapes

from .common import add_model_args, check_output_file, model_and_shape, pipeline_or_passes


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("render", help="draw the graph (graphviz) or its memory plan", description=__doc__)
    add_model_args(p)
    p.add_argument("--out", required=True, help="output file (.svg, .png, .pdf or .dot) in an existing folder")
    p.add_argument("--format", default=None, help="svg | png | pdf | dot (default: from --out's suffix)")
    p.add_argument("--passes", nargs="+", default=None,
                   help="pipeline name or pass names to apply before drawing (default: the traced graph)")
    p.add_argument("--before-after", action="store_true",
                   help="draw the traced graph and the graph after --passes (default pipeline: inference) side by side")
    p.add_argument("--memory", action="store_true",
                   help="draw the memory plan (arena offset vs step, one box per buffer) instead of the graph")
    p.add_argument("--train", action="store_true",
                   help="draw the training step graph.compile_step compiles (cross-entropy, SGD with momentum)")
    p.set_defaults(func=run)


def training_step(model, shape: tuple[int, ...]):
    """The compiled training step of ``model`` (train mode) on a batch of ``shape``: cross-entropy (+ auxiliary
    losses) and SGD with momentum, on the numpy backend (drawing needs no kernels JIT-compiled)."""
    import graph
    from engine import optim

    from ..models import loss_with_aux

    model.train()
    x, y = np.zeros(shape, np.float32), np.zeros(shape[0], np.int64)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return graph.compile_step(model, loss_with_aux, opt, x, y, backend="numpy")


def run(args: argparse.Namespace) -> int:
    check_output_file(args.out)
    model, shape = model_and_shape(args)
    if args.train:
        if args.before_after or args.memory or args.passes:
            raise ValueError("--train draws the compiled training step; it does not combine with --passes, "
                             "--before-after or --memory")
        out = training_step(model, shape).render(args.out, format=args.format,
                                                 title=f"{args.model} {list(shape)}: training step")
        print(f"wrote {out}")
        return 0
    traced = trace_shapes(model, shape)
    passes = pipeline_or_passes(args.passes)
    if args.memory:
        g = run_passes(traced.copy(), passes)[0] if passes is not None else traced
        out = render_memory_plan(plan_memory(g), args.out, title=f"{args.model} {list(shape)}: memory plan")
    elif args.before_after:
        after = run_passes(traced.copy(), passes if passes is not None else "inference")[0]
        out = render_before_after(traced, after, args.out, args.format)
    else:
        g = run_passes(traced.copy(), passes)[0] if passes is not None else traced
        out = render(g, args.out, args.format, title=f"{args.model} {list(shape)}")
    print(f"wrote {out}")
    return 0
