"""What a network's first convolution (the one reading the NCHW image, ``blocked_conv2d`` with ``block`` set) costs
inside the compiled network: the model as it is against a copy whose call for that layer does nothing (wrong
outputs, the same work after it: the next parallel region then pays the workers' wake-up the stem paid), in one
process, blocks of calls interleaved: ``python bench/stem_cost.py [--model mobilenet_v2] [--batch 1] [--rounds 21]
[--reps 20]``. Runs on any tree that has ``backends/numba/blocked/conv.py: _conv_call`` (main before the stem kernel
too: ``cd TREE && PYTHONPATH=$PWD python /path/to/bench/stem_cost.py``). Prints both medians of block medians (ms;
CPU time of the calling thread with ``NUMBA_NUM_THREADS=1``, wall time otherwise), the median per-round difference
(the stem's cost) and the load average."""

from __future__ import annotations

import argparse
import functools
import os
import statistics

from _timing import interleaved_medians, zoo_eval  # bench/ is the script's directory

import graph
from backends.numba.blocked import conv as bconv


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    m, x = zoo_eval(args.model, args.batch)
    real = bconv._conv_call

    def without_stem(ins, *a, **k):
        call = real(ins, *a, **k)
        return (lambda: None) if call is not None and ins[0].ndim == 4 else call

    models = {}
    for name, builder in (("network", real), ("without stem", without_stem)):
        bconv._conv_call = builder  # the calls are built (and specialized) in the first runs
        try:
            cm = graph.compile(m, x, backend="numba")
            for _ in range(5):
                cm(x)
        finally:
            bconv._conv_call = real
        models[name] = cm
    res = interleaved_medians({k: functools.partial(cm, x) for k, cm in models.items()}, args.rounds, args.reps)
    cost = statistics.median(a - b for a, b in zip(res["network"], res["without stem"]))
    print(f"{args.model} b{args.batch}: " + ", ".join(f"{k} {statistics.median(v):.3f} ms" for k, v in res.items())
          + f", stem {cost:.3f} ms, load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
