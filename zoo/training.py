"""The training loop behind ``convgraph train`` / ``convgraph demo``.

One epoch = shuffle (seeded per epoch) -> forward -> cross-entropy -> backward -> optimizer step, by default as
one compiled graph per step (``graph.compile_step``; ``eager=True``: op by op through autograd), with a tqdm bar
on a terminal (loss, accuracy, images/s, ETA); then validation, a scheduler step, a checkpoint
(``checkpoint.npz``: model, optimizer, scheduler, epoch, RNG state, history) and ``metrics.json``. At the
end: test accuracy, ``curves.png`` (loss/accuracy per epoch) and ``confusion.png``.

Reproducibility: every random draw comes from ``engine.manual_seed(seed)`` (init, dropout) or from the
DataLoader's (seed, epoch, batch)-keyed generators (shuffle, augmentation), and the checkpoint stores the
engine generator's state, so ``--resume`` after epoch k replays exactly what an uninterrupted run does.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import engine
import engine.functional as F
import graph
from engine import nn
from engine.data import DataLoader
from engine.primitive import Spec

from .datasets import DatasetInfo, Splits, get_splits, make_transforms
from .kernel_cache import KernelWatch
from .models import get as zoo_get
from .models import loss_with_aux, main_logits
from .run_folder import (
    RunInterrupted,
    best_so_far,
    check_resume_config,
    check_run_folder,
    close_run_folder,
    open_run_folder,
    stored_config,
)

OPTIMIZERS = ("sgd", "adam", "adamw", "adagrad", "rmsprop")
SCHEDULERS = ("none", "step", "cosine", "plateau")


@dataclass
class TrainConfig:
    model: str = "lenet5"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    epochs: int = 2
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "none"
    augment: bool = False
    backend: str | None = None  # None: the active backend (CONVGRAPH_BACKEND, else numba when installed)
    compile: bool = False
    force: bool = False  # start a new run in a folder that holds one (best.npz is replaced only by a better model)
    image_size: tuple[int, int] | None = None  # folder datasets: resize images to (H, W)
    eager: bool = False  # training steps op by op through autograd instead of one graph.compile_step graph
    memory_budget: float | None = None  # compile_step's: bytes, or a fraction <= 1 of the plan without recompute
    seed: int = 0
    out: str = "runs/train"
    resume: bool = False
    limit_train: int | None = None
    limit_test: int | None = None  # evaluate on the first N test images only (quick runs, simulator tests)
    val_size: int | None = None
    train_last_only: bool = False
    finetune: str | None = None
    freeze_body: bool = False
    prefetch: int = 2
    eval_batch_size: int = 500
    progress: bool = True
    plots: bool = True
    stop_after: int | None = None  # end the process after this epoch (simulates an interruption; tests)
    classes: list[int] | None = None  # train on a subset of the dataset's classes (relabelled 0..k-1)


# --- model construction ---------------------------------------------------------------------------------------
def build_model(name: str, num_classes: int, in_channels: int = 1) -> nn.Module:
    """``zoo.get(name, num_classes=...)``, plus ``in_channels`` when the dataset is not 3-channel (the zoo's
    default for ImageNet models) and not 1-channel LeNet-style input."""
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    try:
        model = zoo_get(name, **kwargs, in_channels=in_channels)
    except TypeError as e:  # a model without an in_channels argument
        if "in_channels" not in str(e):
            raise
        model = zoo_get(name, **kwargs)
    return model


def _loss_and_logits(out: Any, y: engine.Tensor) -> tuple[engine.Tensor, engine.Tensor]:
    """Cross-entropy (+ 0.3 x auxiliary-classifier losses for GoogLeNet / Inception in training mode)."""
    return loss_with_aux(out, y), main_logits(out)


def head_name(model: nn.Module) -> str:
    """Qualified name of the classifier's last Linear layer (the layer transfer learning replaces)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no Linear layer to use as the classification head")
    return linears[-1]


