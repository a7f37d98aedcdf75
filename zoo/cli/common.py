"""What the commands share: ``--backend``; for the graph commands (compile, summary, bottleneck, render) the model
argument, ``--input-shape``, pass-list parsing and the one-line error for bad input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import engine
from graph.passes import PIPELINES

from .. import models


def add_backend_arg(p: argparse.ArgumentParser, role: str = "eager backend") -> None:
    # "%(default).0s" prints nothing, and stops ArgumentDefaultsHelpFormatter from appending "(default: None)"
    p.add_argument("--backend", default=None,
                   help=f"{role}: numpy (the reference), numba or cuda (default%(default).0s: $CONVGRAPH_BACKEND, "
                        "else numba when installed)")


def use_backend_arg(args: argparse.Namespace) -> None:
    """Make ``--backend`` the active backend for eager ops; without it the active backend stays."""
    if args.backend is not None:
        engine.set_backend(args.backend)


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


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="zoo model name (see `convgraph models`)")
    p.add_argument("--input-shape", type=parse_shape, default=None,
                   help="input shape, e.g. 3,224,224 or 1x3x224x224 (default: the model's usual input)")


def model_and_shape(args: argparse.Namespace) -> tuple[Any, tuple[int, ...]]:
    """The zoo model in eval mode and the user's input shape, else the one the model was designed for (batch 1)."""
    model = models.get(args.model)
    model.eval()
    return model, args.input_shape or (1,) + tuple(models.input_size(args.model))


def pipeline_or_passes(passes: list[str] | None) -> str | list[str] | None:
    """``--passes inference`` names a pipeline; ``--passes cse dce`` lists passes."""
    if passes is not None and len(passes) == 1 and passes[0] in PIPELINES:
        return passes[0]
    return passes


def reporting_bad_input(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad input (an unknown model or pass, a shape the model rejects) ends in one line on stderr and exit code 2."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (KeyError, ValueError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            print(f"convgraph {args.command}: {msg}", file=sys.stderr)
            return 2

    return wrapped
