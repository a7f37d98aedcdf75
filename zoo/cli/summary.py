"""``convgraph summary MODEL``: per-module parameters, MACs, FLOPs and activation bytes (torchinfo-style)."""

from __future__ import annotations

import argparse
import json

from graph.summary import summary

from .common import add_model_args, model_and_shape, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("summary", help="per-module params, MACs, FLOPs and activation bytes (torchinfo-style)",
                              description=__doc__)
    add_model_args(p)
    p.add_argument("--depth", type=positive_int, default=3, help="module depth to aggregate rows at (default 3)")
    p.add_argument("--json", action="store_true", help="print machine-readable rows instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model, shape = model_and_shape(args)
    s = summary(model, shape, depth=args.depth, verbose=not args.json)
    if args.json:
        print(json.dumps(s.to_dict(), indent=2, default=list))
    return 0
