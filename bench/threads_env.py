"""A compiled model's wall time per OpenMP wait setting and per ``SERIAL_MACS`` threshold (which blocked convs get
the second thread): ``python bench/threads_env.py [--workload mobilenet_v2:1] [--variants engine,passive0,...]
[--thresholds default,0] [--rounds 3] [--reps 9] [--ort]``. Each variant of :data:`parallel_regions.VARIANTS`
(``spinN``: passive with ``GOMP_SPINCOUNT=N``) runs in its own child process (an OpenMP runtime reads its
environment once), variants alternating round after round; inside a child, one compiled model per threshold (and
onnxruntime with as many intra-op threads) timed interleaved, the median of ``--reps`` calls each. The load average
goes with every line."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parallel_regions import _OMP, VARIANTS, run_child  # noqa: E402


def child(workload: str, thresholds: list[str], reps: int, ort: bool) -> dict[str, float]:
    import functools

    import numpy as np

    import engine  # noqa: F401  (its environment defaults apply only where the variant left a variable unset)
    import graph
    import zoo
    from backends.numba.blocked import conv as bconv

    name, batch = workload.split(":")
    model = zoo.get(name)
    model.eval()
    x = np.random.default_rng(0).standard_normal((int(batch),) + zoo.models.input_size(name)).astype(np.float32)
    default = bconv.SERIAL_MACS
    fns, outs = {}, {}
    for t in thresholds:
        bconv.SERIAL_MACS = default if t == "default" else int(float(t))
        cm = graph.compile(model, x, backend="numba", layout="blocked")
        outs[t] = cm(x).data.copy()  # the first call specializes every conv under this threshold
        fns[f"serial<{t}"] = functools.partial(cm, x)
    bconv.SERIAL_MACS = default
    if ort:
        import onnxruntime

        from graph.onnx import export

        path = os.path.join(tempfile.mkdtemp(), f"{name}.onnx")
        export(model, x, path)
        so = onnxruntime.SessionOptions()
        so.intra_op_num_threads = int(os.environ.get("NUMBA_NUM_THREADS", "2"))
        so.inter_op_num_threads = 1
        sess = onnxruntime.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        fns["onnxruntime"] = functools.partial(sess.run, None, {sess.get_inputs()[0].name: x})
    first = outs[thresholds[0]]
    same = all(np.array_equal(first, o) for o in outs.values())
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    for r in range(reps):
        for k in order[r % len(order):] + order[:r % len(order)]:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    res = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    res["bit_equal"] = float(same)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="mobilenet_v2:1")
    ap.add_argument("--variants", default="engine,passive0,spin100k,active")
    ap.add_argument("--thresholds", default="default,0", help="SERIAL_MACS values (default: the module's)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--ort", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    thresholds = args.thresholds.split(",")
    if args.child:
        print(json.dumps(child(args.workload, thresholds, args.reps, args.ort)))
        return
    names = args.variants.split(",")
    got: dict[str, list[dict]] = {k: [] for k in names}
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            env = dict(os.environ, NUMBA_NUM_THREADS=os.environ.get("NUMBA_NUM_THREADS", "2"),
                       PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
            variant = VARIANTS.get(name) or {**_OMP, "OMP_WAIT_POLICY": "passive", "GOMP_SPINCOUNT": name[4:]}
            for k, v in variant.items():
                if v is None:
                    env.pop(k, None)
                    env[k] = ""  # engine/_env.py fills unset variables only; libgomp reads "" as unset
                else:
                    env[k] = v
            cmd = [sys.executable, __file__, "--child", "--workload", args.workload, "--thresholds", args.thresholds,
                   "--reps", str(args.reps), "--ort" if args.ort else "--no-ort"]
            res = run_child(cmd, env, f"round {r} {name}")
            if res is None:
                continue
            got[name].append(res)
            print(f"round {r} {name:10s} " + _fmt(res), flush=True)
    print(f"medians over rounds (ms), {args.workload}:")
    for name, rows in got.items():
        if rows:
            print(f"  {name:10s} " + _fmt({k: statistics.median(x[k] for x in rows) for k in rows[0]}))


def _fmt(res: dict) -> str:
    keys = [k for k in res if k not in ("load", "bit_equal")]
    s = " ".join(f"{k} {res[k]:7.2f}" for k in keys)
    if "onnxruntime" in res:
        s += "  /ort " + " ".join(f"{res[k] / res['onnxruntime']:.2f}" for k in keys if k != "onnxruntime")
    return s + f"  bit-equal {bool(res['bit_equal'])} (load {res['load']:.1f})"


if __name__ == "__main__":
    main()
