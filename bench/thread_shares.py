"""The critical path of MobileNetV2's depthwise -> 1x1 pairs on two threads, measured on one: each thread's share of
a parallel kernel's work list run by its serial twin on the calling thread, CPU time (``time.thread_time``, the min
of ``--reps``), so the numbers hold on a loaded machine where wall-clock parallel timings do not. Per pair (the
pairs of MobileNetV2 at 224x224, batch 1):

- ``static``: the depthwise layer serial, then the 1x1 with its items split into equal counts (numba's static
  split of a ``prange``: what ``_conv_dense`` did before its per-thread work lists);
- ``balanced``: the depthwise layer serial, then the 1x1 on :func:`backends.numba.blocked.conv.dense_schedule`;
- ``chain``: both in one region on row bands (:mod:`backends.numba.blocked.chain`; ``-`` where it declines).

A path is the depthwise time plus the larger 1x1 share (or the larger chain share); a region's wake-up and barrier
come on top of each. ``python bench/thread_shares.py [--threads 2] [--reps 30]``.

``--whole N``: instead, the whole compiled model in one process, N calls each, interleaved: A with the scheduling of
before (the static item split, no chains, a depthwise MAC counted once against ``SERIAL_MACS``), B as now; the
median of the paired B / A ratios is the wall-clock answer on a machine quiet enough to lend the second core."""

from __future__ import annotations

import argparse
import functools
import os
import time

import numpy as np

from backends.numba.blocked import chain
from backends.numba.blocked import conv as bconv
from backends.numba.gemm import VL

RELU6 = (("max", 6.0), ("min", 0.0))
# (channels, input size, depthwise stride, 1x1 outputs, residual, how many in the network)
PAIRS = [(32, 112, 1, 16, False, 1), (96, 112, 2, 24, False, 1), (144, 56, 1, 24, True, 1),
         (144, 56, 2, 32, False, 1), (192, 28, 1, 32, True, 2), (192, 28, 2, 64, False, 1),
         (384, 14, 1, 64, True, 3), (384, 14, 1, 96, False, 1), (576, 14, 1, 96, True, 2),
         (576, 14, 2, 160, False, 1), (960, 7, 1, 160, True, 2), (960, 7, 1, 320, False, 1)]


def _cpu_us(call, reps: int) -> float:
    for _ in range(3):
        call()
    best = float("inf")
    for _ in range(reps):
        t0 = time.thread_time()
        call()
        best = min(best, time.thread_time() - t0)
    return best * 1e6


def _kernel_step(call):
    """The compiled kernel's partial inside a built call (a partial, or the steps of ``in_order``)."""
    if isinstance(call, functools.partial):
        return call
    return [c for c in call.__closure__[0].cell_contents if isinstance(c, functools.partial)][-1]


