"""``convgraph bottleneck MODEL``: 1x1 bottleneck analysis: reduce convs, their savings, suggestions."""

from __future__ import annotations

import argparse

from rich.console import Console

from graph.bottleneck import bottleneck

from .common import add_model_args, model_and_shape, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bottleneck", help="1x1 bottleneck analysis: reduce convs, savings, suggestions",
                              description=__doc__)
    add_model_args(p)
    p.add_argument("--min-channels", type=positive_int, default=128,
                   help="k×k convs with at least this many input channels and no reduce get suggestions")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model, shape = model_and_shape(args)
    report = bottleneck(model, shape, min_channels=args.min_channels)
    if args.json:
        print(report.to_json())
        return 0
    console = Console()
    if not console.is_terminal:  # piped: wide enough that the tables do not wrap
        console = Console(width=160)
    for t in report.tables():
        console.print(t)
    return 0
