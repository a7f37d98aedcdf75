"""The run folder of ``convgraph train``: what may be written into it, and when.

A run folder holds ``checkpoint.npz``, ``best.npz``, ``metrics.json`` and the plots. A run is never overwritten by
accident: training into a folder that holds one needs ``resume`` (continue it, with the same model, data and
optimizer) or ``force`` (start over; ``best.npz`` is still replaced only by a better model). The folder is created
when the run starts (once data and model loaded), checked writable before the first epoch, and removed again when
the run ends before anything was written into it.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

RUN_FILES = ("checkpoint.npz", "best.npz", "metrics.json")
# what a resumed run must share with the run it continues (the learning rate may be overridden, and is recorded)
RESUME_MUST_MATCH = ("model", "dataset", "optimizer", "momentum", "weight_decay", "scheduler", "batch_size",
                     "classes", "image_size", "train_last_only", "finetune", "freeze_body")


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``epoch`` is the last epoch whose checkpoint was written (0: none)."""

    def __init__(self, epoch: int):
        self.epoch = epoch
        msg = (f"interrupted after epoch {epoch}; continue with --resume" if epoch else
               "interrupted in the first epoch, before any checkpoint was written; nothing was saved")
        super().__init__(msg)


def check_run_folder(out: Path, resume: bool, force: bool) -> None:
    """Refuse to start a new run over an existing one, or to resume one that is not there."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: exists and is not a folder")
    if resume:
        if not (out / "checkpoint.npz").is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {out / 'checkpoint.npz'}")
        return
    existing = [f for f in RUN_FILES if (out / f).exists()]
    if existing and not force:
        raise FileExistsError(f"--out {out} already holds a run ({', '.join(existing)}); continue it with --resume, "
                              "start over with --force, or choose another --out")


def stored_config(out: Path) -> dict[str, Any]:
    """The training configuration recorded in ``out/checkpoint.npz`` (empty when there is none)."""
    from engine import io

    path = out / "checkpoint.npz"
    if not path.is_file():
        return {}
    return dict((io.load_checkpoint(path, restore_rng=False).get("extra") or {}).get("config") or {})


def check_resume_config(cfg: dict[str, Any], stored: dict[str, Any], path: Path) -> float | None:
    """A clear error naming every setting that differs from the checkpoint's; returns the checkpoint's learning
    rate when ``cfg`` overrides it (else None)."""
    differ = [(k, stored[k], cfg.get(k)) for k in RESUME_MUST_MATCH if k in stored and _differs(stored[k], cfg.get(k))]
    if differ:
        said = ", ".join(f"{k} {new!r} (checkpoint: {old!r})" for k, old, new in differ)
        raise ValueError(f"--resume {path}: this run differs from the checkpoint's in {said}; resume with the "
                         "checkpoint's settings, or start a new run with another --out")
    old_lr = stored.get("lr")
    return float(old_lr) if old_lr is not None and not math.isclose(old_lr, cfg["lr"], rel_tol=1e-12) else None


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) != list(b)
    if isinstance(a, float) or isinstance(b, float):
        return a is None or b is None or not math.isclose(float(a), float(b), rel_tol=1e-12)
    return a != b


def open_run_folder(out: Path) -> list[Path]:
    """Create ``out`` (parents too) and check a file can be written there; returns the folders this call created,
    deepest first."""
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        for p in created:  # leave nothing behind
            _remove_if_empty(p)
        raise PermissionError(f"--out {out}: cannot write there ({e.strerror or e})") from e
    return created


def close_run_folder(created: list[Path]) -> None:
    """Remove the folders this run created if it wrote nothing into them."""
    for p in created:
        _remove_if_empty(p)


def _remove_if_empty(p: Path) -> None:
    try:
        p.rmdir()
    except OSError:
        pass


def best_so_far(out: Path) -> float:
    """The validation accuracy of the model in ``out/best.npz`` (-1 when there is none): a new run started with
    --force replaces it only with a better one."""
    from engine import io

    path = out / "best.npz"
    if not path.is_file():
        return -1.0
    extra = io.load_checkpoint(path, restore_rng=False).get("extra") or {}
    return float(extra.get("best_acc", -1.0))
