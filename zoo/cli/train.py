"""``convgraph train MODEL``: train a zoo model on a dataset (see zoo/training.py for the loop).

Training steps run through ``graph.compile_step`` (forward, loss, backward and optimizer update as one graph);
``--eager`` runs them op by op. A run folder that holds a run is continued with ``--resume`` (settings not given
on the command line come from its checkpoint) or started over with ``--force``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..datasets import DATASET_NAMES
from ..run_folder import stored_config
from ..training import OPTIMIZERS, SCHEDULERS, TrainConfig, train
from .common import (
    add_backend_arg,
    add_device_arg,
    backend_from_args,
    fraction,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
)

# what an option left out means: a new run's default, or with --resume the checkpoint's value
DEFAULTS = dict(dataset="fashion-mnist", epochs=3, batch_size=128, optimizer="adam", lr=1e-3, momentum=0.9,
                weight_decay=0.0, scheduler="none", seed=0)


def add_data_args(p: argparse.ArgumentParser, default_dataset: str | None = "fashion-mnist") -> None:
    p.add_argument("--dataset", default=default_dataset, choices=DATASET_NAMES,
                   help="named dataset (folder: --data-dir with train/<class>/ and test/<class>/ images; "
                        "default fashion-mnist)")
    p.add_argument("--data-dir", default=None, help="where the dataset's files are (default: its standard place)")
    add_backend_arg(p, "backend of the training steps (and of --compile)")
    add_device_arg(p)


def memory_budget(text: str) -> float:
    """``--memory-budget``: bytes (> 1), or a fraction (<= 1) of the step's plan without recomputation."""
    x = positive_float(text)
    if x > 1 and x != int(x):
        raise argparse.ArgumentTypeError(f"a budget above 1 is a number of bytes, a whole number (got {text})")
    return int(x) if x > 1 else x


def image_size(text: str) -> int:
    return positive_int(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a zoo model", description=__doc__)
    p.add_argument("model", help="zoo model name (convgraph models lists them)")
    add_data_args(p, None)
    p.add_argument("--epochs", type=positive_int, default=None, help="default 3")
    p.add_argument("--batch-size", type=positive_int, default=None, help="default 128")
    p.add_argument("--optimizer", default=None, choices=OPTIMIZERS, help="default adam")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate (default 1e-3); with --resume, a different value overrides the checkpoint's "
                        "from the next epoch on (recorded in metrics.json)")
    p.add_argument("--momentum", type=fraction, default=None, help="SGD / RMSprop momentum (default 0.9)")
    p.add_argument("--weight-decay", type=nonnegative_float, default=None, help="default 0")
    p.add_argument("--scheduler", default=None, choices=SCHEDULERS,
                   help="learning-rate schedule, stepped per epoch (default none)")
    p.add_argument("--augment", action="store_true", help="random flips/affine warps/crops (per dataset)")
    p.add_argument("--eager", action="store_true",
                   help="run training steps op by op instead of as one graph.compile_step graph")
    p.add_argument("--memory-budget", type=memory_budget, default=None, metavar="B",
                   help="compiled steps: recompute activations so the step's planned memory fits B bytes, or a "
                        "fraction B <= 1 of its plan without recomputation")
    p.add_argument("--compile", action="store_true", help="run validation and test through graph.compile()")
    p.add_argument("--seed", type=nonnegative_int, default=None, help="default 0")
    p.add_argument("--out", default=None, help="output directory (default runs/MODEL-DATASET)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--force", action="store_true",
                   help="start a new run in an OUT that holds one (best.npz is replaced only by a better model)")
    p.add_argument("--limit-train", type=positive_int, default=None, metavar="N",
                   help="train on the first N images only")
    p.add_argument("--limit-test", type=positive_int, default=None, metavar="N",
                   help="evaluate on the first N test images only")
    p.add_argument("--val-size", type=positive_int, default=None,
                   help="validation images held out of the training files")
    p.add_argument("--image-size", type=image_size, nargs=2, default=None, metavar=("H", "W"),
                   help="folder datasets: resize the images to H x W")
    p.add_argument("--train-last-only", action="store_true",
                   help="random features: conv filters stay random, only the Linear classifier trains")
    p.add_argument("--finetune", default=None, metavar="CHECKPOINT",
                   help="transfer learning: load CHECKPOINT's weights, replace the head for this dataset's classes")
    p.add_argument("--classes", default=None, metavar="I,J,...",
                   help="train on these class indices only (relabelled 0..k-1), e.g. 0,1,2,3,4")
    p.add_argument("--freeze-body", action="store_true", help="with --finetune: train the new head only")
    p.add_argument("--stop-after", type=positive_int, default=None, metavar="EPOCH",
                   help="stop after this epoch (checkpoint written); continue later with --resume")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=run)


def parse_classes(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        raise ValueError(f"--classes {text!r}: expected class indices like 0,1,2") from None


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.freeze_body and not args.finetune:
        raise ValueError("--freeze-body needs --finetune CHECKPOINT")
    if args.memory_budget is not None and args.eager:
        raise ValueError("--memory-budget applies to compiled training steps; drop --eager or --memory-budget")
    dataset = args.dataset or DEFAULTS["dataset"]
    out = args.out or f"runs/{args.model}-{dataset}"
    # a resumed run takes what the command line leaves out from its checkpoint, so `--resume` alone continues it
    stored = stored_config(Path(out)) if args.resume else {}
    base = {**DEFAULTS, **{k: stored[k] for k in DEFAULTS if k in stored}}
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}
    cfg = {**base, **given}
    if args.resume and stored and args.classes is None:
        classes = stored.get("classes")
    else:
        classes = parse_classes(args.classes)
    size = tuple(args.image_size) if args.image_size else (tuple(stored["image_size"]) if stored.get("image_size")
                                                             else None)
    return TrainConfig(model=args.model, data_dir=args.data_dir, augment=args.augment or bool(stored.get("augment")),
                       backend=backend_from_args(args), compile=args.compile, eager=args.eager,
                       memory_budget=args.memory_budget,
                       out=out, resume=args.resume, force=args.force, image_size=size,
                       limit_train=args.limit_train if args.limit_train is not None else stored.get("limit_train"),
                       limit_test=args.limit_test if args.limit_test is not None else stored.get("limit_test"),
                       val_size=args.val_size if args.val_size is not None else stored.get("val_size"),
                       train_last_only=args.train_last_only or bool(stored.get("train_last_only")),
                       finetune=args.finetune or stored.get("finetune"),
                       freeze_body=args.freeze_body or bool(stored.get("freeze_body")),
                       stop_after=args.stop_after, progress=not args.no_progress, plots=not args.no_plots,
                       classes=classes, **cfg)


def run(args: argparse.Namespace) -> int:
    train(config_from_args(args))
    return 0
