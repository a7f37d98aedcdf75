"""Where a compiled model loses on two threads what it has on one: per executor call (a chained run counts as its
first node), the median time with ``NUMBA_NUM_THREADS=1`` and with ``--threads`` (default 2), each in its own child
process, the speedup, and the time lost against a perfect split (``t_n - t_1 / n``). A call that does not speed up
is serial or runs its threads one after the other; one that loses tens of microseconds at a good speedup is short
enough for the region's wake-up and barrier to matter.

``python bench/thread_scaling.py [--model mobilenet_v2] [--batch 1] [--calls 60] [--threads 2] [--passes 3]``

Times come from ``engine.profile`` (one perf_counter pair around each call), so they include each call's Python
and dispatch. The children cannot run at once (they would share the cores), so the 1-thread and the n-thread child
take turns ``--passes`` times, the order alternating, and each call's time is the median over the passes: a
change in the machine's load between two children (other tenants come and go here) moves one pass, not the
ratio."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys


def child(model: str, batch: int, calls: int) -> list[tuple[str, float]]:
    from _timing import zoo_eval  # bench/ is the script's directory

    import engine
    import graph

    m, x = zoo_eval(model, batch)
    cm = graph.compile(m, x, backend="numba")
    for _ in range(5):
        cm(x)
    times: dict[tuple, list[float]] = {}
    for _ in range(calls):
        with engine.profile() as prof:
            cm(x)
        for k, (_n, sec) in prof.stats.items():
            times.setdefault(k, []).append(sec)
    # chained runs' later nodes have nothing to do: keep the calls that take time
    return [(f"{k[1] or '-'} {k[3]}", statistics.median(v) * 1e6) for k, v in times.items()
            if statistics.median(v) > 1e-6]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.batch, args.calls)))
        return
    passes: dict[int, list[list[tuple[str, float]]]] = {1: [], args.threads: []}
    for p in range(args.passes):  # the thread counts take turns, the order alternating
        for n in (1, args.threads) if p % 2 == 0 else (args.threads, 1):
            env = dict(os.environ, NUMBA_NUM_THREADS=str(n))
            out = subprocess.run([sys.executable, __file__, "--child", "--model", args.model, "--batch",
                                  str(args.batch), "--calls", str(args.calls)], env=env, check=True,
                                 capture_output=True, text=True)
            passes[n].append(json.loads(out.stdout.strip().splitlines()[-1]))
    # per call, the median over the passes of each child's median
    runs = {n: [(name, statistics.median(dict(r)[name] for r in rs if name in dict(r))) for name, _ in rs[0]]
            for n, rs in passes.items()}
    # a call that runs with more threads as part of the call before (a chain the executor takes only on two or more
    # threads: MobileNetV2's small blocks) counts in that call on one thread too
    on_n = {name for name, _ in runs[args.threads]}
    one: dict[str, float] = {}
    last = None
    for name, t in runs[1]:
        last = name if name in on_n or last is None else last
        one[last] = one.get(last, 0.0) + t
    n = args.threads
    print(f"{args.model} batch {args.batch}: per call, µs (median over {args.passes} passes of each child's median of "
          f"{args.calls} profiled calls), 1 vs {n} threads; load average {os.getloadavg()[0]:.1f}\n")
    print(f"| call | 1 thread | {n} threads | speedup | lost vs t1/{n} |\n|---|---|---|---|---|")
    t1 = tn = lost = 0.0
    for name, t in runs[n]:
        u = one.get(name)
        if u is None:
            continue
        t1, tn, lost = t1 + u, tn + t, lost + t - u / n
        print(f"| {name} | {u:.1f} | {t:.1f} | {u / t:.2f} | {t - u / n:+.1f} |")
    print(f"| **sum** | {t1:.0f} | {tn:.0f} | {t1 / tn:.2f} | {lost:+.0f} |")


if __name__ == "__main__":
    main()