def classifier_parameter_names(model: nn.Module) -> list[str]:
    """Parameters of every Linear layer: the classifier that ``--train-last-only`` trains on random features."""
    names = []
    for mname, m in model.named_modules():
        if isinstance(m, nn.Linear):
            names += [f"{mname}.{p}" if mname else p for p, _ in m.named_parameters(recurse=False)]
    return names


def freeze_all_but(model: nn.Module, trainable: list[str]) -> list[nn.Parameter]:
    keep = set(trainable)
    out = []
    for name, p in model.named_parameters():
        p.requires_grad = name in keep
        if p.requires_grad:
            out.append(p)
    return out


def load_finetune(model: nn.Module, path: str) -> list[str]:
    """Load a checkpoint's weights into ``model`` except the head (kept freshly initialized for the new
    classes). Returns the head's parameter names."""
    from engine import io

    head = head_name(model)
    state = io.load_checkpoint(path, restore_rng=False)["model"]
    own = model.state_dict()
    head_keys = [k for k in own if k.startswith(head + ".")]
    body = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    missing = [k for k in own if k not in body and k not in head_keys]
    mismatched = [k for k in body if k in own and tuple(np.shape(body[k])) != tuple(own[k].shape)]
    if missing or mismatched:
        raise ValueError(f"--finetune {path}: checkpoint does not fit this model's body "
                         f"(missing {missing[:5]}, mis-shaped {mismatched[:5]})")
    model.load_state_dict({**{k: own[k] for k in head_keys}, **{k: v for k, v in body.items() if k in own}})
    return head_keys


# --- optimizer / scheduler ------------------------------------------------------------------------------------
def make_optimizer(cfg: TrainConfig, params: list) -> Any:
    from engine import optim

    kind = cfg.optimizer.lower()
    if kind == "sgd":
        return optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if kind == "adam":
        return optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if kind == "adamw":
        return optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay or 1e-2)
    if kind == "adagrad":
        return optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if kind == "rmsprop":
        return optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")


