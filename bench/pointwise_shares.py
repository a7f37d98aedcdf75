"""The blocked 1x1 convolution on the shapes of MobileNetV2, ResNet-50 and DenseNet-121 at batch 1, with and without
the weight prefetch of the next output-block group (``backends.numba.blocked.conv.PREFETCH_BYTES``), in one process,
interleaved: ``python bench/pointwise_shares.py [--rounds 5] [--reps 40]``.

In a network every layer's weights were last read a whole inference ago: they come from L3 (or memory), not from
L2 as in a loop over one layer. So each timed call here follows a pass that writes 4 MiB (2 MiB per thread, twice
each core's L2): ``2T`` is the wall time of the parallel kernel on the numba threads (median), ``1T`` the CPU time
of its serial twin on one thread (``time.thread_time``, median; a shared machine's load enters it less). Per layer
``A`` is without the prefetch, ``B`` with it whatever the weights' size (the kernel's ``pf_next`` argument: the
same compiled code; group_tiles still leaves it out where the reduction is several K blocks), and the
depthwise -> 1x1 pairs of MobileNetV2's 7x7 blocks run as one call (blocked/chain.py).

``--whole MODEL[:BATCH]``: instead, the compiled model (layout pass on) built twice, A without and B with the
prefetch, blocks of 10 calls each, rotating; wall medians and the 1x1 layers' profiled medians."""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections import defaultdict

import numpy as np
from numba import njit, prange

import backends.numba  # noqa: F401 - registers the kernels
from backends.numba.blocked import chain
from backends.numba.blocked import conv as bconv
from backends.numba.gemm import VL
from engine.backend import get_backend

RELU6 = (("max", 6.0), ("min", 0.0))
# name, (C, H, O): 1x1 stride 1 at batch 1
LAYERS = [("MNv2 f5-7 expand", (32, 28, 192)), ("MNv2 f8-11 expand", (64, 14, 384)),
          ("MNv2 f12-14 expand", (96, 14, 576)), ("MNv2 f15-17 expand", (160, 7, 960)),
          ("MNv2 f18", (320, 7, 1280)), ("R50 64->256 56", (64, 56, 256)), ("R50 1024->256 14", (1024, 14, 256)),
          ("R50 512->2048 7", (512, 7, 2048)), ("R50 2048->512 7", (2048, 7, 512)),
          ("D121 1024->128 7", (1024, 7, 128)), ("D121 1024->512 14", (1024, 14, 512))]
# name, (C, H, O, residual): MobileNetV2's 7x7 depthwise -> 1x1 pairs
PAIRS = [("MNv2 f15-16 pair", (960, 7, 160, True)), ("MNv2 f17 pair", (960, 7, 320, False))]
FLUSH = np.zeros(1 << 20, np.float32)  # 4 MiB (--flush-mib)


