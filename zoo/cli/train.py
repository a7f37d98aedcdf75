"""``convgraph train MODEL``: train a zoo model on a dataset (see zoo/training.py for the loop)."""

from __future__ import annotations

import argparse

from ..datasets import DATASET_NAMES
from ..training import OPTIMIZERS, SCHEDULERS, TrainConfig, train
from .common import add_backend_arg


def add_data_args(p: argparse.ArgumentParser, default_dataset: str = "fashion-mnist") -> None:
    p.add_argument("--dataset", default=default_dataset, choices=DATASET_NAMES,
                   help="named dataset (folder: --data-dir with train/<class>/ and test/<class>/ images)")
    p.add_argument("--data-dir", default=None, help="where the dataset's files are (default: its standard place)")
    add_backend_arg(p, "backend of the training steps (and of --compile)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a zoo model", description=__doc__,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="zoo model name (convgraph models lists them)")
    add_data_args(p)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--momentum", type=float, default=0.9, help="SGD / RMSprop momentum")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--scheduler", default="none", choices=SCHEDULERS, help="learning-rate schedule, stepped per epoch")
    p.add_argument("--augment", action="store_true", help="random flips/affine warps/crops (per dataset)")
    p.add_argument("--compile", action="store_true", help="run validation and test through graph.compile()")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output directory (default runs/MODEL-DATASET)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--limit-train", type=int, default=None, metavar="N", help="train on the first N images only")
    p.add_argument("--val-size", type=int, default=None, help="validation images held out of the training files")
    p.add_argument("--train-last-only", action="store_true",
                   help="random features: conv filters stay random, only the Linear classifier trains")
    p.add_argument("--finetune", default=None, metavar="CHECKPOINT",
                   help="transfer learning: load CHECKPOINT's weights, replace the head for this dataset's classes")
    p.add_argument("--classes", default=None, metavar="I,J,...",
                   help="train on these class indices only (relabelled 0..k-1), e.g. 0,1,2,3,4")
    p.add_argument("--freeze-body", action="store_true", help="with --finetune: train the new head only")
    p.add_argument("--stop-after", type=int, default=None, metavar="EPOCH",
                   help="stop after this epoch (checkpoint written); continue later with --resume")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.freeze_body and not args.finetune:
        raise SystemExit("convgraph train: --freeze-body needs --finetune CHECKPOINT")
    return TrainConfig(model=args.model, dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs,
                       batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                       weight_decay=args.weight_decay, scheduler=args.scheduler, augment=args.augment,
                       backend=args.backend, compile=args.compile, seed=args.seed,
                       out=args.out or f"runs/{args.model}-{args.dataset}", resume=args.resume,
                       limit_train=args.limit_train, val_size=args.val_size, train_last_only=args.train_last_only,
                       finetune=args.finetune, freeze_body=args.freeze_body, stop_after=args.stop_after,
                       progress=not args.no_progress, plots=not args.no_plots,
                       classes=[int(c) for c in args.classes.split(",")] if args.classes else None)


def run(args: argparse.Namespace) -> int:
    train(config_from_args(args))
    return 0
