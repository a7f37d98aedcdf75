"""compile() cost of ResNet-50 (shape-only trace + passes + memory planning; no kernels run).

    .venv/bin/python bench/compile_time.py [--repeats 5] [--model resnet50]

Prints the median and best wall time in ms and the machine load, since the 1 s goal is only meaningful on a
quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import graph
import zoo.models as zm
from engine import Spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    model = zm.get(args.model).eval()
    spec = Spec((1, *zm.input_size(args.model)), "float32")
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        graph.compile(model, spec)
        times.append(time.perf_counter() - t0)
    median_ms = statistics.median(times) * 1e3
    print(f"{args.model} compile (trace + passes + planning, shape-only): median {median_ms:.0f} ms, "
          f"best {min(times) * 1e3:.0f} ms over {args.repeats} runs; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")


if __name__ == "__main__":
    main()
