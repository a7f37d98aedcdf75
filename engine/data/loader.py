"""DataLoader: seeded shuffling, batching, batch transforms and a background prefetch thread.

Determinism: epoch ``e`` is shuffled with ``default_rng([seed, e])`` and batch ``b`` of that epoch is
augmented with ``default_rng([seed, e, b])``. Every random draw is therefore a pure function of
(seed, epoch, batch), independent of thread timing and of how many epochs ran in this process -- which is
what makes a resumed run (``set_epoch(k)``) replay exactly the batches an uninterrupted run would see.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..random import generator
from ..tensor import Tensor
from .dataset import Dataset

__all__ = ["DataLoader"]

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
    """

    def __init__(self, dataset: Dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None, transform: Callable[..., np.ndarray] | None = None, prefetch: int = 2,
                 as_tensor: bool = True):
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if prefetch < 0:
            raise ValueError(f"DataLoader: prefetch must be >= 0, got {prefetch}")
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

    def _load(self, epoch: int, b: int, idx: np.ndarray) -> tuple[Any, ...]:
        arrays = list(self.dataset.get_batch(idx))
        if self.transform is not None:
            arrays[0] = self.transform(arrays[0], np.random.default_rng([self.seed, epoch, b]))
        if self.as_tensor:
            return tuple(Tensor(a) for a in arrays)
        return tuple(arrays)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        epoch = self.epoch
        self.epoch += 1
        batches = self.batch_indices(epoch)
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
