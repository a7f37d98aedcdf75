"""One zoo model compiled from two source trees (e.g. main exported with ``git archive`` and a branch), timed in
alternating blocks: ``python bench/two_trees.py TREE_A TREE_B [--model mobilenet_v2] [--batch 1] [--rounds 21]
[--reps 20] [--node features.0.0]``.

Each tree runs in a worker process of its own (its directory first on the import path, its own numba cache),
compiled once; the driver asks them in turn for a block of ``--reps`` calls (the order alternating round by
round) and prints each tree's median of block medians (ms: CPU time of the calling thread with
``NUMBA_NUM_THREADS=1``, wall time otherwise; ``--node``: that module path's profiled time per call instead), the
median of the per-round ratios B / A and the load average. Blocks, not single calls, so one tree's spinning
OpenMP workers do not take the cores from the other's next call."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def _worker(model: str, batch: int, node: str | None) -> None:
    from _timing import zoo_eval  # bench/ is the script's directory

    import engine
    import graph

    m, x = zoo_eval(model, batch)
    cm = graph.compile(m, x, backend="numba")
    for _ in range(5):
        cm(x)
    clock = time.thread_time if os.environ.get("NUMBA_NUM_THREADS") == "1" else time.perf_counter
    print("ready", flush=True)
    for line in sys.stdin:
        ts = []
        for _ in range(int(line)):
            if node:
                with engine.profile() as prof:
                    cm(x)
                ts.append(sum(sec for key, (_, sec) in prof.stats.items() if key[1] == node))
            else:
                t0 = clock()
                cm(x)
                ts.append(clock() - t0)
        print(statistics.median(ts) * 1e3, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs=2)
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--node", default=None, help="a module path: its profiled time instead of the whole call")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args.model, args.batch, args.node)
        return
    argv = [sys.executable, os.path.abspath(__file__), *args.trees, "--worker", "--model", args.model, "--batch",
            str(args.batch)] + (["--node", args.node] if args.node else [])
    procs = [subprocess.Popen(argv, cwd=t, env=dict(os.environ, PYTHONPATH=os.path.abspath(t)), text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) for t in args.trees]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise SystemExit(f"two_trees: a worker failed to start (tree {args.trees[procs.index(p)]})")
    res: list[list[float]] = [[], []]
    for r in range(args.rounds):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            procs[i].stdin.write(f"{args.reps}\n")
            procs[i].stdin.flush()
            res[i].append(float(procs[i].stdout.readline()))
    for p in procs:
        p.stdin.close()
        p.wait()
    what = args.node or "whole call"
    a, b = (statistics.median(v) for v in res)
    ratio = statistics.median(y / x for x, y in zip(*res))
    print(f"{args.model} b{args.batch} {what}: A {a:.3f} ms, B {b:.3f} ms, B/A {ratio:.3f}, "
          f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
