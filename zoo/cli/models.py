"""``convgraph models``: list the model zoo: name, designed input size and a one-line description
(with ``--params``, also each model's parameter count)."""

from __future__ import annotations

import argparse

from .common import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list the zoo models", description=__doc__)
    p.add_argument("--params", action="store_true", help="build each model and count its parameters (slower)")
    p.add_argument("--num-classes", type=positive_int, default=None, help="with --params (default: each model's own)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import get, list_models, spec

    names = list_models()
    for name in names:
        s = spec(name)
        size = "x".join(str(d) for d in s.input_size)
        line = f"{name:<20} {size:>11}  {s.description}"
        if args.params:
            model = get(name, num_classes=args.num_classes or s.default_num_classes)
            line = f"{name:<20} {size:>11} {sum(p.numel() for p in model.parameters()):>13,} params  {s.description}"
        print(line)
    print(f"{len(names)} models; train one with: convgraph train MODEL --dataset fashion-mnist")
    return 0