def make_scheduler(cfg: TrainConfig, opt: Any) -> Any:
    """Stepped once per epoch (``plateau`` with the validation loss)."""
    from engine.optim import lr_scheduler

    kind = cfg.scheduler.lower()
    if kind == "none":
        return None
    if kind == "step":
        return lr_scheduler.StepLR(opt, step_size=max(1, cfg.epochs // 3), gamma=0.1)
    if kind == "cosine":
        return lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    if kind == "plateau":
        return lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=1)
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")


def current_lr(opt: Any) -> float:
    return float(opt.param_groups[0]["lr"])


def model_device(model: Any) -> str:
    """Where the model's parameters live ("cpu" for a model without any)."""
    inner = getattr(model, "model", model)  # a compiled evaluation wrapper holds the model
    return next((p.device for p in inner.parameters()), "cpu")


# --- evaluation -----------------------------------------------------------------------------------------------
def evaluate(model: Any, loader: DataLoader, num_classes: int) -> dict[str, Any]:
    """Mean loss, accuracy and the confusion matrix (rows = true class, columns = predicted)."""
    was_training = model.training
    model.eval()
    total_loss, n = 0.0, 0
    confusion = np.zeros((num_classes, num_classes), np.int64)
    device = model_device(model)
    with engine.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = main_logits(model(x))
            total_loss += float(F.cross_entropy(logits, y, reduction="sum").item())
            pred = logits.numpy().argmax(1)
            np.add.at(confusion, (y.numpy(), pred), 1)
            n += len(pred)
    if was_training:
        model.train()
    acc = float(np.trace(confusion)) / max(n, 1)
    return {"loss": total_loss / max(n, 1), "acc": acc, "n": n, "confusion": confusion}


# --- plots ----------------------------------------------------------------------------------------------------
def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a1.plot(ep, [h["val_loss"] for h in history], "s-", label="validation")
    a1.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    a2.plot(ep, [100 * h["train_acc"] for h in history], "o-", label="train")
    a2.plot(ep, [100 * h["val_acc"] for h in history], "s-", label="validation")
    a2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    from matplotlib.ticker import MaxNLocator

    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend()
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(confusion: np.ndarray, classes: list[str], path: Path, title: str = "confusion matrix") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    side = max(5.0, 1.5 + 0.6 * k)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(confusion, cmap="Blues")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true")
    ax.set_title(title, fontsize=9)
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    hi = confusion.max() / 2 if confusion.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if confusion[i, j] > hi else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- the loop -------------------------------------------------------------------------------------------------
class _Timer:
    """Accumulates wall time per phase (data wait, forward, backward, optimizer step)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.total[phase] = self.total.get(phase, 0.0) + now - self._t
        self._t = now


class _CompiledEval:
    """Evaluation through ``graph.compile`` (inference pipeline: eval-mode weights folded into the graph).

    Recompiled at each ``eval()`` because the weights changed since the last one, and once per input shape (the
    last, smaller batch gets its own plan). A model the compiler cannot handle is an error, not an eager fallback:
    ``--compile`` promises compiled evaluation.
    """

    training = False

    def __init__(self, model: nn.Module, backend: str):
        self.model, self.backend = model, backend
        self.compiled: graph.CompiledModule | None = None

    def eval(self) -> None:
        self.model.eval()
        self.compiled = None

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def __call__(self, x: engine.Tensor) -> Any:
        if self.compiled is None:
            self.compiled = graph.CompiledModule(self.model, backend=self.backend)
        return self.compiled(x)


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


class EagerStep:
    """One training step op by op: forward, ``loss.backward()`` through eager autograd, ``optimizer.step()``."""

    def __init__(self, model: nn.Module, opt: Any):
        self.model, self.opt = model, opt

    def __call__(self, x: engine.Tensor, y: engine.Tensor, timer: _Timer) -> tuple[engine.Tensor, engine.Tensor]:
        loss, logits = _loss_and_logits(self.model(x), y)
        timer.lap("forward")
        self.opt.zero_grad()
        loss.backward()
        timer.lap("backward")
        self.opt.step()
        timer.lap("step")
        return loss, logits


class CompiledStep:
    """One training step as one graph (``graph.compile_step``: forward + loss + backward + optimizer update).

    One compiled step per batch shape: the last, smaller batch of an epoch gets its own graph once instead of
    recompiling the full-batch graph back and forth every epoch (dropping it would change what is trained).
    Parameters, BatchNorm buffers and ``optimizer.state`` are updated in place, as eager steps update them.
    """

    def __init__(self, model: nn.Module, opt: Any, backend: str | None, memory_budget: float | None = None):
        self.model, self.opt, self.backend, self.memory_budget = model, opt, backend, memory_budget
        self.steps: dict[tuple, Any] = {}
        self.compile_seconds = 0.0  # compiling step graphs and their first calls (numba JIT on a cold cache)
        self.kernels_compiled = 0

    def __call__(self, x: engine.Tensor, y: engine.Tensor, timer: _Timer) -> tuple[engine.Tensor, engine.Tensor]:
        key = (x.shape, y.shape)
        step = self.steps.get(key)
        if step is not None:
            loss, out = step(x, y)
            timer.lap("step")
            return loss, main_logits(out)
        # a new shape: compile, and JIT its kernels in its first call (timed as compiling, not as a step)
        with KernelWatch(self.backend, "the training step", sys.stdout) as watch:
            step = self.steps[key] = graph.compile_step(self.model, loss_with_aux, self.opt, x, y,
                                                        backend=self.backend, memory_budget=self.memory_budget,
                                                        return_outputs=True)
            loss, out = step(x, y)
        self.compile_seconds += watch.seconds
        self.kernels_compiled += watch.compiled
        timer.lap("compile")
        return loss, main_logits(out)

    @property
    def report(self) -> Any:
        """The compile report of the first (full-batch) step graph."""
        return next(iter(self.steps.values())).report if self.steps else None


class _Quiet:
    """The progress bar when stderr is not a terminal: a log gets the one summary line per epoch, not a redraw per
    batch."""

    def __init__(self, iterable: Any):
        self.iterable = iterable

    def __iter__(self) -> Any:
        return iter(self.iterable)

    def set_postfix(self, **_: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(loader: Any, desc: str, progress: bool = True) -> Any:
    """A tqdm bar on a terminal; nothing per batch when disabled or when stderr is a file or a pipe."""
    if not progress or not sys.stderr.isatty():
        return _Quiet(loader)
    from tqdm.auto import tqdm

    return tqdm(loader, desc=desc, unit="batch", dynamic_ncols=True, leave=True)


def train_one_epoch(model: nn.Module, loader: DataLoader, step: EagerStep | CompiledStep, epoch: int, desc: str,
                    progress: bool = True) -> dict[str, Any]:
    """One pass over ``loader`` (shuffled as epoch ``epoch``) with a progress bar: loss, accuracy, images/s, ETA."""
    model.train()
    loader.set_epoch(epoch)
    timer = _Timer()
    t0 = time.perf_counter()
    seen = correct = 0
    loss_sum = 0.0
    bar = progress_bar(loader, desc, progress)
    timer.lap("other")
    device = model_device(model)
    for x, y in bar:
        timer.lap("data")  # waiting for the prefetch thread
        x, y = x.to(device), y.to(device)  # a device run: the batch is copied in once
        loss, logits = step(x, y, timer)
        seen += len(y)
        loss_sum += float(loss.item()) * len(y)
        correct += int((logits.numpy().argmax(1) == y.numpy()).sum())
        if progress:
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.2f}%",
                            img_s=f"{seen / (time.perf_counter() - t0):.0f}", refresh=False)
        timer.lap("other")
    bar.close()
    return {"timer": timer, "seen": seen, "correct": correct, "loss_sum": loss_sum,
            "seconds": time.perf_counter() - t0}


def train(cfg: TrainConfig, splits: Splits | None = None) -> dict[str, Any]:
    """Run a whole training session; returns the metrics dictionary also written to ``metrics.json``.

    The run uses deterministic algorithms (``engine.use_deterministic_algorithms``; unless ``CONVGRAPH_CONV_ALGO``
    says otherwise): a measured choice depends on the machine's load, different algorithms round differently, and a
    seeded run (or a resumed one) must repeat bit for bit."""
    if cfg.backend is None:  # record the backend the run really used (config in metrics.json and checkpoints)
        cfg = replace(cfg, backend=engine.active_backend().name)
    was = engine.are_deterministic_algorithms_enabled()
    engine.use_deterministic_algorithms(was or "CONVGRAPH_CONV_ALGO" not in os.environ)
    try:
        return _train(cfg, splits)
    finally:
        engine.use_deterministic_algorithms(was)


def _train(cfg: TrainConfig, splits: Splits | None) -> dict[str, Any]:
    from engine import io

    out = Path(cfg.out)
    check_run_folder(out, cfg.resume, cfg.force)
    ckpt_path = out / "checkpoint.npz"
    old_lr = check_resume_config(asdict(cfg), stored_config(out), ckpt_path) if cfg.resume else None
    engine.set_backend(cfg.backend)
    engine.manual_seed(cfg.seed)
    splits = splits or get_splits(cfg.dataset, cfg.data_dir, cfg.val_size, cfg.seed, cfg.limit_train,
                                  cfg.classes, cfg.image_size, cfg.limit_test)
    info: DatasetInfo = splits.info
    train_tf, eval_tf = make_transforms(info, cfg.augment)
    train_loader = DataLoader(splits.train, cfg.batch_size, shuffle=True, seed=cfg.seed, transform=train_tf,
                              prefetch=cfg.prefetch)
    val_loader = DataLoader(splits.val, cfg.eval_batch_size, transform=eval_tf, prefetch=cfg.prefetch)
    test_loader = DataLoader(splits.test, cfg.eval_batch_size, transform=eval_tf, prefetch=cfg.prefetch)

    model = build_model(cfg.model, info.num_classes, info.channels)
    check_input_size(model, cfg.model, info)
    notes: list[str] = []
    trainable: list | None = None
    if cfg.finetune:
        head_keys = load_finetune(model, cfg.finetune)
        notes.append(f"fine-tuning from {cfg.finetune}: body loaded, new head {', '.join(head_keys)}")
        if cfg.freeze_body:
            trainable = freeze_all_but(model, head_keys)
            notes.append("body frozen: a fixed feature extractor, only the head trains")
    if cfg.train_last_only:
        trainable = freeze_all_but(model, classifier_parameter_names(model))
        notes.append("random features: conv filters stay at their random init, only Linear layers train")
    device = engine.get_backend(cfg.backend).device
    if device != "cpu":  # --device cuda: parameters, buffers and (below) every batch live on the GPU
        model.to(device)
        notes.append(f"tensors live on {device}")
    params = trainable if trainable is not None else list(model.parameters())
    opt = make_optimizer(cfg, params)
    sched = make_scheduler(cfg, opt)
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in params)

    history: list[dict] = []
    inherited: list[str] = []  # the notes of the run a resumed run continues
    start_epoch, best_acc = 1, best_so_far(out)
    if cfg.resume:
        state = io.load_checkpoint(ckpt_path, model=model, optimizer=opt, scheduler=sched)
        extra = state.get("extra") or {}  # load_checkpoint also restored the engine RNG (dropout) state
        start_epoch = int(state["epoch"]) + 1
        history = list(extra.get("history", []))
        best_acc = float(extra.get("best_acc", -1.0))
        inherited = [n for n in extra.get("notes", []) if n not in notes]
        notes.append(f"resumed from {ckpt_path} after epoch {start_epoch - 1}")
        if old_lr is not None:
            override_lr(opt, sched, old_lr, cfg.lr)
            notes.append(f"--lr {cfg.lr:g} overrides the checkpoint's {old_lr:g} from epoch {start_epoch}")
    elif best_acc >= 0:
        notes.append(f"--force: best.npz (validation accuracy {100 * best_acc:.2f}%) is kept until this run beats it")
    step: EagerStep | CompiledStep = EagerStep(model, opt)
    if not cfg.eager:
        step = CompiledStep(model, opt, cfg.backend, cfg.memory_budget)
        budget = "" if cfg.memory_budget is None else f", memory budget {cfg.memory_budget:g}"
        notes.append(f"training steps run through graph.compile_step on {cfg.backend}{budget} (--eager: op by op)")
    eval_model: Any = model
    if cfg.compile:
        eval_model = _CompiledEval(model, cfg.backend)
        notes.append(f"validation/test run through graph.compile() on {cfg.backend}")
    created = open_run_folder(out)
    for n in notes:
        print(n)
    notes = list(dict.fromkeys(inherited + notes))
    run = _Run(cfg, out, info, model, opt, sched, step, eval_model, history, notes, best_acc, n_params, n_train)
    try:
        return run.epochs(start_epoch, train_loader, val_loader, test_loader)
    except KeyboardInterrupt:
        raise RunInterrupted(run.last_saved or start_epoch - 1) from None
    finally:
        close_run_folder(created)


class _Run:
    """The epochs of one training session and the files they write."""

    def __init__(self, cfg: TrainConfig, out: Path, info: DatasetInfo, model: nn.Module, opt: Any, sched: Any,
                 step: EagerStep | CompiledStep, eval_model: Any, history: list[dict], notes: list[str],
                 best_acc: float, n_params: int, n_train: int):
        self.cfg, self.out, self.info, self.model, self.opt, self.sched = cfg, out, info, model, opt, sched
        self.step, self.eval_model, self.history, self.notes = step, eval_model, history, notes
        self.best_acc, self.n_params, self.n_train = best_acc, n_params, n_train
        self.last_saved = 0

    def epochs(self, start_epoch: int, train_loader: DataLoader, val_loader: DataLoader, test_loader: DataLoader,
               ) -> dict[str, Any]:
        cfg, info = self.cfg, self.info
        t_run = time.perf_counter()
        timer_total: dict[str, float] = {}
        steps_total = 0
        for epoch in range(start_epoch, cfg.epochs + 1):
            stats = train_one_epoch(self.model, train_loader, self.step, epoch, f"epoch {epoch}/{cfg.epochs}",
                                    cfg.progress)
            timer, seen, train_s = stats["timer"], stats["seen"], stats["seconds"]
            steps = len(train_loader)
            val = evaluate(self.eval_model, val_loader, info.num_classes)
            lr = current_lr(self.opt)
            if self.sched is not None:
                self.sched.step(val["loss"]) if cfg.scheduler == "plateau" else self.sched.step()
            rec = {"epoch": epoch, "train_loss": stats["loss_sum"] / max(seen, 1),
                   "train_acc": stats["correct"] / max(seen, 1), "val_loss": val["loss"], "val_acc": val["acc"],
                   "lr": lr, "train_seconds": train_s, "images_per_s": seen / train_s,
                   "step_ms": 1000 * train_s / max(steps, 1),
                   "time_ms_per_step": {k: 1000 * v / max(steps, 1) for k, v in timer.total.items()}}
            self.history.append(rec)
            for k, v in timer.total.items():
                timer_total[k] = timer_total.get(k, 0.0) + v
            steps_total += steps
            compiled = timer.total.get("compile")
            print(f"epoch {epoch}: train loss {rec['train_loss']:.4f} acc {100 * rec['train_acc']:.2f}% | "
                  f"val loss {val['loss']:.4f} acc {100 * val['acc']:.2f}% | {train_s:.1f}s, "
                  f"{rec['images_per_s']:.0f} img/s, {rec['step_ms']:.1f} ms/step"
                  + (f" (compiling the step: {compiled:.2f}s{self.jit_note()})" if compiled else ""))
            self.save(epoch, val["acc"])
            if cfg.stop_after is not None and epoch >= cfg.stop_after:
                print(f"stopping after epoch {epoch} (--stop-after)")
                return {"history": self.history, "stopped": epoch}
        return self.finish(test_loader, time.perf_counter() - t_run, timer_total, steps_total)

    def jit_note(self) -> str:
        n = getattr(self.step, "kernels_compiled", 0)
        return f", including JIT-compiling {n} numba kernel signatures" if n else ""

    def save(self, epoch: int, val_acc: float) -> None:
        from engine import io

        cfg = self.cfg
        best = val_acc > self.best_acc
        self.best_acc = max(self.best_acc, val_acc)
        extra = _json_ready({"model": cfg.model, "dataset": self.info.to_dict(), "history": self.history,
                             "best_acc": self.best_acc, "config": asdict(cfg), "notes": self.notes})
        io.save_checkpoint(self.out / "checkpoint.npz", model=self.model, optimizer=self.opt, scheduler=self.sched,
                           epoch=epoch, extra=extra)
        if best:
            io.save_checkpoint(self.out / "best.npz", model=self.model, epoch=epoch, extra=extra)
        self.write_metrics(test=None)
        self.last_saved = epoch

    def finish(self, test_loader: DataLoader, total_s: float, timer_total: dict[str, float], steps_total: int,
               ) -> dict[str, Any]:
        cfg, info = self.cfg, self.info
        test = evaluate(self.eval_model, test_loader, info.num_classes)
        print(f"test accuracy: {100 * test['acc']:.2f}% ({test['n']} images), loss {test['loss']:.4f}; "
              f"training time {total_s:.1f}s")
        breakdown = {k: 1000 * v / max(steps_total, 1) for k, v in timer_total.items()}
        metrics = self.write_metrics(test={"loss": test["loss"], "acc": test["acc"], "n": test["n"],
                                           "confusion": test["confusion"]},
                                     wall_seconds=total_s, time_ms_per_step=breakdown)
        if cfg.plots and self.history:
            plot_curves(self.history, self.out / "curves.png")
            plot_confusion(test["confusion"], info.classes, self.out / "confusion.png",
                           f"{cfg.model} on {info.name}: test accuracy {100 * test['acc']:.2f}%")
        return metrics

    def write_metrics(self, test: dict | None, **more: Any) -> dict:
        cfg = self.cfg
        metrics = {"model": cfg.model, "dataset": self.info.to_dict(), "config": asdict(cfg), "notes": self.notes,
                   "parameters": self.n_params, "trainable_parameters": self.n_train, "epochs": self.history,
                   "test": test, **more}
        if isinstance(self.step, CompiledStep):
            metrics["compile_seconds"] = self.step.compile_seconds
            metrics["kernels_jit_compiled"] = self.step.kernels_compiled
        tmp = self.out / "metrics.json.tmp"
        tmp.write_text(json.dumps(_json_ready(metrics), indent=2))
        tmp.replace(self.out / "metrics.json")
        return metrics


def override_lr(opt: Any, sched: Any, old: float, new: float) -> None:
    """``--lr`` on ``--resume``: scale every group's learning rate (and the scheduler's base) by new / old."""
    for group in opt.param_groups:
        group["lr"] = group["lr"] * new / old
        if "initial_lr" in group:
            group["initial_lr"] = group["initial_lr"] * new / old
    if sched is not None and hasattr(sched, "base_lrs"):
        sched.base_lrs = [b * new / old for b in sched.base_lrs]


def check_input_size(model: nn.Module, name: str, info: DatasetInfo) -> None:
    """Run the model abstractly (shapes only, eval mode: no dropout draw, no statistics) on a batch of the dataset's
    images: a clear error when they do not fit."""
    from engine import autograd

    shape = (2, info.channels, *info.size)
    was_training = model.training
    model.eval()
    try:
        with autograd.no_grad(), autograd.abstract():
            model(engine.Tensor._make(None, Spec(shape, np.dtype(np.float32))))
    except ValueError as e:
        hint = " (resize them with --image-size H W)" if info.name == "folder" else ""
        raise ValueError(f"model {name!r} does not take {info.name} images of {info.size[0]}x{info.size[1]} "
                         f"with {info.channels} channel(s){hint}: {str(e).splitlines()[0]}") from e
    finally:
        model.train(was_training)


# --- using a trained checkpoint -------------------------------------------------------------------------------
def load_trained(checkpoint: str | Path, model_name: str | None = None) -> tuple[nn.Module, DatasetInfo]:
    """Rebuild the model a ``convgraph train`` checkpoint was written for, load its weights, put it in eval mode.

    Returns the model and the dataset description (classes, channels, image size, normalization) stored with it.
    """
    from engine import io

    ck = io.load_checkpoint(checkpoint, restore_rng=False)
    extra = ck.get("extra") or {}
    ds = extra.get("dataset")
    if ds is None:
        raise ValueError(f"{checkpoint}: not a convgraph train checkpoint (no dataset description in 'extra')")
    stored = extra.get("model")
    if model_name and stored and model_name != stored:
        raise ValueError(f"{checkpoint} holds a {stored!r} model, not {model_name!r}")
    info = DatasetInfo(ds["name"], int(ds["channels"]), tuple(ds["size"]), list(ds["classes"]), list(ds["mean"]),
                       list(ds["std"]), subset=ds.get("subset"), data_dir=ds.get("data_dir"))
    model = build_model(model_name or stored, info.num_classes, info.channels)
    model.load_state_dict(ck["model"])
    model.eval()
    model.to(engine.active_backend().device)  # --backend cuda: evaluated where the active backend's tensors live
    return model, info
