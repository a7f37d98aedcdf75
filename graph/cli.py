"""``convgraph compile | summary | bottleneck | render`` subcommands (wired in by zoo/cli.py via ``register``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register", "parse_shape"]


def parse_shape(text: str) -> tuple[int, ...]:
    """'3,224,224', '3x224x224' or '1 3 224 224' -> a shape; a 3-D shape gets batch 1 in front."""
    parts = [p for p in text.replace("x", ",").replace("×", ",").replace(" ", ",").split(",") if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape must be integers like 3,224,224 (got {text!r})") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"input shape must be positive integers (got {text!r})")
    return (1,) + shape if len(shape) == 3 else shape


def _load(name: str) -> Any:
    from zoo import models

    return models.get(name)


def _input_shape(name: str, given: tuple[int, ...] | None) -> tuple[int, ...]:
    """The user's shape, else the input the zoo model was designed for (batch 1)."""
    if given:
        return given
    from zoo import models

    return (1,) + tuple(models.input_size(name))


def _model_and_shape(args: argparse.Namespace) -> tuple[Any, tuple[int, ...]]:
    model = _load(args.model)
    if hasattr(model, "eval"):
        model.eval()
    return model, _input_shape(args.model, args.input_shape)


def _cmd_compile(args: argparse.Namespace) -> int:
    import numpy as np

    import graph

    model, shape = _model_and_shape(args)
    x = np.zeros(shape, np.float32)
    kwargs = {"backend": args.backend} if args.backend else {}
    if args.passes:
        kwargs["passes"] = args.passes if len(args.passes) > 1 or args.passes[0] not in _pipelines() \
            else args.passes[0]
    cm = graph.compile(model, x, **kwargs)
    report = getattr(cm, "report", cm)
    printer = getattr(report, "print", None)
    if callable(printer):
        printer()
    else:
        print(report)
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from .summary import summary

    model, shape = _model_and_shape(args)
    s = summary(model, shape, depth=args.depth, verbose=not args.json)
    if args.json:
        import json

        print(json.dumps(s.to_dict(), indent=2, default=list))
    return 0


def _cmd_bottleneck(args: argparse.Namespace) -> int:
    from .bottleneck import bottleneck

    model, shape = _model_and_shape(args)
    report = bottleneck(model, shape, min_channels=args.min_channels)
    if args.json:
        print(report.to_json())
    else:
        from rich.console import Console

        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
        for t in report.tables():
            console.print(t)
    return 0


def _pipelines() -> set[str]:
    from .passes import PIPELINES

    return set(PIPELINES)


def _cmd_render(args: argparse.Namespace) -> int:
    from .render import render, render_before_after, render_memory_plan
    from .summary import trace_shapes

    model, shape = _model_and_shape(args)
    traced = trace_shapes(model, shape)
    passes = args.passes
    if passes is not None and len(passes) == 1 and passes[0] in _pipelines():
        passes = passes[0]
    if args.memory:
        from .memory import plan_memory
        from .passes import run_passes

        g = run_passes(traced.copy(), passes)[0] if passes is not None else traced
        out = render_memory_plan(plan_memory(g), args.out, title=f"{args.model} {list(shape)}: memory plan")
    elif args.before_after:
        from .passes import run_passes

        after = run_passes(traced.copy(), passes if passes is not None else "inference")[0]
        out = render_before_after(traced, after, args.out, args.format)
    else:
        g = traced
        if passes is not None:
            from .passes import run_passes

            g = run_passes(traced.copy(), passes)[0]
        out = render(g, args.out, args.format, title=f"{args.model} {list(shape)}")
    print(f"wrote {out}")
    return 0


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="zoo model name (see `convgraph models`)")
    p.add_argument("--input-shape", type=parse_shape, default=None,
                   help="input shape, e.g. 3,224,224 or 1x3x224x224 (default: the model's usual input)")


def _run(fn):
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (KeyError, ValueError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            print(f"convgraph {args.command}: {msg}", file=sys.stderr)
            return 2

    return wrapped


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("compile", help="trace + optimize a zoo model and print the compile report")
    _add_model_args(p)
    p.add_argument("--backend", default=None, help="kernel backend (numpy, numba, cuda)")
    p.add_argument("--passes", nargs="+", default=None, help="a pipeline name or a list of pass names")
    p.set_defaults(func=_run(_cmd_compile))

    p = subparsers.add_parser("summary", help="per-module params, MACs, FLOPs and activation bytes (torchinfo-style)")
    _add_model_args(p)
    p.add_argument("--depth", type=int, default=3, help="module depth to aggregate rows at (default 3)")
    p.add_argument("--json", action="store_true", help="print machine-readable rows instead of the table")
    p.set_defaults(func=_run(_cmd_summary))

    p = subparsers.add_parser("bottleneck", help="1x1 bottleneck analysis: reduce convs, savings, suggestions")
    _add_model_args(p)
    p.add_argument("--min-channels", type=int, default=128,
                   help="k×k convs with at least this many input channels and no reduce get suggestions")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=_run(_cmd_bottleneck))

    p = subparsers.add_parser("render", help="draw the graph (graphviz) or its memory plan")
    _add_model_args(p)
    p.add_argument("--out", required=True, help="output file (.svg, .png, .pdf or .dot)")
    p.add_argument("--format", default=None, help="svg | png | pdf | dot (default: from --out's suffix)")
    p.add_argument("--passes", nargs="+", default=None,
                   help="pipeline name or pass names to apply before drawing (default: the traced graph)")
    p.add_argument("--before-after", action="store_true",
                   help="draw the traced graph and the graph after --passes (default pipeline: inference) side by side")
    p.add_argument("--memory", action="store_true",
                   help="draw the memory plan (arena offset vs step, one box per buffer) instead of the graph")
    p.set_defaults(func=_run(_cmd_render))
