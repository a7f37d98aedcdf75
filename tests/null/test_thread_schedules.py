"""The per-thread work lists of the numba blocked kernels (backends/numba/blocked/conv.py ``dense_schedule``,
chain.py ``row_schedule``): every tile / row runs exactly once, and the threads' shares of the work differ by at most
one tile or row, whatever the item counts (no numba compilation: plain numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from backends.numba.blocked.chain import band_schedule, row_schedule
from backends.numba.blocked.conv import MR, NV, dense_schedule


# (images, output blocks, pixel tiles, tiles per chunk, pixel-chunk-major, threads)
@pytest.mark.parametrize("case", [(1, 36, 20, 16, True, 2), (1, 10, 5, 4, False, 2), (2, 5, 7, 4, True, 3),
                                  (8, 4, 314, 4, False, 2), (1, 1, 3, 4, True, 2), (1, 3, 1, 4, True, 4)])
def test_dense_schedule_covers_every_tile_once_in_equal_shares(case):
    nn, ob, ntiles, group, pix_major, threads = case
    segs, starts = dense_schedule(nn, ob, ntiles, group, pix_major, threads)
    assert starts[0] == 0 and starts[-1] == len(segs) and np.all(np.diff(starts) >= 0)
    cover = np.zeros((nn, -(-ob // NV), ntiles), int)
    work = []
    for th in range(threads):
        w = 0
        for n, g, a, b in segs[starts[th]:starts[th + 1]]:
            assert a < b and (b - 1) // group == a // group  # a segment stays inside its item's chunk
            cover[n, g, a:b] += 1
            w += (b - a) * (2 if 2 * g + 1 < ob else 1)
        work.append(w)
    assert np.all(cover == 1)
    assert max(work) - min(work) <= 2  # one two-block tile at most


@pytest.mark.parametrize("case", [(1, 7, 100, 2), (1, 14, 4, 2), (3, 5, 2, 2), (2, 9, 3, 3), (1, 2, 8, 4)])
def test_row_schedule_covers_every_row_once_in_equal_shares(case):
    nn, oh, seg_rows, threads = case
    segs, starts = row_schedule(nn, oh, seg_rows, threads)
    cover = np.zeros((nn, oh), int)
    rows = []
    for th in range(threads):
        segs_th = segs[starts[th]:starts[th + 1]]
        for n, a, b in segs_th:
            assert 0 < b - a <= seg_rows
            cover[n, a:b] += 1
        rows.append(int(sum(b - a for _, a, b in segs_th)))
    assert np.all(cover == 1) and max(rows) - min(rows) <= 1


# (images, rows, columns, segment rows, threads, alignment: MR cuts at whole 1x1 tiles, inside a row)
@pytest.mark.parametrize("case", [(1, 7, 7, 100, 2, MR), (1, 7, 7, 100, 2, 7), (1, 14, 14, 3, 2, MR),
                                  (3, 5, 9, 2, 2, MR), (2, 9, 4, 3, 3, MR), (1, 2, 3, 8, 4, MR)])
def test_band_schedule_covers_every_pixel_once_and_computes_the_rows_its_tiles_read(case):
    nn, oh, ow, seg_rows, threads, align = case
    segs, starts = band_schedule(nn, oh, ow, seg_rows, threads, align)
    pixels = np.zeros((nn, oh * ow), int)
    units = []
    for th in range(threads):
        computed: set[tuple[int, int]] = set()  # (image, row) of this thread's depthwise rows so far
        u = 0
        for n, r0, r1, p0, p1 in segs[starts[th]:starts[th + 1]]:
            assert 0 < r1 - r0 <= seg_rows and p0 < p1
            computed |= {(n, r) for r in range(r0, r1)}
            assert {(n, p // ow) for p in range(p0, p1)} <= computed  # a tile reads rows this thread wrote
            pixels[n, p0:p1] += 1
            u += -(-(p1 - p0) // align)
        units.append(u)
    assert np.all(pixels == 1)
    if align == MR and seg_rows * ow >= oh * ow:  # whole bands: the threads' tiles differ by one at most
        assert max(units) - min(units) <= 1