def _static_split(ob: int, ntiles: int, group: int, pix_major: bool, threads: int):
    """The items of one image as ``dense_schedule`` orders them, split into equal item counts."""
    ng, nchunk = -(-ob // bconv.NV), -(-ntiles // group)
    t = np.arange(ng * nchunk)
    g, ch = (t % ng, t // ng) if pix_major else (t // nchunk, t % nchunk)
    segs = np.stack([np.zeros_like(t), g, ch * group, np.minimum(ntiles, (ch + 1) * group)], 1).astype(np.int64)
    return segs, np.array([len(t) * th // threads for th in range(threads + 1)], np.int64)


def _shares(step, serial, segs, starts, reps: int) -> list[float]:
    """CPU us of each thread's segments, run by ``serial`` with the step's other arguments."""
    args = list(step.args)
    out = []
    for th in range(len(starts) - 1):
        # (segs, starts, kc_max) end both kernels' argument lists
        args[-3], args[-2] = segs, np.array([starts[th], starts[th + 1]], np.int64)
        out.append(_cpu_us(functools.partial(serial, *args), reps))
    return out


def pair(c: int, h: int, s: int, o: int, res: bool, threads: int, reps: int, rng) -> tuple[float, float, float]:
    x = rng.standard_normal((1, -(-c // VL), h, h, VL), dtype=np.float32)
    w1, b1 = rng.standard_normal((c, 1, 3, 3), dtype=np.float32), rng.standard_normal(c, dtype=np.float32)
    a1 = dict(stride=(s, s), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=c, has_bias=True,
              has_residual=False, activation="clamp", act_attrs=RELU6)
    oh = (h - 1) // s + 1
    mid = np.empty((1, -(-c // VL), oh, oh, VL), np.float32)
    w2 = (rng.standard_normal((o, c, 1, 1)) / np.sqrt(c)).astype(np.float32)
    b2 = rng.standard_normal(o, dtype=np.float32)
    out = np.empty((1, -(-o // VL), oh, oh, VL), np.float32)
    r = [rng.standard_normal(out.shape, dtype=np.float32)] if res else []
    a2 = dict(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, has_bias=True, has_residual=res,
              activation="none", act_attrs=())
    below = bconv.SERIAL_MACS
    try:
        bconv.SERIAL_MACS = 1 << 62  # the depthwise layer serial
        t_dw = _cpu_us(bconv._conv_call((x, w1, b1), mid, **{k: a1[k] for k in ("stride", "padding", "dilation")},
                                        groups=c, has_bias=True, has_residual=False, activation="clamp",
                                        act_attrs=RELU6), reps)
        bconv.SERIAL_MACS = 0  # the parallel kernels' work lists, for ``threads`` threads
        step = _kernel_step(bconv._conv_call((mid, w2, b2, *r), out, (1, 1), ((0, 0), (0, 0)), (1, 1), 1, True, res,
                                             "none", ()))
        ntiles = -(-oh * oh // bconv.MR)
        ng = -(-out.shape[1] // bconv.NV)
        group = min(ntiles, 16) if ng >= 16 else bconv.GROUP
        pix_major = step.args[3].nbytes <= bconv.PIX_MAJOR_BYTES
        serial = bconv._conv_dense_serial
        static = _shares(step, serial, *_static_split(out.shape[1], ntiles, group, pix_major, threads), reps)
        balanced = _shares(step, serial, *bconv.dense_schedule(1, out.shape[1], ntiles, group, pix_major, threads),
                           reps)
        phased, chain.PHASED = chain.PHASED, "never"  # the bands' kernel (uneven rows run in two phases by default)
        call = chain.chain_call(([x, w1, b1], mid, a1), ([mid, w2, b2, *r], out, a2))
        chain.PHASED = phased
        chained = float("nan")
        if call is not None:
            cstep = _kernel_step(call)
            segs, starts = cstep.args[-3], cstep.args[-2]
            chained = max(_shares(cstep, chain._depthwise_pointwise_serial, segs, starts, reps))
    finally:
        bconv.SERIAL_MACS = below
    return t_dw + max(static), t_dw + max(balanced), chained


def whole(name: str, calls: int) -> None:
    import statistics

    import graph
    import zoo

    model = zoo.get(name)
    model.eval()
    x = np.random.default_rng(0).standard_normal((1,) + zoo.models.input_size(name)).astype(np.float32)
    schedule, cost, chain_call = bconv.dense_schedule, bconv.DEPTHWISE_MAC_COST, bconv.blocked_conv2d.specialize_chain

    def static(nn, ob, ntiles, group, pix_major, threads):
        assert nn == 1
        return _static_split(ob, ntiles, group, pix_major, threads)

    try:
        bconv.dense_schedule, bconv.DEPTHWISE_MAC_COST = static, 1
        del bconv.blocked_conv2d.specialize_chain
        before = graph.compile(model, x, backend="numba", layout="blocked")
    finally:
        bconv.dense_schedule, bconv.DEPTHWISE_MAC_COST = schedule, cost
        bconv.blocked_conv2d.specialize_chain = chain_call
    now = graph.compile(model, x, backend="numba", layout="blocked")
    assert np.array_equal(before(x).data, now(x).data)  # the same sums, whatever the schedule
    times: dict[str, list[float]] = {"A": [], "B": []}
    for r in range(calls):
        for key in ("A", "B") if r % 2 else ("B", "A"):
            t0 = time.perf_counter()
            (before if key == "A" else now)(x)
            times[key].append(time.perf_counter() - t0)
    ratio = statistics.median(b / a for a, b in zip(times["A"], times["B"]))
    print(f"{name} b1, load {os.getloadavg()[0]:.1f}: " + ", ".join(
        f"{k} median {statistics.median(v) * 1e3:.2f} ms (best {min(v) * 1e3:.2f})" for k, v in times.items()) +
        f"; B / A median of paired ratios {ratio:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--whole", type=int, default=0, help="calls per variant of the whole-model A/B (0: per pair)")
    ap.add_argument("--model", default="mobilenet_v2")
    args = ap.parse_args()
    if args.whole:
        whole(args.model, args.whole)
        return
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(0)
    print(f"critical path per pair, CPU us on one thread per share ({args.threads} shares); load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| depthwise -> 1x1 | times | static | balanced | chain |\n|---|---|---|---|---|")
    total = np.zeros(3)
    for c, h, s, o, res, times in PAIRS:
        paths = np.array(pair(c, h, s, o, res, args.threads, args.reps, rng))
        best = paths[1] if np.isnan(paths[2]) else paths[2]
        total += times * np.array([paths[0], paths[1], best])
        chained = "-" if np.isnan(paths[2]) else f"{paths[2]:.0f}"
        print(f"| {c}x{h}/{s} -> {o}{' +res' if res else ''} | {times} | {paths[0]:.0f} | {paths[1]:.0f} | "
              f"{chained} |", flush=True)
    print(f"| all pairs of the network (us) | | {total[0]:.0f} | {total[1]:.0f} | {total[2]:.0f} (chain where taken) |")


if __name__ == "__main__":
    main()
