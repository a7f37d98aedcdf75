"""DataLoader num_workers (worker processes: same batches as num_workers=0, per-worker seeding, worker_init_fn,
errors, early stop) and collate_fn / default_collate (vs torch's default_collate)."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from engine import Tensor
from engine.data import DataLoader, Dataset, TensorDataset, default_collate, get_worker_info

try:
    import torch
except ImportError:  # only the PyTorch comparisons skip
    torch = None


def make(n: int = 23) -> TensorDataset:
    return TensorDataset(np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n))


def noise(x, rng):
    return x + rng.normal(size=x.shape).astype(np.float32)


def _batches(loader, epochs=2):
    return [[(x.numpy().copy(), y.numpy().copy()) for x, y in loader] for _ in range(epochs)]


@pytest.mark.parametrize("num_workers", [1, 3])
def test_same_batches_as_without_workers(num_workers):
    ref = _batches(DataLoader(make(), 4, shuffle=True, seed=5, transform=noise))
    got = _batches(DataLoader(make(), 4, shuffle=True, seed=5, transform=noise, num_workers=num_workers, prefetch=1))
    assert len(got[0]) == 6
    for e_ref, e_got in zip(ref, got):
        for (xr, yr), (xg, yg) in zip(e_ref, e_got):
            np.testing.assert_array_equal(xr, xg)
            np.testing.assert_array_equal(yr, yg)
    assert not mp.active_children()  # workers are joined at the end of each epoch


class WhoLoads(Dataset):
    """Each sample records the worker that loaded it and a draw from numpy's global generator."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        info = get_worker_info()
        return np.array([i, -1 if info is None else info.id, np.random.random(), INIT.get("id", -1)])


INIT: dict = {}


def _init(worker_id: int) -> None:
    INIT["id"] = worker_id * 10


def test_round_robin_per_worker_seeding_and_init_fn():
    def run():
        loader = DataLoader(WhoLoads(), 2, num_workers=2, seed=9, worker_init_fn=_init)
        return np.concatenate([b[0].numpy() for b in loader])

    a, b = run(), run()
    assert a[:, 0].tolist() == list(range(12))
    assert a[:, 1].tolist() == [0, 0, 1, 1] * 3  # batch k from worker k % 2
    assert a[:, 3].tolist() == [0, 0, 10, 10] * 3  # worker_init_fn ran in each worker
    np.testing.assert_array_equal(a, b)  # seeded per (seed, epoch, worker): reproducible
    assert a[0, 2] != a[2, 2]  # workers do not repeat each other's draws
    assert get_worker_info() is None


class Broken(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        if i == 7:
            raise KeyError("sample 7 is broken")
        return np.float32(i)


def test_worker_errors_reach_the_caller_and_early_break_stops_workers():
    with pytest.raises(KeyError, match="sample 7 is broken"):
        list(DataLoader(Broken(), 2, num_workers=2))
    assert not mp.active_children()
    for _ in DataLoader(make(200), 2, num_workers=2):
        break
    assert not mp.active_children()


class Sleepy(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        import time

        time.sleep(1.0 if i == 2 else 0.0)
        return np.float32(i)


def test_worker_timeout():
    with pytest.raises(RuntimeError, match="DataLoader: timed out after 0.2 s while loading batch 1"):
        list(DataLoader(Sleepy(), 2, num_workers=1, timeout=0.2))
    assert not mp.active_children()


def _collate_sum(samples):
    return {"x": np.stack([s[0] for s in samples]).sum(0), "n": len(samples)}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_collate_fn_gets_the_list_of_samples(num_workers):
    got = list(DataLoader(make(10), 4, collate_fn=_collate_sum, num_workers=num_workers))
    assert [g["n"] for g in got] == [4, 4, 2]
    np.testing.assert_array_equal(got[0]["x"], make(10).arrays[0][:4].sum(0))


def test_default_collate_against_torch():
    samples = [(np.full((2, 3), i, np.float32), i, {"a": np.float64(i) / 2, "b": [i, i + 1]}) for i in range(4)]
    ours = default_collate(samples)
    x, y, d = ours
    assert isinstance(x, Tensor) and x.shape == (4, 2, 3) and y.tolist() == [0, 1, 2, 3]
    assert d["a"].tolist() == [0, 0.5, 1, 1.5] and [t.tolist() for t in d["b"]] == [[0, 1, 2, 3], [1, 2, 3, 4]]
    for workers in (0, 2):  # Tensors made in a worker come back through the results pipe
        loader = DataLoader(make(6), 3, collate_fn=default_collate, num_workers=workers)
        batches = list(loader)
        assert all(isinstance(t, Tensor) for batch in batches for t in batch)
        assert [b[1].tolist() for b in batches] == [[0, 1, 2], [3, 4, 5]]
    if torch is None:
        pytest.skip("torch is not installed")
    theirs = torch.utils.data.default_collate(samples)
    np.testing.assert_array_equal(x.numpy(), theirs[0].numpy())
    np.testing.assert_array_equal(y.numpy(), theirs[1].numpy())
    np.testing.assert_array_equal(d["a"].numpy(), theirs[2]["a"].numpy())
    for ours_b, theirs_b in zip(d["b"], theirs[2]["b"]):
        np.testing.assert_array_equal(ours_b.numpy(), theirs_b.numpy())


def test_bad_arguments():
    with pytest.raises(ValueError, match="DataLoader: num_workers must be a non-negative integer, got -1"):
        DataLoader(make(), num_workers=-1)
    with pytest.raises(ValueError, match="DataLoader: transform applies to the default collation only"):
        DataLoader(make(), transform=noise, collate_fn=default_collate)
