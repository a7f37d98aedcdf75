"""Datasets: indexable collections of samples, as in ``torch.utils.data``.

A dataset may also implement ``get_batch(indices) -> tuple of arrays``; :class:`~engine.data.DataLoader`
uses it to gather a whole batch with one fancy-indexing call instead of a Python loop over samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Dataset", "TensorDataset", "Subset", "random_split"]


def _as_array(a: Any) -> np.ndarray:
    return np.asarray(a.numpy() if hasattr(a, "numpy") else a)


class Dataset:
    """Base class: subclasses define ``__getitem__(i)`` and ``__len__()``."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        """Samples ``indices`` stacked along a new first axis (a Python loop; subclasses vectorize it)."""
        samples = [self[int(i)] for i in indices]
        if not isinstance(samples[0], tuple):
            return (np.stack([_as_array(s) for s in samples]),)
        return tuple(np.stack([_as_array(s[k]) for s in samples]) for k in range(len(samples[0])))


class TensorDataset(Dataset):
    """Arrays (or Tensors) sharing their first dimension; sample i is ``tuple(a[i] for a in arrays)``."""

    def __init__(self, *arrays: Any):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays = tuple(_as_array(a) for a in arrays)
        n = len(self.arrays[0])
        for k, a in enumerate(self.arrays):
            if len(a) != n:
                sizes = [len(b) for b in self.arrays]
                raise ValueError(f"TensorDataset: all arrays must have the same first dimension, got {sizes} "
                                 f"(array {k} differs)")

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        return tuple(a[index] for a in self.arrays)

    def __len__(self) -> int:
        return len(self.arrays[0])

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(a[indices] for a in self.arrays)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        n = len(dataset)
        if len(self.indices) and (self.indices.min() < -n or self.indices.max() >= n):
            raise IndexError(f"Subset: indices must lie in [0, {n}), got range "
                             f"[{self.indices.min()}, {self.indices.max()}]")

    def __getitem__(self, index: int) -> Any:
        return self.dataset[int(self.indices[index])]

    def __len__(self) -> int:
        return len(self.indices)

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        return self.dataset.get_batch(self.indices[np.asarray(indices)])


def random_split(dataset: Dataset, lengths: Sequence[int | float], seed: int = 0) -> list[Subset]:
    """Split into non-overlapping random subsets of the given lengths (or fractions summing to 1).

    The permutation comes from ``numpy.random.default_rng(seed)``, so a split is a pure function of its seed.
    """
    n = len(dataset)
    if all(isinstance(x, float) for x in lengths) and abs(sum(lengths) - 1.0) < 1e-6:
        counts = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):  # hand the remainder out round-robin, like torch
            counts[i % len(counts)] += 1
    else:
        counts = [int(x) for x in lengths]
    if sum(counts) != n or min(counts) < 0:
        raise ValueError(f"random_split: lengths {list(lengths)} must be non-negative and sum to the dataset "
                         f"size {n} (got {sum(counts)})")
    perm = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum([0, *counts])
    return [Subset(dataset, perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
