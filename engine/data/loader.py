"""DataLoader: seeded shuffling, batching, batch transforms, a background prefetch thread or worker processes,
and ``collate_fn``.

Determinism: epoch ``e`` is shuffled with ``default_rng([seed, e])`` and batch ``b`` of that epoch is
augmented with ``default_rng([seed, e, b])``. Every random draw is therefore a pure function of
(seed, epoch, batch), independent of thread timing and of how many epochs ran in this process -- which is
what makes a resumed run (``set_epoch(k)``) replay exactly the batches an uninterrupted run would see, and
why ``num_workers > 0`` (engine/data/workers.py) yields exactly the batches of ``num_workers=0``.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..random import generator
from ..tensor import Tensor
from .dataset import Dataset, _as_array
from .workers import run_workers

__all__ = ["DataLoader", "default_collate"]

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class DataLoader:
    """Iterate over ``dataset`` in batches.

    Parameters
    ----------
    batch_size, shuffle, drop_last
        As in PyTorch.
    seed
        Seed of the shuffling and augmentation randomness. ``None`` draws one from ``engine.random``
        (so ``engine.manual_seed`` still makes the run reproducible).
    transform
        ``transform(x, rng) -> x`` applied to the first array of every batch (N, C, H, W), e.g. an
        :class:`engine.data.transforms.Compose`.
    prefetch
        Number of batches prepared ahead by a background thread (0 = load in the calling thread).
    as_tensor
        Yield ``engine.Tensor`` objects (default) instead of numpy arrays.
    num_workers
        Worker processes loading batches (0 = no processes). Batch ``b`` goes to worker ``b % num_workers`` and
        batches come back in order: the same batches as with 0 workers. Each worker seeds numpy's global
        generator, ``random`` and ``engine.random`` per (seed, epoch, worker) and then calls
        ``worker_init_fn(worker_id)``; :func:`engine.data.get_worker_info` tells a worker who it is. With workers,
        ``prefetch`` is the number of batches in flight per worker (at least 1).
    collate_fn
        ``collate_fn(list of samples) -> batch``, as in PyTorch: the batch is built from ``dataset[i]`` samples
        and yielded as returned (no ``transform``, no Tensor conversion). ``None`` gathers the batch with
        ``dataset.get_batch`` (vectorized) and stacks it.
    """

    def __init__(self, dataset: Dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None, transform: Callable[..., np.ndarray] | None = None, prefetch: int = 2,
                 as_tensor: bool = True, num_workers: int = 0, collate_fn: Callable[[list[Any]], Any] | None = None,
                 worker_init_fn: Callable[[int], None] | None = None, timeout: float = 0.0):
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if prefetch < 0:
            raise ValueError(f"DataLoader: prefetch must be >= 0, got {prefetch}")
        if not isinstance(num_workers, (int, np.integer)) or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers must be a non-negative integer, got {num_workers!r}")
        if timeout < 0:
            raise ValueError(f"DataLoader: timeout must be >= 0, got {timeout}")
        if collate_fn is not None and transform is not None:
            raise ValueError("DataLoader: transform applies to the default collation only; with a collate_fn, "
                             "apply it inside collate_fn")
        self.num_workers, self.collate_fn = int(num_workers), collate_fn
        self.worker_init_fn, self.timeout = worker_init_fn, float(timeout)
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        if seed is None:
            seed = int(generator().integers(2**31))
        self.seed = int(seed)
        self.transform = transform
        self.prefetch = int(prefetch)
        self.as_tensor = as_tensor
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The next iteration shuffles and augments as epoch ``epoch`` (used when resuming)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """The index batches epoch ``epoch`` visits, in order."""
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        return [order[i:i + self.batch_size] for i in range(0, stop, self.batch_size)]

    def _fetch(self, epoch: int, b: int, idx: np.ndarray) -> Any:
        """Batch ``b`` as numpy arrays (or the collate_fn's result); runs in a worker when there are workers."""
        if self.collate_fn is not None:
            return self.collate_fn([self.dataset[int(i)] for i in idx])
        arrays = list(self.dataset.get_batch(idx))
        if self.transform is not None:
            arrays[0] = self.transform(arrays[0], np.random.default_rng([self.seed, epoch, b]))
        return tuple(arrays)

    def _finish(self, batch: Any) -> Any:
        if self.collate_fn is not None or not self.as_tensor:
            return batch
        return tuple(Tensor(a) for a in batch)

    def _load(self, epoch: int, b: int, idx: np.ndarray) -> Any:
        return self._finish(self._fetch(epoch, b, idx))

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        self.epoch += 1
        batches = self.batch_indices(epoch)
        if self.num_workers > 0:
            loaded = run_workers(self.num_workers, self.seed, epoch, self.dataset,
                                 functools.partial(self._fetch, epoch), batches, max(self.prefetch, 1),
                                 self.worker_init_fn, self.timeout)
            return (self._finish(batch) for batch in loaded)
        if self.prefetch == 0:
            return (self._load(epoch, b, idx) for b, idx in enumerate(batches))
        return self._prefetching(epoch, batches)

    def _prefetching(self, epoch: int, batches: list[np.ndarray]) -> Iterator[tuple[Any, ...]]:
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for b, idx in enumerate(batches):
                    if not put(self._load(epoch, b, idx)):
                        return
                put(_DONE)
            except BaseException as e:  # forwarded to the consumer, re-raised there
                put(_Failure(e))

        worker = threading.Thread(target=produce, name="DataLoader-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:  # also runs when the consumer stops early (break / close)
            stop.set()
            worker.join()


def default_collate(samples: list[Any]) -> Any:
    """torch.utils.data.default_collate: stack samples into Tensors along a new first axis, recursing into
    tuples, lists and dicts (one batch per position / key); numbers become a 1-D Tensor."""
    first = samples[0]
    if isinstance(first, Mapping):
        return {k: default_collate([s[k] for s in samples]) for k in first}
    if isinstance(first, (tuple, list)):
        if any(len(s) != len(first) for s in samples):
            raise ValueError("default_collate: every sample must have the same number of fields")
        fields = [default_collate(list(field)) for field in zip(*samples)]
        return tuple(fields) if isinstance(first, tuple) else fields
    if isinstance(first, str):
        return list(samples)
    return Tensor(np.stack([_as_array(s) for s in samples]))
