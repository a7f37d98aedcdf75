"""engine.data datasets and DataLoader: batching, seeded shuffling, drop_last, prefetch, splits."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import engine
from engine.data import DataLoader, Dataset, Subset, TensorDataset, random_split


def make(n: int = 10) -> TensorDataset:
    return TensorDataset(np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n))


def labels(loader) -> list[list[int]]:
    return [y.tolist() for _, y in loader]


@pytest.mark.parametrize("prefetch", [0, 2])
def test_batches_in_order_with_last_partial_batch(prefetch):
    loader = DataLoader(make(10), batch_size=4, prefetch=prefetch)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert isinstance(batches[0][0], engine.Tensor) and batches[0][0].shape == (4, 2)
    np.testing.assert_array_equal(batches[2][0].numpy(), [[16, 17], [18, 19]])


def test_drop_last():
    loader = DataLoader(make(10), batch_size=4, drop_last=True)
    assert len(loader) == 2 and labels(loader) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_shuffle_is_a_seeded_permutation_per_epoch():
    a = DataLoader(make(20), batch_size=6, shuffle=True, seed=7)
    b = DataLoader(make(20), batch_size=6, shuffle=True, seed=7, prefetch=0)
    e1, e2 = labels(a), labels(a)
    assert e1 == labels(b) and e2 == labels(b)  # same seed -> same order, epoch by epoch
    assert e1 != e2  # a fresh permutation each epoch
    assert sorted(sum(e1, [])) == list(range(20))  # every sample exactly once
    assert labels(DataLoader(make(20), batch_size=6, shuffle=True, seed=8)) != e1
    c = DataLoader(make(20), batch_size=6, shuffle=True, seed=7)
    c.set_epoch(1)  # resuming at epoch 1 replays exactly epoch 1
    assert labels(c) == e2


def test_unseeded_loader_follows_engine_manual_seed():
    engine.manual_seed(3)
    first = labels(DataLoader(make(12), batch_size=5, shuffle=True))
    engine.manual_seed(3)
    assert labels(DataLoader(make(12), batch_size=5, shuffle=True)) == first


def test_transform_gets_a_per_batch_seeded_rng_and_numpy_output():
    calls = []

    def noise(x, rng):
        calls.append(1)
        return x + rng.normal(size=x.shape).astype(np.float32)

    def run(prefetch):
        loader = DataLoader(make(9), batch_size=4, transform=noise, seed=1, as_tensor=False, prefetch=prefetch)
        return [x for x, _ in loader]

    a, b = run(0), run(3)
    assert isinstance(a[0], np.ndarray) and len(calls) == 6
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)  # thread timing does not change the randomness
    assert not np.allclose(a[0] - make(9).arrays[0][:4], a[1] - make(9).arrays[0][4:8])


def test_prefetch_runs_ahead_in_a_background_thread():
    loaded: list[tuple[int, str]] = []

    class Slow(Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            loaded.append((i, threading.current_thread().name))
            return np.float32(i), i

    it = iter(DataLoader(Slow(), batch_size=2, prefetch=2))
    x, y = next(it)
    assert y.tolist() == [0, 1]
    assert all(name == "DataLoader-prefetch" for _, name in loaded)
    rest = [b[1].tolist() for b in it]
    assert rest == [[2, 3], [4, 5], [6, 7]]


def test_errors_in_the_prefetch_thread_reach_the_caller_and_early_break_stops_it():
    class Broken(Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            if i == 4:
                raise KeyError("sample 4 is broken")
            return np.float32(i)

    with pytest.raises(KeyError, match="sample 4 is broken"):
        list(DataLoader(Broken(), batch_size=2))
    before = threading.active_count()
    for _ in DataLoader(make(100), batch_size=2, prefetch=1):
        break
    assert threading.active_count() == before


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        DataLoader(make(), batch_size=0)
    with pytest.raises(ValueError, match=r"same first dimension, got \[3, 2\]"):
        TensorDataset(np.zeros(3), np.zeros(2))


def test_subset_and_random_split():
    ds = make(10)
    sub = Subset(ds, [9, 0, 4])
    assert len(sub) == 3 and sub[0][1] == 9
    assert [y.tolist() for _, y in DataLoader(sub, batch_size=3)] == [[9, 0, 4]]
    a, b = random_split(ds, [7, 3], seed=5)
    assert len(a) == 7 and len(b) == 3
    assert sorted(np.concatenate([a.indices, b.indices]).tolist()) == list(range(10))
    a2, _ = random_split(ds, [7, 3], seed=5)
    np.testing.assert_array_equal(a.indices, a2.indices)
    f = random_split(ds, [0.5, 0.3, 0.2])
    assert [len(s) for s in f] == [5, 3, 2]
    with pytest.raises(ValueError, match="sum to the dataset size 10"):
        random_split(ds, [4, 4])


def test_generic_dataset_batches_by_stacking_samples():
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full((2, 2), i * i, np.float32), i

    (x, y), = list(DataLoader(Squares(), batch_size=5, prefetch=0))
    assert x.shape == (5, 2, 2) and x.numpy()[3, 0, 0] == 9 and y.tolist() == [0, 1, 2, 3, 4]
