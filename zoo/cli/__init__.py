"""The ``convgraph`` command line. Each subcommand lives in its own module of this package that exposes
``register(subparsers)`` and ``run(args)``; this file only wires them together."""

from __future__ import annotations

import argparse

from . import bench, bottleneck, compile, demo, evaluate, inspect, models, predict, render, summary, train

# the order of `convgraph --help`
COMMANDS = [demo, train, evaluate, predict, inspect, models, compile, summary, bottleneck, render, bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convgraph", description="CNN autograd engine + graph compiler")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)

