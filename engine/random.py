"""One seedable generator behind every random draw (init, dropout, shuffling, augmentation)."""

from __future__ import annotations

import numpy as np

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Reset the global generator; a seeded run is then reproducible bit for bit on one backend."""
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def generator() -> np.random.Generator:
    return _rng


def get_rng_state() -> dict:
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    _rng.bit_generator.state = state


def next_key() -> np.ndarray:
    """Draw the next random key (an int64 scalar) from the global generator; random primitives expand keys
    into masks deterministically, so one key per random op keeps eager and compiled runs on the same stream."""
    return np.asarray(_rng.integers(0, np.iinfo(np.int64).max), dtype=np.int64)
