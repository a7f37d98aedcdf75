"""Tiny tiles for the simulator (it runs ~2k threads a second): the production tile names keep their meaning in the
selection, but each block has 8-16 threads, so small shapes already straddle several tiles."""

from __future__ import annotations

import os

from backends.cuda import tiling
from backends.cuda.conv import select
from backends.cuda.tiling import Tile

# two shapes per dtype, one with bm != bn and tm != tn
SMALL_TILES = {"float32": {"128x128": Tile(8, 8, 4, 2, 2), "64x64": Tile(16, 8, 4, 4, 2)},
               "float64": {"64x64": Tile(8, 16, 4, 2, 4)}}


def use_small_tiles(monkeypatch) -> None:
    """In the simulator: tiny GEMM tiles and direct-kernel blocks (on a GPU the production sizes run)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        monkeypatch.setattr(tiling, "TILES", SMALL_TILES)
        monkeypatch.setattr(select, "DIRECT_THREADS", 32)
        monkeypatch.setattr(select, "REDUCE_THREADS", 4)
