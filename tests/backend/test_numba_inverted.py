"""MobileNetV2's inverted residual block as one call on the numba backend (blocked/inverted.py: the expand 1x1
computed row band by row band into per-thread scratch, the depthwise layer and the project 1x1 after it): equal to
the three layers run on their own (the same tiles, so the same bits) and to eager numpy, for channel counts that
are not block multiples, odd planes, stride 1 and 2, two images, one-row and whole-band segments, serial and
parallel."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import graph
from backends.numba.blocked import conv as bconv
from backends.numba.blocked import inverted
from engine import Tensor, nn, no_grad
from tests.null.graph_models import randomize_bn
from zoo.models.mobilenet import InvertedResidual


def _blocks():
    """A residual block (20 -> 120 hidden -> 20) and a strided one (20 -> 120 -> 36) on a 13x11 plane, two images;
    a ReLU after (the last BN then folds: a BN whose output is the graph's stays a node)."""
    m = randomize_bn(nn.Sequential(InvertedResidual(20, 20, 1, 6), InvertedResidual(20, 36, 2, 6), nn.ReLU()))
    m.eval()
    return m, np.random.default_rng(1).standard_normal((2, 20, 13, 11)).astype(np.float32) * 3


def _run(m, x, monkeypatch, fused: bool, seg_bytes: int, parallel: bool, small: bool = False):
    monkeypatch.setattr(inverted, "MIN_EXPANDED_BYTES", 0 if fused else 1 << 62)
    monkeypatch.setattr(inverted, "SMALL_BLOCKS_IN_ONE_REGION", small)
    monkeypatch.setattr(inverted, "EXPAND_BYTES", seg_bytes)
    monkeypatch.setattr(bconv, "SERIAL_MACS", 0 if parallel else 1 << 62)
    cm = graph.compile(m, x, backend="numba", layout="blocked")
    got = [cm(v).data.copy() for v in (x, -x)]  # a second input: the one call reads the input's current values
    return got, [len(run) for run in cm.compiled.executor.chained]


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial"])
@pytest.mark.parametrize("seg_bytes", [1, 1 << 20], ids=["one-row-segments", "whole-bands"])
def test_inverted_block_as_one_call_equals_the_layers_and_eager(seg_bytes, parallel, monkeypatch):
    m, x = _blocks()
    with engine.use_backend("numpy"), no_grad():
        refs = [m(Tensor(v)).data for v in (x, -x)]
    fused, runs = _run(m, x, monkeypatch, True, seg_bytes, parallel)
    assert runs == [3, 3]  # both blocks ran as one call each
    apart, runs = _run(m, x, monkeypatch, False, seg_bytes, parallel)
    assert 3 not in runs
    # the expand, a wait, then the pair, in one region (blocks whose expanded tensor stays in L2)
    small, runs = _run(m, x, monkeypatch, False, seg_bytes, parallel, small=True)
    assert runs == ([3, 3] if parallel else [2, 2])
    for f, a, sm, ref in zip(fused, apart, small, refs):
        np.testing.assert_array_equal(f, a)
        np.testing.assert_array_equal(sm, a)
        scale = np.abs(ref).max()
        assert np.all(np.abs(f - ref) <= 1e-4 * np.abs(ref) + 1e-4 * scale), np.abs(f - ref).max() / scale


def test_depthwise_pointwise_pair_cut_at_whole_tiles_equals_the_layers_and_eager(monkeypatch):
    """A 3x13 plane on two threads: whole-row bands (2 / 1 rows) would give one thread 3 partial 1x1 tiles of 4,
    so blocked/chain.py cuts the bands at whole tiles inside a row, both threads computing that row's depthwise
    outputs: the same bits as the layers apart, and eager's values."""
    import numba

    from backends.numba.blocked import chain

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two numba threads")
    m = randomize_bn(nn.Sequential(InvertedResidual(24, 24, 1, 6), nn.ReLU()))
    m.eval()
    x = np.random.default_rng(2).standard_normal((1, 24, 3, 13)).astype(np.float32) * 3
    with engine.use_backend("numpy"), no_grad():
        refs = [m(Tensor(v)).data for v in (x, -x)]
    monkeypatch.setattr(inverted, "MIN_EXPANDED_BYTES", 1 << 62)
    monkeypatch.setattr(bconv, "SERIAL_MACS", 0)
    monkeypatch.setattr(chain, "PHASED", "never")  # 2 / 1 rows: else the two-phase kernel runs it
    monkeypatch.setattr(inverted, "SMALL_BLOCKS_IN_ONE_REGION", False)
    threads = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        assert chain.band_schedule(1, 3, 13, 100, 2, bconv.MR)[0][1, 1] == 1  # thread 1 starts inside row 1
        got = {}
        for name, waste in (("pair", chain.CHAIN_TILE_WASTE), ("apart", 0.0)):
            monkeypatch.setattr(chain, "CHAIN_TILE_WASTE", waste)
            cm = graph.compile(m, x, backend="numba", layout="blocked")
            got[name] = [cm(v).data.copy() for v in (x, -x)]
            assert (2 in [len(run) for run in cm.compiled.executor.chained]) == (name == "pair")
    finally:
        numba.set_num_threads(threads)
    for f, a, ref in zip(got["pair"], got["apart"], refs):
        np.testing.assert_array_equal(f, a)
        scale = np.abs(ref).max()
        assert np.all(np.abs(f - ref) <= 1e-4 * np.abs(ref) + 1e-4 * scale), np.abs(f - ref).max() / scale


@pytest.mark.parametrize("three", [False, True], ids=["pair", "with-expand"])
@pytest.mark.parametrize("runs", ["default", "all-on-one", "more-runs-than-threads"])
def test_depthwise_pointwise_pair_in_two_phases_equals_the_layers_and_eager(runs, three, monkeypatch):
    """A 7x7 plane (MobileNetV2's last pairs: 4 / 3 rows on two threads) runs the pair in two phases
    (chain.depthwise_then_pointwise: every depthwise channel block, a wait until all are done, then the 1x1's
    segments), each phase with stealing; ``with-expand``: the expand 1x1 before, its segments and a wait first, in
    the same region (inverted.expand_then_pair). However each phase's items are cut into runs (all in the first;
    more runs than threads, so one thread runs two), every output is computed once after the values it reads,
    with the bits of the layers run apart, and eager's values."""
    from backends.numba.blocked import chain

    m = randomize_bn(nn.Sequential(InvertedResidual(40, 40, 1, 6), nn.ReLU()))  # 240 hidden: 15 channel blocks
    m.eval()
    x = np.random.default_rng(3).standard_normal((2, 40, 7, 7)).astype(np.float32) * 3
    with engine.use_backend("numpy"), no_grad():
        refs = [m(Tensor(v)).data for v in (x, -x)]
    monkeypatch.setattr(inverted, "MIN_EXPANDED_BYTES", 1 << 62)
    monkeypatch.setattr(bconv, "SERIAL_MACS", 0)
    monkeypatch.setattr(inverted, "SMALL_BLOCKS_IN_ONE_REGION", three)
    cuts = {"all-on-one": lambda k: [0, k, k], "more-runs-than-threads": lambda k: [k * i // 5 for i in range(6)]}
    if runs in cuts:
        items = bconv.dense_items

        def dense_items(*args):
            segs, _ = items(*args)
            return segs, np.array(cuts[runs](segs.shape[0]), np.int64)

        monkeypatch.setattr(bconv, "dense_items", dense_items)
        monkeypatch.setattr(chain, "even_runs", lambda k, threads: np.array(cuts[runs](k), np.int64))
    got = {}
    for name, mode, waste in (("phased", "always", chain.CHAIN_TILE_WASTE), ("apart", "never", 0.0)):
        monkeypatch.setattr(chain, "PHASED", mode)
        monkeypatch.setattr(chain, "CHAIN_TILE_WASTE", waste)
        cm = graph.compile(m, x, backend="numba", layout="blocked")
        got[name] = [cm(v).data.copy() for v in (x, -x)]
        want = ([3] if three else [2]) if name == "phased" else []
        assert [len(run) for run in cm.compiled.executor.chained] == want
    for f, a, ref in zip(got["phased"], got["apart"], refs):
        np.testing.assert_array_equal(f, a)
        scale = np.abs(ref).max()
        assert np.all(np.abs(f - ref) <= 1e-4 * np.abs(ref) + 1e-4 * scale), np.abs(f - ref).max() / scale
