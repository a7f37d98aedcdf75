"""``convgraph compile MODEL``: trace + optimize a zoo model, run it once, and print the compile report.

The report's own time covers the graph work (trace, passes, plan); the last line gives the command's wall time for
compiling and the first run, which includes JIT-compiling numba kernels on a cold cache and measuring conv
algorithms."""

from __future__ import annotations

import argparse

import numpy as np

import graph

from ..kernel_cache import KernelWatch
from .common import (
    add_backend_arg,
    add_device_arg,
    add_model_args,
    backend_from_args,
    model_and_shape,
    pipeline_or_passes,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compile", help="trace + optimize a zoo model and print the compile report",
                              description=__doc__)
    add_model_args(p)
    add_backend_arg(p, "kernel backend")
    add_device_arg(p)
    p.add_argument("--passes", nargs="+", default=None, help="a pipeline name or a list of pass names")
    p.add_argument("--layout", default=None, help="auto (default: CONVGRAPH_LAYOUT), blocked or nchw: the activation "
                   "layout of the compiled graph (graph/passes/layout.py)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import engine

    chosen = backend_from_args(args)
    model, shape = model_and_shape(args)
    x = np.zeros(shape, np.float32)
    backend = chosen or engine.active_backend().name
    model.to(engine.get_backend(backend).device)
    with KernelWatch(backend, args.model) as watch:
        cm = graph.compile(model, x, backend=backend, passes=pipeline_or_passes(args.passes), layout=args.layout)
        cm(x)  # the first run JIT-compiles whatever kernels compiling did not
    print(cm.report)
    print(f"compile + first run: {watch}")
    return 0
