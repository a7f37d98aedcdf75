"""The ``convgraph`` command line. Each subcommand lives in its own module of this package that exposes
``register(subparsers)`` and ``run(args)``; this file only wires them together and turns user errors into one line.

User errors (a bad option value, an unknown model, a missing or corrupt file, a shape the model rejects, a folder
that cannot be written) end in one line on stderr, ``convgraph COMMAND: what went wrong``, and exit code 2, with
no traceback (``--debug`` shows it). Ctrl-C exits with 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import bench, bottleneck, compile, demo, evaluate, import_onnx, inspect, models, predict, render, summary, train

# the order of `convgraph --help`
COMMANDS = [demo, train, evaluate, predict, inspect, models, import_onnx, compile, summary, bottleneck, render, bench]
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError)
EXIT_USER_ERROR, EXIT_INTERRUPTED = 2, 130


class OneLineParser(argparse.ArgumentParser):
    """Option errors in one line (argparse prints the whole usage first), exit code 2 as argparse's."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="convgraph", description="CNN autograd engine + graph compiler")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def one_line(e: BaseException) -> str:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    return " ".join(str(msg).split()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as e:
        if args.debug:
            raise
        print(f"convgraph {args.command}: {one_line(e) if e.args else 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"convgraph {args.command}: {one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
