"""DataLoader worker processes: batch ``b`` of an epoch is loaded by worker ``b % num_workers`` and batches are
yielded in order, so the stream is identical to ``num_workers=0`` (every random draw of a batch already depends
only on (seed, epoch, batch), see engine/data/loader.py).

Each worker seeds numpy's legacy global generator, Python's ``random`` and ``engine.random`` from
``SeedSequence([seed, epoch, worker_id])`` (so a dataset that draws from those in ``__getitem__`` is reproducible
and workers do not repeat each other's draws), sets :func:`get_worker_info`, then runs ``worker_init_fn``. Workers
are forked where the platform can (the dataset is shared, not pickled), else spawned. Errors in a worker reach
the caller with the worker and batch named; an early ``break`` stops and joins the workers.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import random
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import random as engine_random

__all__ = ["WorkerInfo", "get_worker_info", "worker_seed", "run_workers"]


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker process knows about itself (``None`` from :func:`get_worker_info` in the main process)."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """torch.utils.data.get_worker_info: this worker's id, count, seed and dataset copy; None outside workers."""
    return _info


def worker_seed(seed: int, epoch: int, worker_id: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, worker_id]).generate_state(1)[0])


class _WorkerError:
    def __init__(self, worker_id: int, batch: int, exc: BaseException):
        self.text = (f"DataLoader worker {worker_id} failed on batch {batch}: {type(exc).__name__}: {exc}\n"
                     + "".join(traceback.format_exception(exc)))
        try:  # re-raise the original type in the caller where it pickles
            import pickle

            pickle.dumps(exc)
            self.exc: BaseException | None = exc
        except Exception:
            self.exc = None


def _worker_main(worker_id: int, num_workers: int, seed: int, dataset: Any, load: Callable[[int, Any], Any],
                 init_fn: Callable[[int], None] | None, tasks: Any, results: Any) -> None:
    global _info
    random.seed(seed)
    np.random.seed(seed % 2**32)
    engine_random.manual_seed(seed)
    _info = WorkerInfo(worker_id, num_workers, seed, dataset)
    b = -1
    try:
        if init_fn is not None:
            init_fn(worker_id)
        while True:
            task = tasks.get()
            if task is None:
                return
            b, idx = task
            results.put((b, load(b, idx)))
    except BaseException as e:  # forwarded to the caller, re-raised there
        results.put((b, _WorkerError(worker_id, b, e)))


def _context() -> Any:
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def run_workers(num_workers: int, seed: int, epoch: int, dataset: Any, load: Callable[[int, Any], Any],
                batches: list[Any], ahead: int, init_fn: Callable[[int], None] | None = None,
                timeout: float = 0.0) -> Iterator[Any]:
    """Yield ``load(b, batches[b])`` for every ``b`` in order, computed by ``num_workers`` processes with at most
    ``ahead`` batches per worker in flight."""
    ctx = _context()
    results = ctx.Queue()
    task_queues = [ctx.Queue() for _ in range(num_workers)]
    procs = [ctx.Process(target=_worker_main, name=f"DataLoader-worker-{w}", daemon=True,
                         args=(w, num_workers, worker_seed(seed, epoch, w), dataset, load, init_fn, task_queues[w],
                               results))
             for w in range(num_workers)]
    for p in procs:
        p.start()
    sent, done, buffer = 0, 0, {}
    try:
        while done < len(batches):
            while sent < len(batches) and sent < done + ahead * num_workers:
                task_queues[sent % num_workers].put((sent, batches[sent]))
                sent += 1
            while done not in buffer:
                try:
                    b, item = results.get(timeout=timeout if timeout > 0 else 5.0)
                except queue.Empty:
                    dead = [p.name for p in procs if not p.is_alive()]
                    if dead or timeout > 0:
                        why = f"{', '.join(dead)} exited unexpectedly" if dead else f"timed out after {timeout} s"
                        raise RuntimeError(f"DataLoader: {why} while loading batch {done}") from None
                    continue
                if isinstance(item, _WorkerError):
                    if item.exc is not None:
                        raise item.exc from RuntimeError(item.text)
                    raise RuntimeError(item.text)
                buffer[b] = item
            yield buffer.pop(done)
            done += 1
    finally:  # also when the consumer stops early (break / close) or a worker failed
        if done < len(batches):  # nothing more is wanted: a worker may be blocked on a full results pipe
            for p in procs:
                p.terminate()
        else:
            for q in task_queues:
                q.put(None)
        for p in procs:
            p.join(timeout=5.0)
            if p.is_alive():
                p.terminate()
                p.join()
        for q in task_queues + [results]:
            q.close()
            q.cancel_join_thread()
