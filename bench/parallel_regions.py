"""What entering a numba parallel region costs on this machine, per threading layer and OpenMP wait setting.

``python bench/parallel_regions.py [--rounds 3] [--variants engine,passive0,spin3000,...] [--tbb-lib DIR]``
(``spinN``: passive with ``GOMP_SPINCOUNT=N``): every variant runs in its own
child process (an OpenMP runtime reads its environment once), the variants alternating round after round. Each child
times, per launch (median of many, µs):

- ``b2b``: an empty 2-item ``prange`` launched back to back (the region's own entry and barrier, workers hot);
- ``gapN``: the same launch after N µs of serial work on the calling thread (a serial layer between two parallel
  ones: the workers may have gone to sleep);
- ``layerN``: N µs of work split over the 2 threads after 100 µs of serial work, against ``serialN`` (the same work
  on the calling thread): what a small layer gains from the second core (``speedup`` = serial / layer).

The load average goes with every line: on a shared machine the medians move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from engine._env import DEFAULTS  # (it sets them in this process too: the omp variants each set their own)

_OMP = {"NUMBA_THREADING_LAYER": "omp"}
VARIANTS = {  # environment of each child; None = removed
    "engine": {**_OMP, **DEFAULTS},  # what engine/_env.py sets
    "passive0": {**_OMP, "OMP_WAIT_POLICY": "passive", "GOMP_SPINCOUNT": None},  # libgomp: no spin at all
    "spin100k": {**_OMP, "OMP_WAIT_POLICY": "passive", "GOMP_SPINCOUNT": "100000"},
    "spin1M": {**_OMP, "OMP_WAIT_POLICY": "passive", "GOMP_SPINCOUNT": "1000000"},
    "gompdefault": {**_OMP, "OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None},  # libgomp's own: 300k spins
    "active": {**_OMP, "OMP_WAIT_POLICY": "active", "GOMP_SPINCOUNT": None},
    "workqueue": {"NUMBA_THREADING_LAYER": "workqueue"},
    "tbb": {"NUMBA_THREADING_LAYER": "tbb"},
}
GAPS = (50, 200)
LAYERS = (50, 200)


def child(launches: int) -> dict[str, float]:
    import numba
    import numpy as np
    from numba import njit, prange

    @njit(parallel=True)
    def empty(a):
        for i in prange(2):
            a[i] += 1.0

    @njit
    def busy(a, n):  # n steps of a dependent chain: ~n cycles of serial work that the compiler cannot drop
        s = a[0]
        for _ in range(n):
            s = s * 0.999999 + 1e-7
        a[0] = s

    @njit(parallel=True)
    def busy2(a, n):
        for i in prange(2):
            s = a[i]
            for _ in range(n):
                s = s * 0.999999 + 1e-7
            a[i] = s

    a = np.zeros(16)
    empty(a), busy(a, 10), busy2(a, 10)
    per_us = _calibrate(busy, a)

    def timed(f, *args) -> float:
        t0 = time.perf_counter()
        f(*args)
        return (time.perf_counter() - t0) * 1e6

    out = {"layer": numba.threading_layer()}
    out["b2b"] = statistics.median(timed(empty, a) for _ in range(launches))
    for gap in GAPS:
        n = int(gap * per_us)
        out[f"gap{gap}"] = statistics.median([busy(a, n), timed(empty, a)][1] for _ in range(launches // 4))
    for work in LAYERS:
        n = int(work * per_us)
        gap = int(100 * per_us)
        out[f"serial{work}"] = statistics.median([busy(a, gap), timed(busy, a, n)][1] for _ in range(launches // 8))
        out[f"layer{work}"] = statistics.median([busy(a, gap), timed(busy2, a, n // 2)][1]
                                                for _ in range(launches // 8))
    return out


def _calibrate(busy, a) -> float:
    """Steps of ``busy`` per µs on this core (best of a few)."""
    n = 200_000
    best = min(_once(busy, a, n) for _ in range(5))
    return n / best


def _once(busy, a, n) -> float:
    t0 = time.perf_counter()
    busy(a, n)
    return (time.perf_counter() - t0) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--launches", type=int, default=2000)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--tbb-lib", default="", help="a folder holding libtbb.so.12 (numba's tbb layer needs it)")
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.launches)))
        return
    names = args.variants.split(",")
    got: dict[str, list[dict]] = {k: [] for k in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate: no variant always follows another
        for name in order:
            env = dict(os.environ, NUMBA_NUM_THREADS="2")
            if args.tbb_lib and name == "tbb":
                env["LD_LIBRARY_PATH"] = args.tbb_lib
            variant = VARIANTS.get(name) or {**_OMP, "OMP_WAIT_POLICY": "passive", "GOMP_SPINCOUNT": name[4:]}
            for k, v in variant.items():
                if v is None:
                    env.pop(k, None)
                else:
                    env[k] = v
            res = run_child([sys.executable, __file__, "--child", "--launches", str(args.launches)], env,
                            f"round {r} {name}")
            if res is None:
                continue
            got[name].append(res)
            print(f"round {r} {name:12s} load {res['load']:4.1f} " + _fmt(res), flush=True)
    print("medians over rounds (µs per launch):")
    for name, rows in got.items():
        if rows:
            med = {k: statistics.median(x[k] for x in rows) for k in rows[0] if k != "layer"}
            med["layer"] = rows[0]["layer"]
            print(f"  {name:12s} " + _fmt(med))


def run_child(cmd: list[str], env: dict, label: str) -> dict | None:
    """Run one measuring child process: its last line of output is a JSON dict, returned with the load average at
    its end under "load" (None, after a line saying so, when it failed)."""
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    load = os.getloadavg()[0]
    if p.returncode:
        print(f"{label}: failed: {p.stderr.strip().splitlines()[-3:]}", flush=True)
        return None
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["load"] = load
    return res


def _fmt(res: dict) -> str:
    keys = ["b2b"] + [f"gap{g}" for g in GAPS] + [k for w in LAYERS for k in (f"serial{w}", f"layer{w}")]
    s = f"[{res['layer']}] " + " ".join(f"{k} {res[k]:7.1f}" for k in keys)
    return s + " speedup " + " ".join(f"{res[f'serial{w}'] / res[f'layer{w}']:.2f}" for w in LAYERS) + \
        (f" (load {res['load']:.1f})" if "load" in res else "")


if __name__ == "__main__":
    main()
