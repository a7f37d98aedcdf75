"""The `convgraph` command line. Each subcommand lives in its own module that exposes
``register(subparsers)``; this file only wires them together."""

from __future__ import annotations

import argparse
import importlib
import sys

# (module path, description). A module that fails to import is reported, not hidden.
_COMMAND_MODULES = [
    "zoo.commands.demo",
    "zoo.commands.train",
    "zoo.commands.evaluate",
    "zoo.commands.predict",
    "zoo.commands.inspect",
    "zoo.commands.models",
    "graph.cli",
    "zoo.commands.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convgraph", description="CNN autograd engine + graph compiler")
    sub = parser.add_subparsers(dest="command", required=True)
    for mod_name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name == mod_name:
                continue  # command not built yet
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
