"""``convgraph compile MODEL``: trace + optimize a zoo model and print the compile report."""

from __future__ import annotations

import argparse

import numpy as np

import graph

from .common import add_backend_arg, add_model_args, model_and_shape, pipeline_or_passes


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compile", help="trace + optimize a zoo model and print the compile report",
                              description=__doc__)
    add_model_args(p)
    add_backend_arg(p, "kernel backend")
    p.add_argument("--passes", nargs="+", default=None, help="a pipeline name or a list of pass names")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model, shape = model_and_shape(args)
    cm = graph.compile(model, np.zeros(shape, np.float32), backend=args.backend, passes=pipeline_or_passes(args.passes))
    print(cm.report)
    return 0