@njit(parallel=True, cache=True)
def _flush(b):
    for i in prange(b.size // 4096):
        b[i * 4096:(i + 1) * 4096] += 1.0


@njit(cache=True)
def _flush_serial(b):
    b[:] += 1.0


def _timed(call, reps: int, serial: bool) -> float:
    """Median us of ``call`` after a flush each: wall (threads) or CPU time of this thread (``serial``)."""
    flush, clock = (_flush_serial, time.thread_time) if serial else (_flush, time.perf_counter)
    ts = []
    for _ in range(reps):
        flush(FLUSH)
        t0 = clock()
        call()
        ts.append(clock() - t0)
    return statistics.median(ts) * 1e6


def _kernel_step(call) -> functools.partial:
    """The compiled kernel's partial inside a built call (a partial, or the last one of ``in_order``'s steps)."""
    if isinstance(call, functools.partial):
        return call
    return [c for c in call.__closure__[0].cell_contents if isinstance(c, functools.partial)][-1]


def _variants(step: functools.partial, serial_kernel, pf_index: int) -> dict[tuple[str, bool], functools.partial]:
    """(A|B, serial) -> the step's kernel with pf_next off / on, parallel or its serial twin on one share."""
    out = {}
    for name, pf in (("A", False), ("B", True)):
        args = list(step.args)
        args[pf_index] = pf
        out[name, False] = functools.partial(step.func, *args)
        args[-2] = np.array([0, args[-2][-1]], np.int64)  # every segment on one thread
        out[name, True] = functools.partial(serial_kernel, *args)
    return out


def _layer(c: int, h: int, o: int, rng) -> tuple:
    x = rng.standard_normal((1, -(-c // VL), h, h, VL), dtype=np.float32)
    w = (rng.standard_normal((o, c, 1, 1)) / np.sqrt(c)).astype(np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    out = np.empty((1, -(-o // VL), h, h, VL), np.float32)
    saved = bconv.SERIAL_MACS
    try:
        bconv.SERIAL_MACS = 0
        step = _kernel_step(bconv._conv_call((x, w, b), out, (1, 1), ((0, 0), (0, 0)), (1, 1), 1, True, False, "clamp",
                                             RELU6))
    finally:
        bconv.SERIAL_MACS = saved
    return 2 * h * h * o * c, _variants(step, bconv._conv_dense_serial, 10)


def _pair(c: int, h: int, o: int, res: bool, rng) -> tuple:
    x = rng.standard_normal((1, -(-c // VL), h, h, VL), dtype=np.float32)
    a1 = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=c, has_bias=True, has_residual=False,
              activation="clamp", act_attrs=RELU6)
    ins1 = [x, rng.standard_normal((c, 1, 3, 3), dtype=np.float32), rng.standard_normal(c, dtype=np.float32)]
    mid = np.empty_like(x)
    w2 = (rng.standard_normal((o, c, 1, 1)) / np.sqrt(c)).astype(np.float32)
    out = np.empty((1, -(-o // VL), h, h, VL), np.float32)
    r = [rng.standard_normal(out.shape, dtype=np.float32)] if res else []
    a2 = dict(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, has_bias=True, has_residual=res,
              activation="none", act_attrs=())
    phased, chain.PHASED = chain.PHASED, "never"  # the bands' kernel (7x7 planes run in two phases by default)
    try:
        step = _kernel_step(chain.chain_call((ins1, mid, a1), ([mid, w2, rng.standard_normal(o, dtype=np.float32),
                                                                *r], out, a2)))
    finally:
        chain.PHASED = phased
    # pf2 comes right before (sbuf, segs, starts, kc_max)
    return 2 * h * h * c * (o + 9), _variants(step, chain._depthwise_pointwise_serial, len(step.args) - 5)


def per_layer(rounds: int, reps: int, only: list[str]) -> None:
    rng = np.random.default_rng(0)
    nb = get_backend("numba")
    print(f"load average {os.getloadavg()[0]:.1f}; us, median of {rounds} rounds of medians of {reps} calls, each "
          f"after a {FLUSH.nbytes >> 20} MiB flush; A without / B with the weight prefetch")
    print("| layer | weights KiB | 2T A | 2T B | B/A | 1T CPU A | 1T CPU B | B/A |\n|---|---|---|---|---|---|---|---|")
    cases = [(n, functools.partial(_layer, *s)) for n, s in LAYERS] + [(n, functools.partial(_pair, *s))
                                                                       for n, s in PAIRS]
    for name, make in cases:
        if only and not any(o in name for o in only):
            continue
        with nb.prepare([]):
            flops, calls = make(rng)
        kib = calls["A", False].args[3 if "pair" not in name else 25].nbytes >> 10
        for c in calls.values():
            c()
        t = defaultdict(list)
        for r in range(rounds):
            for key in sorted(calls, reverse=bool(r % 2)):
                t[key].append(_timed(calls[key], reps, key[1]))
        m = {k: statistics.median(v) for k, v in t.items()}
        print(f"| {name} | {kib} | {m['A', False]:.1f} | {m['B', False]:.1f} | {m['B', False] / m['A', False]:.3f} | "
              f"{m['A', True]:.1f} | {m['B', True]:.1f} | {m['B', True] / m['A', True]:.3f} |", flush=True)


def whole(spec: str, calls: int) -> None:
    import engine
    import graph
    import zoo

    name, _, batch = spec.partition(":")
    model = zoo.get(name)
    model.eval()
    x = np.random.default_rng(0).standard_normal((int(batch or 1),) + zoo.models.input_size(name)).astype(np.float32)
    at = bconv.PREFETCH_BYTES
    try:
        bconv.PREFETCH_BYTES = 1 << 62
        a = graph.compile(model, x, backend="numba", layout="blocked")
    finally:
        bconv.PREFETCH_BYTES = at
    b = graph.compile(model, x, backend="numba", layout="blocked")
    assert np.array_equal(a(x).data, b(x).data)  # the same sums
    t: dict[str, list[float]] = {"A": [], "B": []}
    prof: dict[str, dict] = {"A": defaultdict(list), "B": defaultdict(list)}
    for r in range(calls // 10):
        for key in ("A", "B") if r % 2 else ("B", "A"):
            f = a if key == "A" else b
            for _ in range(10):
                if r % 4 < 2:
                    t0 = time.perf_counter()
                    f(x)
                    t[key].append(time.perf_counter() - t0)
                else:
                    with engine.profile() as p:
                        f(x)
                    for k, (_calls, sec) in p.stats.items():
                        prof[key][k].append(sec)
    ma, mb = (statistics.median(t[k]) * 1e3 for k in ("A", "B"))
    print(f"{spec}, load {os.getloadavg()[0]:.1f}: A {ma:.3f} ms, B {mb:.3f} ms, B/A {mb / ma:.3f} (medians of "
          f"{len(t['A'])} calls each)")
    # the layers the prefetch reaches: dense blocked layers with packed weights from PREFETCH_BYTES, one K block
    reached = set()
    for node in b.graph.nodes:
        if node.op.name == "blocked_conv2d" and node.attrs.get("groups", 1) == 1:
            o, c, kh, kw = node.inputs[1].spec.shape
            packed = -(-o // (bconv.NV * VL)) * bconv.NV * VL * c * kh * kw * 4
            npix = node.outputs[0].spec.shape[2] * node.outputs[0].spec.shape[3]
            if packed >= bconv.PREFETCH_BYTES and c * kh * kw <= bconv.k_block(c * kh * kw, npix):
                reached.add((node.module, node.meta.get("module_type") or "", node.op.name))
    sums = np.zeros((2, 2))
    for k in prof["A"]:
        if "conv" in k[3]:
            pa, pb = (statistics.median(prof[v][k]) * 1e6 for v in ("A", "B"))
            sums[int(k[1:] in reached)] += pa, pb
    for i, what in enumerate(("other conv layers", f"the {len(reached)} layers with the prefetch (some chained)")):
        print(f"  {what}, profiled medians summed: A {sums[i, 0]:.0f} us, B {sums[i, 1]:.0f} us, "
              f"B/A {sums[i, 1] / max(sums[i, 0], 1e-9):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--whole", default="", help="MODEL[:BATCH]: the whole-model A/B instead")
    ap.add_argument("--calls", type=int, default=400, help="calls per variant of --whole")
    ap.add_argument("--only", default="", help="comma list of substrings of the layer names to run")
    ap.add_argument("--flush-mib", type=int, default=4, help="MiB written before each timed call (64: past L3 too)")
    args = ap.parse_args()
    global FLUSH
    FLUSH = np.zeros(args.flush_mib << 18, np.float32)
    _flush(FLUSH)
    _flush_serial(FLUSH)
    if args.whole:
        whole(args.whole, args.calls)
    else:
        per_layer(args.rounds, args.reps, [o for o in args.only.split(",") if o])


if __name__ == "__main__":
    main()
